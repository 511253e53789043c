"""Can a search over transpositions at query time find a pitch-shifted copy's source? (Measured: no.)

    python bench/transposition_search.py --index demo-out/index [--queries 24] [--prompt] [--name transposition-demo]

A +1 semitone copy of a training segment finds its source track first about 5 times in 24 on the demo
(docs/experiments/semitone-copies.md), because the model's autoencoder encodes the copy away from its source. This bench asks
whether undoing the shift at query time helps: each probe (a training segment as is, with 20 dB noise, or
pitch-shifted +1 semitone, as bench/behaviour.py makes them) is attributed as is and shifted by -1 and +1
semitone (torchaudio's phase vocoder), every segment scored (``--candidates all``), and credited by four rules:

* ``as is``: the probe's own scores (what ``tda attribute`` does);
* ``max over shifts``: each segment's largest score over the three;
* ``max over shifts of z-scores``: the same after standardising each shift's scores (so no shift wins by scale);
* ``shifted back (oracle)``: the probe shifted by -1 only, which knows the copy's shift: the best any search
  over shifts could do.

It also says, with no attribution, whether each shifted probe's encoding is nearest its source segment's.
Without ``--prompt`` the probes come without a prompt (copies found in the wild: the null branch). Writes
bench/results/NAME.json and NAME.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edits import pitch_shift
from tda_plugin import Attributor, AttributeSettings
from tda_plugin.evaluation import add_noise, segment_audio, spread_segments

SHIFTS = (-1, 0, 1)
Scores = dict[int, np.ndarray]  # shift -> scores in segment-id order


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


RULES: dict[str, Callable[[Scores], np.ndarray]] = {
    "as is": lambda s: s[0],
    "max over shifts": lambda s: np.max([s[k] for k in SHIFTS], axis=0),
    "max over shifts of z-scores": lambda s: np.max([_z(s[k]) for k in SHIFTS], axis=0),
    "shifted back (oracle)": lambda s: s[-1],
}


def probe(att: Attributor, ids: list[int], prompted: bool) -> list[dict]:
    """Every probe at every shift: its scores and its encoding's rank of the source segment."""
    settings = AttributeSettings(candidates="all")
    sr = att.index.meta.sample_rate
    all_ids = sorted(att.index.segments)
    latents = att.index.gather(all_ids, "latents").flatten(1).float()
    rng = np.random.default_rng(0)
    rows = []
    for sid in ids:
        seg = att.index.segments[sid]
        track = att.index.tracks[seg.track_id]
        clip = segment_audio(att, sid)
        for kind, query in (("self", clip), ("noise 20 dB", add_noise(clip, sr, rng)), ("pitch +1", pitch_shift(clip, sr, rng))):
            row = {"segment_id": sid, "track_id": seg.track_id, "kind": kind, "scores": {}, "latent_rank": {}}
            for shift in SHIFTS:
                shifted = query if shift == 0 else pitch_shift(query, sr, rng, semitones=float(shift))
                with torch.no_grad():
                    z = att.adapter.encode(torch.from_numpy(shifted)[None]).flatten(1).float()
                distance = (latents - z).norm(dim=1)
                row["latent_rank"][shift] = int((distance < distance[all_ids.index(sid)]).sum()) + 1
                kwargs = dict(prompt=track.caption, seconds_start=seg.start_s, seconds_total=track.duration_s) \
                    if prompted else dict(prompt=None)
                scores = att.attribute(shifted, sr, settings=settings, **kwargs).scores
                row["scores"][shift] = [scores[i] for i in all_ids]
            rows.append(row)
            print(f"segment {sid}, {kind}", flush=True)
    return rows


def tabulate(att: Attributor, rows: list[dict]) -> dict[str, dict[str, object]]:
    """Per probe kind: hits of every rule (self: the segment first; copies: its track first, the credits' max rule)
    and how often each shift's encoding is nearest the source."""
    all_ids = sorted(att.index.segments)
    track_of = np.array([att.index.segments[i].track_id for i in all_ids])
    out: dict[str, dict[str, object]] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        hits = {}
        for name, rule in RULES.items():
            hits[name] = 0
            for r in mine:
                top = int(np.argmax(rule({s: np.asarray(v) for s, v in r["scores"].items()})))
                hits[name] += all_ids[top] == r["segment_id"] if kind == "self" else track_of[top] == r["track_id"]
        out[kind] = {"probes": len(mine), "hits": {k: int(v) for k, v in hits.items()},
                     "encoding nearest its source, by shift": {s: sum(r["latent_rank"][s] == 1 for r in mine) for s in SHIFTS}}
    return out


def firsts(att: Attributor, rows: list[dict]) -> list[dict]:
    """Per probe, the segment each rule puts first and each shift's latent rank of the source (what the JSON keeps)."""
    all_ids = sorted(att.index.segments)
    return [{k: r[k] for k in ("segment_id", "track_id", "kind", "latent_rank")}
            | {"first": {name: all_ids[int(np.argmax(rule({s: np.asarray(v) for s, v in r["scores"].items()})))]
                         for name, rule in RULES.items()}} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=Path("demo-out/index"))
    ap.add_argument("--queries", type=int, default=24, help="training segments probed (spread over the catalogue)")
    ap.add_argument("--prompt", action="store_true", help="probe with each segment's own prompt (default: none)")
    ap.add_argument("--name", default="transposition-demo")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    att = Attributor.from_index(args.index)
    rows = probe(att, spread_segments(att, args.queries), args.prompt)
    table = tabulate(att, rows)
    doc = {"index": str(args.index), "segments": len(att.index.segments), "prompted": args.prompt, "table": table,
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc | {"probes": firsts(att, rows)}, indent=1) + "\n")
    lines = [f"# Transposition search at query time: {args.name}", "",
             f"{doc['segments']} segments, {'with' if args.prompt else 'without'} prompts; {doc['machine']}; {doc['wall_s']} s.", "",
             "| probe | " + " | ".join(RULES) + " | encoding nearest its source (shift -1 / 0 / +1) |",
             "|---|" + "---|" * (len(RULES) + 1)]
    for kind, t in table.items():
        near = t["encoding nearest its source, by shift"]
        lines.append(f"| {kind} | " + " | ".join(f"{t['hits'][k]}/{t['probes']}" for k in RULES)
                     + f" | {near[-1]} / {near[0]} / {near[1]} |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
