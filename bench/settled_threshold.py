"""Calibrate the "settled" threshold (tda_plugin/stability.py) on queries it was not read off, against a second
index seed, in one command:

    OMP_NUM_THREADS=1 python bench/settled_threshold.py --index demo-out/index --listed held-out --noisy 8 \\
        --seed 1 --work /tmp/settled --name demo

Builds (or resumes) a second index of the index's own catalogue and model that differs only in its seed (every
fixed draw: timesteps, noise, the Fisher sample, the query's unlearning draws), in ``WORK/seed-S``; attributes
every query on both indexes with ``tda attribute``'s defaults; and reads each result's ``first_share`` of its
first track and first artist (the share of bootstrap resamples of the draws in which it comes first). For every
threshold t, a first credit is *flagged settled* when its share is at least t; it *holds* when the other index's
result credits the same track (artist) first. Both directions count (each index's flags against the other's
answer), so a query gives two flags per level. The threshold chosen is the smallest t at which no flagged-settled
first credit, track or artist, failed to hold; beside it the 95 % Clopper–Pearson lower bound of the share that
held. Queries: the clips of each ``--listed`` folder (``queries.csv`` with prompts: the `--query-audio` format of
`tda eval`; e.g. ``bench/demo_held_out.py``'s held-out studies) and ``--noisy`` training segments under 20 dB
noise, chosen at random with ``--query-seed`` (not the evenly spread ones the threshold was first read off).
Writes bench/results/settled_threshold-NAME.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from tda_plugin import Attributor
from tda_plugin.experiments.prefilter import noisy_queries
from tda_plugin.experiments.retraining import held_out_queries
from tda_plugin.index.builder import build_index
from tda_plugin.index.store import Index
from tda_plugin.settings import IndexSettings
from tda_plugin.stability import SETTLED

#: thresholds tried, in steps of 0.05
THRESHOLDS = [round(0.5 + 0.05 * k, 2) for k in range(11)]
LEVELS = ("track", "artist")


def second_index(first: Attributor, seed: int, work: Path) -> Attributor:
    """The first index's catalogue and model indexed again under ``seed`` (resumed if interrupted)."""
    meta = first.index.meta
    settings = IndexSettings(**{**meta.settings, "seed": seed})
    out = work / f"seed-{seed}"
    build_index(first.index.path(meta.corpus), out, first.adapter, checkpoint=first.index.checkpoint,
                model_config=first.index.model_config, settings=settings)
    return Attributor(Index(out), first.adapter)


def firsts(att: Attributor, queries: list) -> list[dict[str, Any]]:
    """Per query, the first track and artist the default result credits, with their ``first_share``."""
    rows = []
    for k, q in enumerate(queries):
        r = att.attribute(q.audio, q.sample_rate, prompt=q.prompt, seconds_start=getattr(q, "seconds_start", 0.0),
                          seconds_total=getattr(q, "seconds_total", None))
        first_track = (int(r.credits[0]["track_id"]), float(r.credits[0]["first_share"])) if r.credits else (None, 0.0)
        first_artist = (str(r.artists[0]["artist"]), float(r.artists[0]["first_share"])) if r.artists else (None, 0.0)
        rows.append({"track": first_track, "artist": first_artist})
        print(f"  {k + 1}/{len(queries)} {q.name}", flush=True)
    return rows


def sweep(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per threshold and level: flagged-settled first credits (both directions) and how many held."""
    out = []
    for t in THRESHOLDS:
        row: dict[str, Any] = {"threshold": t}
        for level in LEVELS:
            flags = [(x[level][1] >= t, x[level][0] == y[level][0]) for one, other in ((a, b), (b, a))
                     for x, y in zip(one, other)]
            flagged = sum(f for f, _ in flags)
            held = sum(f and h for f, h in flags)
            row[level] = {"flagged": flagged, "held": held, "of": len(flags),
                          "lower_95": round(float(stats.beta.ppf(0.05, held, flagged - held + 1)), 3) if held else 0.0}
        out.append(row)
    return out


def choose(rows: list[dict[str, Any]]) -> float | None:
    """The smallest threshold at which every flagged-settled first credit held, at both levels."""
    return next((r["threshold"] for r in rows if all(r[lv]["flagged"] == r[lv]["held"] for lv in LEVELS)), None)


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# The settled threshold against a second index seed: {doc['name']}", "",
             f"{len(doc['queries'])} queries ({', '.join(f'{n} {k}' for k, n in doc['kinds'].items())}); indexes "
             f"{doc['indexes'][0]} and {doc['indexes'][1]} ({doc['draws']} draws, seeds {doc['seeds']}); "
             f"{doc['machine']}; {doc['wall_s']} s.", "",
             f"Same first credit under both seeds: tracks {doc['agree']['track']}/{len(doc['queries'])}, "
             f"artists {doc['agree']['artist']}/{len(doc['queries'])}.", "",
             "| threshold | first tracks flagged settled: held / flagged (95 % lower bound) | first artists: held / flagged "
             "(lower bound) |", "|---|---|---|"]
    for r in doc["sweep"]:
        mark = " **(code)**" if abs(r["threshold"] - doc["code_threshold"]) < 1e-9 else ""
        cells = [f"{r[lv]['held']}/{r[lv]['flagged']} of {r[lv]['of']} ({r[lv]['lower_95']})" for lv in LEVELS]
        lines.append(f"| {r['threshold']:.2f}{mark} | " + " | ".join(cells) + " |")
    lines += ["", f"Smallest threshold at which every flagged first credit held: **{doc['chosen']}** "
              f"(the code's: {doc['code_threshold']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="the index whose results are calibrated")
    ap.add_argument("--listed", type=Path, action="append", default=[], help="a folder with queries.csv (repeat)")
    ap.add_argument("--noisy", type=int, default=8, help="random training segments under 20 dB noise as queries")
    ap.add_argument("--query-seed", type=int, default=1, help="picks the noisy segments and their noise")
    ap.add_argument("--seed", type=int, default=1, help="the second index's seed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/settled"))
    ap.add_argument("--name", default="demo")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    first = Attributor.from_index(args.index)
    if args.seed == first.index.meta.settings["seed"]:
        ap.error(f"--seed {args.seed} is the index's own seed: choose another")
    print(f"second index, seed {args.seed}: {args.work / f'seed-{args.seed}'}", flush=True)
    second = second_index(first, args.seed, args.work)
    rng = np.random.default_rng(args.query_seed)
    picked = sorted(int(s) for s in rng.choice(sorted(first.index.segments), args.noisy, replace=False))
    queries, kinds = [], {}
    for folder in args.listed:
        found = held_out_queries(folder)
        queries += found
        kinds[folder.name] = len(found)
    queries += noisy_queries(first, picked, seed=args.query_seed)
    kinds["noisy"] = len(picked)
    results = []
    for att in (first, second):
        print(f"seed {att.index.meta.settings['seed']}: {len(queries)} queries", flush=True)
        results.append(firsts(att, queries))
    rows = sweep(*results)
    doc = {"name": args.name, "indexes": [str(args.index), str(args.work / f"seed-{args.seed}")],
           "seeds": [first.index.meta.settings["seed"], args.seed], "draws": first.index.meta.settings["draws"],
           "queries": [q.name for q in queries], "kinds": kinds, "noisy_segments": picked,
           "firsts": results, "agree": {lv: sum(x[lv][0] == y[lv][0] for x, y in zip(*results)) for lv in LEVELS},
           "sweep": rows, "chosen": choose(rows), "code_threshold": SETTLED,
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"settled_threshold-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
