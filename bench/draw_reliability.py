"""How much of a ranking is the method's own random numbers? The same queries scored exactly on indexes of one
model that differ only in their seed (every fixed draw: timesteps, noise, the Fisher sample, the query's
unlearning draws) and in their number of draws.

    tda index build demo-out/catalogue --ckpt demo-out/model/model.safetensors --out /tmp/rel/s1-d16 --seed 1
    tda index build ... --out /tmp/rel/s0-d64 --seed 0 --draws 64     # and --seed 1 --draws 64
    python bench/draw_reliability.py --index demo-out/index --index /tmp/rel/s1-d16 --index /tmp/rel/s0-d64 \\
        --index /tmp/rel/s1-d64 --clips demo-out/clips --noisy 8 --name demo
    python bench/draw_reliability.py --index real/run/index --index /tmp/rel/real-s1-d16 \
        --listed real-generated --listed real-held-out --noisy 12 --name real-d16   # folders with queries.csv

Every query is scored on every segment (``--candidates all``, otherwise the defaults) on each index; for each
pair of indexes with the same number of draws and different seeds it reports the top-10 overlap, whether the
first segment, the first credited track and the first credited artist agree, and the Spearman correlation of the two score vectors;
whether the first index's own results called their first track and artist settled (tda_plugin/stability.py), against
whether the second seed agreed (does the flag predict it?); for each index, where the
source segment of each noisy copy ranks. A ranking that a second seed does not reproduce is noise, whatever a
single-seed check (self-influence, recall against the exhaustive ranking) says, since those share the seed.
``--traces FILE...`` instead splits stored exhaustive traces of ``bench/query_scaling.py`` into their even and odd
draws (halves of one seed: a lower bound on the agreement of two full seeds). Writes
bench/results/draw_reliability-<name>.{json,md}.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from tda_plugin import Attributor, AttributeSettings
from tda_plugin.credits import build_credits
from tda_plugin.evaluation import spread_segments
from tda_plugin.experiments.prefilter import clip_queries, noisy_queries
from tda_plugin.experiments.retraining import held_out_queries
from tda_plugin.recall import Query
from tda_plugin.stability import settled

EXHAUSTIVE = AttributeSettings(candidates="all")
K = 10


def agreement(a: np.ndarray, b: np.ndarray, k: int = K) -> dict[str, float]:
    """Top-k overlap, first-place agreement and Spearman of two score vectors over the same segments."""
    ta, tb = np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable")
    return {"topk": len(set(ta[:k]) & set(tb[:k])) / k, "first": float(ta[0] == tb[0]),
            "spearman": float(stats.spearmanr(a, b).statistic)}


def first_credits(att: Attributor, scores: np.ndarray) -> tuple[int | None, str | None]:
    """The track and the artist that ``tda attribute`` would credit first for these scores (segment-id order)."""
    ids = sorted(att.index.segments)
    ranked = sorted(zip(ids, scores.tolist()), key=lambda kv: (-kv[1], kv[0]))
    _, credits, artists = build_credits(ranked, att.index.segments, att.index.tracks, EXHAUSTIVE.top, EXHAUSTIVE.track_credit)
    return (credits[0]["track_id"] if credits else None), (artists[0]["artist"] if artists else None)


def score_all(att: Attributor, queries: list) -> tuple[np.ndarray, list[dict[str, bool]]]:
    """[Q, N] exact scores in segment-id order, and per query whether the result called its first track and its
    first artist settled (tda_plugin/stability.py)."""
    ids = sorted(att.index.segments)
    out = np.zeros((len(queries), len(ids)))
    settles = []
    for j, q in enumerate(queries):
        result = att.attribute(q.audio, q.sample_rate, prompt=q.prompt, settings=EXHAUSTIVE)
        out[j] = [result.scores[i] for i in ids]
        settles.append({"track": settled(result.credits), "artist": settled(result.artists)})
    return out, settles


def calibration(rows: list[dict], settles: list[dict[str, bool]]) -> dict[str, dict[str, list[int]]]:
    """Per level (track, artist): [agreeing, queries] of the second seed among the queries the first index's result
    called settled, and among those it called unsettled: does the flag predict what a second seed does?"""
    out = {}
    for level in ("track", "artist"):
        agree = [bool(r[f"first_{level}"]) for r in rows]
        flags = [s[level] for s in settles]
        out[level] = {"settled": [sum(a for a, f in zip(agree, flags) if f), sum(flags)],
                      "unsettled": [sum(a for a, f in zip(agree, flags) if not f), len(flags) - sum(flags)]}
    return out


def listed_queries(folder: Path) -> list[Query]:
    """The clips ``folder/queries.csv`` lists with their prompts (the ``--query-audio`` format of `tda eval`)."""
    return [Query(q.name, q.audio, q.sample_rate, q.prompt) for q in held_out_queries(folder)]


def from_indexes(paths: list[Path], clips: Path | None, listed: list[Path], noisy: int) -> dict:
    atts = [Attributor.from_index(p) for p in paths]
    first = atts[0]
    sources = spread_segments(first, noisy) if noisy else []
    queries, kinds = clip_queries(clips) if clips else [], []
    kinds += ["generated"] * len(queries)
    for folder in listed:
        found = listed_queries(folder)
        queries += found
        kinds += [folder.name] * len(found)
    queries += noisy_queries(first, sources)
    kinds += ["noisy"] * len(sources)
    ids = sorted(first.index.segments)
    labels, scores, settles, seconds = [], [], [], []
    for p, att in zip(paths, atts):
        s = att.index.meta.settings
        labels.append(f"seed {s['seed']}, {s['draws']} draws")
        t = time.perf_counter()
        score, settle = score_all(att, queries)
        scores.append(score)
        settles.append(settle)
        seconds.append(round(time.perf_counter() - t, 1))
        print(f"{labels[-1]}: {seconds[-1]} s", flush=True)
    pairs = []
    for a, b in itertools.combinations(range(len(paths)), 2):
        sa, sb = atts[a].index.meta.settings, atts[b].index.meta.settings
        if sa["draws"] != sb["draws"] or sa["seed"] == sb["seed"]:
            continue
        rows = []
        for j in range(len(queries)):
            row = agreement(scores[a][j], scores[b][j])
            (track_a, artist_a), (track_b, artist_b) = first_credits(first, scores[a][j]), first_credits(first, scores[b][j])
            rows.append({**row, "first_track": float(track_a == track_b), "first_artist": float(artist_a == artist_b)})
        pairs.append({"draws": sa["draws"], "a": labels[a], "b": labels[b], "per_query": rows,
                      **{kind: _mean(r for r, k in zip(rows, kinds) if k == kind) for kind in sorted(set(kinds))},
                      "all": _mean(rows), "settled_on_a": settles[a], "calibration": calibration(rows, settles[a])})
    source_ranks = {labels[i]: [int(1 + np.sum(scores[i][len(queries) - len(sources) + j] >
                                               scores[i][len(queries) - len(sources) + j][ids.index(sid)]))
                                for j, sid in enumerate(sources)] for i in range(len(paths))}
    return {"indexes": [str(p) for p in paths], "labels": labels, "queries": [q.name for q in queries], "kinds": kinds,
            "segments": len(ids), "scoring_seconds": seconds, "pairs": pairs, "noisy_source_rank": source_ranks}


def from_traces(paths: list[Path]) -> dict:
    """Even against odd draws of each stored exhaustive trace (one seed split in two)."""
    rows, kinds = [], []
    for path in paths:
        z = np.load(path)
        change, sens = z["change"], z["sensitivity"]
        rows.append(agreement(change[:, 0::2].mean(axis=1) / sens, change[:, 1::2].mean(axis=1) / sens))
        kinds.append(str(z["name"]).split()[0].replace("segment", "noisy"))
    draws = int(change.shape[1])
    return {"traces": [str(p) for p in paths], "segments": int(len(sens)), "kinds": kinds,
            "pairs": [{"draws": draws // 2, "a": f"even draws of {draws}", "b": f"odd draws of {draws}", "per_query": rows,
                       **{kind: _mean(r for r, k in zip(rows, kinds) if k == kind) for kind in sorted(set(kinds))},
                       "all": _mean(rows)}]}


def _mean(rows) -> dict[str, float]:
    rows = list(rows)
    return {k: float(np.mean([r[k] for r in rows])) for k in ("topk", "first", "spearman", "first_track", "first_artist")
            if k in rows[0]} | {
        "topk_min": float(min(r["topk"] for r in rows)), "n": len(rows)}


def _cell(group: dict, key: str) -> str:
    return f"{group[key]:.2f}" if key in group else "–"


def write_report(doc: dict, stem: Path) -> None:
    lines = [f"# Ranking reliability under the method's own random numbers: {doc['name']}", "",
             f"{doc['segments']} segments; {doc['machine']}; {doc['wall_s']} s.", "",
             "| draws | a | b | queries | top-10 overlap mean (min) | same first segment | same first track | same first artist "
             "| Spearman |", "|---|---|---|---|---|---|---|---|---|"]
    for p in doc["pairs"]:
        groups = [(k, p[k]) for k in sorted(set(doc["kinds"])) if k in p] + [("all", p["all"])]
        for kind, g in groups:
            lines.append(f"| {p['draws']} | {p['a']} | {p['b']} | {kind} ({g['n']}) | {g['topk']:.2f} ({g['topk_min']:.1f}) "
                         f"| {g['first']:.2f} | {_cell(g, 'first_track')} | {_cell(g, 'first_artist')} | {g['spearman']:.3f} |")
    calibrated = [p for p in doc["pairs"] if "calibration" in p]
    if calibrated:
        lines += ["", "Does the first index's own flag (first in ≥ 90 % of resamples of its draws, tda_plugin/stability.py) "
                  "predict whether the second seed agrees? Agreeing / queries:", "",
                  "| draws | a | b | level | flagged settled on a | flagged unsettled on a |", "|---|---|---|---|---|---|"]
        for p in calibrated:
            for level, c in p["calibration"].items():
                lines.append(f"| {p['draws']} | {p['a']} | {p['b']} | first {level} | {c['settled'][0]}/{c['settled'][1]} "
                             f"| {c['unsettled'][0]}/{c['unsettled'][1]} |")
    if "noisy_source_rank" in doc:
        lines += ["", "Rank of each noisy copy's source segment:", ""]
        lines += [f"- {label}: {ranks}" for label, ranks in doc["noisy_source_rank"].items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, action="append", default=[], help="an index of the model (repeat)")
    ap.add_argument("--clips", type=Path, help="generated clips with their stored prompts")
    ap.add_argument("--listed", type=Path, action="append", default=[],
                    help="a folder whose queries.csv lists clips and their prompts (repeat; grouped by folder name)")
    ap.add_argument("--noisy", type=int, default=8, help="training segments with 20 dB noise as queries")
    ap.add_argument("--traces", type=Path, nargs="+", help="split these traces of bench/query_scaling.py instead")
    ap.add_argument("--name", default="demo")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    doc = from_traces(args.traces) if args.traces else from_indexes(args.index, args.clips, args.listed, args.noisy)
    doc = {"name": args.name, **doc, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"draw_reliability-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    write_report(doc, stem)
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
