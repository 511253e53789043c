"""Recall of the exhaustive top-k inside each prefilter's top M (tda_plugin/recall.py), M = 1..20 % of N.

    python bench/prefilter_recall.py --index demo-out/index --clips demo-out/clips --noisy-copies 8 --name demo
    python bench/prefilter_recall.py --index /tmp/real/index --clips /tmp/real/queries --name real

Queries: every audio file in ``--clips`` (prompt from its stored credits, else none) plus ``--noisy-copies`` training segments spread over the catalogue with 20 dB noise, each
with its segment's own conditioning. Every embedder is measured on the same queries and the same
exhaustive scores. Writes bench/results/prefilter_recall-<name>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from tda_plugin import Attributor
from tda_plugin.evaluation import spread_segments
from tda_plugin.experiments.prefilter import clip_queries, noisy_queries
from tda_plugin.recall import FIRST_ORDER, FRACTIONS, evaluate_prefilter
from tda_plugin.sketch import SKETCH_DIM

EMBEDDERS = ("gradient_sketch", "activations", "latent_stats", "mfcc_chroma")


def markdown(doc: dict) -> str:
    t = doc["table"]
    lines = [f"Recall of the exhaustive top-k within the prefilter's top M — {doc['name']}: N = {t['segments']} "
             f"segments, {len(t['queries'])} queries, {doc['wall_s']} s on {doc['machine']}.", ""]
    for k in t["ks"]:
        head = " | ".join(f"M={t['m'][str(f)]} ({100 * f:g}%)" for f in t["fractions"])
        lines += [f"top-{k}:", "", f"| embedder | {head} |", "|---|" + "---|" * len(t["fractions"])]
        for e, byk in t["recall"].items():
            lines.append(f"| {e} | " + " | ".join(f"{byk[str(k)][str(f)]:.3f}" for f in t["fractions"]) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--clips", type=Path, help="folder of query .wav files")
    ap.add_argument("--noisy-copies", type=int, default=0, help="training segments + 20 dB noise as extra queries")
    ap.add_argument("--embedders", default=",".join(EMBEDDERS))
    ap.add_argument("--sketch-dims", default=f"{SKETCH_DIM},1024,4096", help="sizes of the gradient sketch to compare")
    ap.add_argument("--ks", default="10,100")
    ap.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="M as fractions of N")
    ap.add_argument("--name", default="demo")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    att = Attributor.from_index(args.index)
    queries = (clip_queries(args.clips) if args.clips else []) + noisy_queries(att, spread_segments(att, args.noisy_copies))
    n = len(att.index.segments)
    ks = [k for k in map(int, args.ks.split(",")) if k < n]
    table = evaluate_prefilter(att, queries, args.embedders.split(","), ks=ks,
                               fractions=[float(f) for f in args.fractions.split(",")],
                               sketch_dims=[int(d) for d in args.sketch_dims.split(",")])
    doc = {"name": args.name, "index": str(args.index), "embedder_of_index": att.index.meta.settings["embedder"],
           "draws": att.index.meta.settings["draws"], "first_order": FIRST_ORDER,
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "wall_s": round(time.monotonic() - t0, 1), "table": table.to_dict()}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"prefilter_recall-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc) + "\n")
    print(markdown(doc))


if __name__ == "__main__":
    main()
