"""Which conditioning branch for the clip's unlearning step, and which for the segments' losses?

    python bench/branches.py --demo-dir demo-out [--queries 24] [--clips-per-style 2] [--name branches]
    python bench/branches.py --demo-dir demo-out --scores bench/results/branches.json   # re-tabulate stored scores

The behaviour checks of bench/behaviour.py (self, 20 dB noisy copy, +1 semitone copy, prompt swap, generated
clips), each probe answered in every combination of the two places a conditioning enters the score, from
the same fixed draws: the query's step under its prompt (P) or the model's null branch (N), and the
segments' loss changes under their captions (P) or the null branch (N). The artist checks are also
counted as they would be had an artist's credit been its best track's, not the sum of its tracks'. "PP" is `--conditioning prompt`,
"NN" `--conditioning unconditional`, "NP" `--conditioning audio`, the gated column `--conditioning gated`; "PN" is not a mode of `tda attribute`. Under an N step the
prompt is never read, so a probe's NP and NN answers are the same with or without its prompt (and the prompt
swap's are those of the probe itself). Two combinations of a probe's score vectors are also counted:
"min(PP, NP)", each segment's smaller score of the two (a segment must rise whether the clip is forgotten
under its prompt or on the null branch; both are τ over the segment's captioned sensitivity, so the scales
match), and "PP within NP's top 10": the 10 segments NP ranks highest (the credits' own top), ordered and
weighted by their PP scores, every other segment uncredited (the audio chooses, the prompt weighs). Credits as `tda attribute` gives them (`--track-credit max`, top 10), exact
scores over all segments. Stable-audio indexes (the generated clips use the demo's sampler). Writes
bench/results/NAME.json (every score vector, so a table can be re-made with ``--scores``) and NAME.md.
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
from tda_plugin import Attributor, gating
from tda_plugin.credits import build_credits
from tda_plugin.errors import AudioError
from tda_plugin.evaluation import add_noise, segment_audio, spread_segments
from tda_plugin.experiments.methods import GATE  # how many of NP's best segments the gated combination keeps
from tda_plugin.settings import UnlearnSettings

BRANCHES = ("prompt", "unconditional")
EDITS = {"self": None, "noisy": add_noise, "semitone": pitch_shift}
#: a query's score vectors by segment branch, keyed "qP" / "qN" by the step's branch
Answers = dict[str, dict[str, list[float]]]


def answer(att: Attributor, audio: np.ndarray, prompt: str | None, start: float, total: float | None,
           step_branch: str) -> dict[str, list[float]]:
    """One unlearning step under ``step_branch``; every segment's score under each segment branch."""
    un = UnlearnSettings()
    ids = sorted(att.index.segments)
    query = att.encode_query(audio, att.index.meta.sample_rate, prompt, un.mask_silence, seconds_start=start,
                             seconds_total=total, conditioning=step_branch)
    names, delta, *_ = att.forget(query, un)
    return {b: att.exact_scores(ids, names, delta, un, 0, "fp32", b)[1].tolist() for b in BRANCHES}


def both_steps(att: Attributor, audio: np.ndarray, prompt: str | None, start: float, total: float | None) -> Answers:
    return {"qP": answer(att, audio, prompt, start, total, "prompt"),
            "qN": answer(att, audio, None, 0.0, None, "unconditional")}


def measure(att: Attributor, queries: int, clips_per_style: int, steps: int, progress: Callable[[str], None]) -> dict:
    """Every probe's score vectors (JSON-able)."""
    sr = att.index.meta.sample_rate
    captions = sorted({t.caption for t in att.index.tracks.values() if t.caption})
    artist_of = {t.caption: t.artist for t in att.index.tracks.values()}
    rng = np.random.default_rng(0)  # the noise of bench/behaviour.py's probes, in the same order
    probes = []
    for sid in spread_segments(att, queries):
        seg = att.index.segments[sid]
        track = att.index.tracks[seg.track_id]
        clip = segment_audio(att, sid)
        rec: dict = {"sid": sid, "track": seg.track_id, "artist": track.artist}
        for name, edit in EDITS.items():
            x = clip if edit is None else edit(clip, sr, rng)
            rec[name] = both_steps(att, x, track.caption, seg.start_s, track.duration_s)
        other = captions[(captions.index(track.caption) + 1) % len(captions)]
        rec["swap_artist"] = artist_of[other]
        rec["swap"] = {"qP": answer(att, clip, other, seg.start_s, track.duration_s, "prompt"), "qN": rec["self"]["qN"]}
        probes.append(rec)
        progress(f"probe {sid}")
    generated = []
    if clips_per_style:
        from tda_plugin.adapters.stable_audio_demo import generate_clip

        total = float(np.median([t.duration_s for t in att.index.tracks.values()]))  # timing as in training
        styles = {t.caption: t.artist for t in att.index.tracks.values() if t.caption}
        for k, (prompt, artist) in enumerate(sorted(styles.items())):
            for j in range(clips_per_style):  # the seeds of bench/behaviour.py's clips
                clip = generate_clip(att.adapter, prompt, seconds_total=total, samples=att.index.meta.segment_samples,
                                     seed=1000 * j + k, steps=steps)
                try:
                    generated.append({"artist": artist, **both_steps(att, clip, prompt, 0.0, total)})
                except AudioError as exc:
                    generated.append({"artist": artist, "error": str(exc)})
                progress(f"clip {k}.{j}")
    return {"probes": probes, "generated": generated}


GATED = f"PP within NP's top {GATE}"
#: the columns, in the order the table shows them
MODES = ("PP", "NN", "NP", "PN", "min(PP, NP)", GATED)


def combinations(ans: Answers, ids: list[int]) -> dict[str, np.ndarray]:
    """Score vectors by mode name (the step's branch, then the segments'), in ``MODES`` order; ``ids``: the
    segment of each score."""
    p, n = ans["qP"], ans["qN"]
    kept = set(gating.kept(ids, torch.tensor(n["prompt"]), GATE))  # --conditioning gated's rule
    return {"PP": np.asarray(p["prompt"]), "NN": np.asarray(n["unconditional"]), "NP": np.asarray(n["prompt"]),
            "PN": np.asarray(p["unconditional"]), "min(PP, NP)": np.minimum(np.asarray(p["prompt"]), np.asarray(n["prompt"])),
            GATED: np.where([i in kept for i in ids], gating.credited(torch.tensor(p["prompt"])).numpy(), -np.inf)}


def tabulate(att: Attributor, doc: dict) -> dict[str, dict[str, list[int]]]:
    """check -> mode -> [hits, total]."""
    ids = sorted(att.index.segments)
    table: dict[str, dict[str, list[int]]] = {}

    def first(score: np.ndarray) -> tuple[int, int | None, str | None, str | None]:
        """The first segment, track and artist as `tda attribute` credits them, and the artist first had an
        artist's credit been its best track's rather than the sum of its tracks'."""
        ranked = sorted(zip(ids, score.tolist()), key=lambda kv: (-kv[1], kv[0]))
        _, credits, artists = build_credits(ranked, att.index.segments, att.index.tracks, 10, "max")
        best: dict[str, float] = {}
        for c in credits:
            best[c["artist"]] = max(best.get(c["artist"], 0.0), c["score"])
        return (ranked[0][0], credits[0]["track_id"] if credits else None, artists[0]["artist"] if artists else None,
                min(best, key=lambda a: (-best[a], a)) if best else None)

    def count(check: str, mode: str, hit: bool) -> None:
        cell = table.setdefault(check, {}).setdefault(mode, [0, 0])
        cell[0] += bool(hit)
        cell[1] += 1

    for p in doc["probes"]:
        for check in EDITS:
            for mode, score in combinations(p[check], ids).items():
                seg, track, *_ = first(score)
                count(check, mode, seg == p["sid"] if check == "self" else track == p["track"])
        for mode, score in combinations(p["swap"], ids).items():
            *_, artist, by_best = first(score)
            count("swap: audio's artist", mode, artist == p["artist"])
            count("swap: prompt's artist", mode, artist == p["swap_artist"])
            count("swap: audio's artist, best track", mode, by_best == p["artist"])
            count("swap: prompt's artist, best track", mode, by_best == p["swap_artist"])
    for g in doc["generated"]:  # a clip the model generated silent credits no one: a miss, as in bench/behaviour.py
        scored = combinations(g, ids) if "error" not in g else {}
        for mode in MODES:
            firsts = first(scored[mode]) if scored else (None,) * 4
            count("generated: prompted artist", mode, firsts[2] == g["artist"])
            count("generated: prompted artist, best track", mode, firsts[3] == g["artist"])
    return table


CHECKS = {"self": "self: segment ranks itself first", "noisy": "20 dB noisy copy: source track first",
          "semitone": "+1 semitone copy: source track first", "swap: audio's artist": "prompt swap: audio's artist first",
          "swap: prompt's artist": "prompt swap: prompt's artist first",
          "generated: prompted artist": "generated clips: prompted artist first",
          "swap: audio's artist, best track": "had an artist's credit been its best track's: prompt swap, audio's artist first",
          "swap: prompt's artist, best track": "… prompt swap, prompt's artist first",
          "generated: prompted artist, best track": "… generated clips, prompted artist first"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-dir", type=Path, default=Path("demo-out"), help="holds index/ (tda demo, or any stable-audio index)")
    ap.add_argument("--queries", type=int, default=24, help="training segments probed (spread over the catalogue)")
    ap.add_argument("--clips-per-style", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="sampler steps for generated clips")
    ap.add_argument("--scores", type=Path, help="re-tabulate this earlier run's JSON instead of measuring")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", default="branches")
    args = ap.parse_args()
    t0 = time.monotonic()
    att = Attributor.from_index(args.demo_dir / "index")
    if args.scores:
        doc = json.loads(args.scores.read_text())
    else:
        doc = measure(att, args.queries, args.clips_per_style, args.steps,
                      lambda what: print(f"{what} done, {time.monotonic() - t0:.0f} s", flush=True))
        doc.update({"index": str(args.demo_dir / "index"), "segments": len(att.index.segments),
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                    "wall_s": round(time.monotonic() - t0, 1)})
    table = tabulate(att, doc)
    doc["checks"] = table
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.scores:
        (args.out / f"{args.name}.json").write_text(json.dumps(doc) + "\n")
    lines = ["| check | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    for key, label in CHECKS.items():
        if key in table:
            lines.append(f"| {label} | " + " | ".join("{}/{}".format(*table[key][m]) for m in MODES) + " |")
    md = (f"Branches on `{doc['index']}` ({doc['segments']} segments, {len(doc['probes'])} probes, "
          f"{len(doc['generated'])} generated clips), {doc['machine']}, {doc['wall_s']:.0f} s\n\n" + "\n".join(lines) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
