"""Credits at generation time: attributing a clip against generating it, side by side, on the demo model.

    python bench/generation_cost.py --index demo-out/index --clips 6 --noisy 6 --steps 100 --cfg-scale 7

1. Generation with the ``credited()`` wrapper around stable-audio-tools' own ``generate_diffusion_cond``
   (``--steps`` steps with classifier-free guidance), the model already loaded: for each clip, the time of
   the toolkit's call and the time the wrapper adds (attribution, default settings), the first clip on a
   fresh Attributor (index files read, first kernels run) and the later ones apart.
2. Levers, each on the same ≥ 12 queries (the generated clips, with their prompts, and ``--noisy`` training
   segments with 20 dB noise): the time of one attribution and its ranking against the previous default
   (4.5 % candidates, every candidate on all draws, 64 unlearning draws, activation checkpointing in the
   query gradient): overlap of the reported top-10, and Spearman's rho over the segments both score on
   all draws (their numbers are exact, so any difference is the lever's).
Times are wall-clock seconds and CPU seconds of this one-thread process (the CPU figures hold on a shared
machine, where wall-clock times stretch with the load). Writes bench/results/generation_cost.{json,md}.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from scipy.stats import spearmanr

from tda_plugin import Attributor, AttributeSettings
from tda_plugin import unlearn
from tda_plugin.evaluation import spread_segments
from tda_plugin.experiments.prefilter import noisy_queries
from tda_plugin.recall import Query

PREVIOUS = AttributeSettings(candidates="4.5%", shortlist=None)


def levers(default: AttributeSettings) -> dict[str, AttributeSettings]:
    un = default.unlearn
    return {
        "previous default": PREVIOUS,
        "previous, no recomputation": PREVIOUS,
        "default": default,
        "default, 32 unlearning draws": replace(default, unlearn=replace(un, unlearn_draws=32)),
        "default, 16 unlearning draws": replace(default, unlearn=replace(un, unlearn_draws=16)),
        "default, shortlist 16 after 8 draws": replace(default, shortlist=16, shortlist_draws=8),
    }


@contextlib.contextmanager
def recomputing(on: bool) -> Iterator[None]:
    """The previous code path: the query gradient with the adapter's activation checkpointing left on."""
    if not on:
        yield
        return
    real = unlearn.checkpointing
    unlearn.checkpointing = lambda adapter, enabled: contextlib.nullcontext()  # type: ignore[assignment]
    try:
        yield
    finally:
        unlearn.checkpointing = real  # type: ignore[assignment]


def clocks(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def generation(att: Attributor, prompts: list[str], args: argparse.Namespace) -> tuple[list[dict], list[Query]]:
    """Each clip through credited(generate_diffusion_cond): the toolkit's time and the time the wrapper adds."""
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    from tda_plugin.adapters.stable_audio_generation import credited

    spent: dict[str, float] = {}

    def toolkit(*a: Any, **k: Any) -> Any:
        out, spent["wall"], spent["cpu"] = clocks(lambda: generate_diffusion_cond(*a, **k))
        return out

    generate = credited(att, on_veto="keep")(toolkit)
    total = float(np.median([t.duration_s for t in att.index.tracks.values()]))
    rows, queries = [], []
    for i, prompt in enumerate(prompts):
        (latents, _), wall, cpu = clocks(lambda: generate(
            att.adapter.model, steps=args.steps, cfg_scale=args.cfg_scale, batch_size=1, seed=i, return_latents=True,
            sample_size=att.index.meta.segment_samples, conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": total}]))
        rows.append({"clip": i, "prompt": prompt, "generate_s": round(spent["wall"], 3), "generate_cpu_s": round(spent["cpu"], 3),
                     "attribute_s": round(wall - spent["wall"], 3), "attribute_cpu_s": round(cpu - spent["cpu"], 3)})
        print(json.dumps(rows[-1]), flush=True)
        audio = att.adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()
        queries.append(Query(f"generated {i}", audio, att.adapter.sample_rate, prompt))
    return rows, queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--noisy", type=int, default=6)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--cfg-scale", type=float, default=7.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.monotonic()
    att = Attributor.from_index(args.index)
    prompts = sorted({t.caption for t in att.index.tracks.values() if t.caption})
    prompts = [prompts[i % len(prompts)] for i in range(args.clips)]
    gen_rows, queries = generation(att, prompts, args)
    queries += noisy_queries(att, spread_segments(att, args.noisy))
    results: dict[str, list[dict]] = {}
    reference: list[Any] = []
    for label, settings in levers(AttributeSettings()).items():
        results[label] = []
        for j, q in enumerate(queries):
            with recomputing(label == "previous default"):
                r, wall, cpu = clocks(lambda: att.attribute(q.audio, q.sample_rate, prompt=q.prompt, settings=settings))
            if label == "previous default":
                reference.append(r)
            ref = reference[j]
            common = sorted(set(r.scores) & set(ref.scores))
            rho = float(spearmanr([ref.scores[i] for i in common], [r.scores[i] for i in common])[0]) if len(common) > 2 else 1.0
            top = {s["segment_id"] for s in r.segments}
            results[label].append({"query": q.name, "seconds": round(wall, 3), "cpu_s": round(cpu, 3),
                                   "scored": r.method["scored"], "candidates": r.method["candidates_scored"],
                                   "overlap": len(top & {s["segment_id"] for s in ref.segments}) / len(ref.segments),
                                   "spearman": rho, "common": len(common)})
        print(label, json.dumps(summarise(results[label])), flush=True)
    doc = {"index": str(args.index), "steps": args.steps, "cfg_scale": args.cfg_scale, "segments": len(att.index.segments),
           "machine": f"{platform.machine()}, 1 thread", "wall_s": round(time.monotonic() - t0, 1),
           "generation": gen_rows, "levers": {k: {"summary": summarise(v), "queries": v} for k, v in results.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generation_cost.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "generation_cost.md").write_text(markdown(doc) + "\n")
    print(markdown(doc))


def summarise(rows: list[dict]) -> dict:
    return {"queries": len(rows), "median_s": float(np.median([r["seconds"] for r in rows])),
            "median_cpu_s": float(np.median([r["cpu_s"] for r in rows])),
            "scored": float(np.median([r["scored"] for r in rows])),
            "min_overlap": min(r["overlap"] for r in rows), "mean_overlap": float(np.mean([r["overlap"] for r in rows])),
            "min_spearman": min(r["spearman"] for r in rows)}


def markdown(doc: dict) -> str:
    g = doc["generation"]
    later = g[1:] or g
    med = lambda rows, k: float(np.median([r[k] for r in rows]))  # noqa: E731
    lines = [f"Generation vs attribution — {doc['index']} (N = {doc['segments']}), {doc['steps']} steps, CFG scale "
             f"{doc['cfg_scale']}, {doc['machine']}, {doc['wall_s']} s.", "",
             "| clip | generate s (CPU s) | attribute s (CPU s) | ratio (CPU) |", "|---|---|---|---|"]
    for r in g:
        lines.append(f"| {r['clip']}{' (first call)' if r['clip'] == 0 else ''} | {r['generate_s']} ({r['generate_cpu_s']}) | "
                     f"{r['attribute_s']} ({r['attribute_cpu_s']}) | {r['attribute_cpu_s'] / r['generate_cpu_s']:.2f} |")
    lines += [f"| steady state (median of clips 1–{len(g) - 1}) | {med(later, 'generate_s'):.2f} ({med(later, 'generate_cpu_s'):.2f}) | "
              f"{med(later, 'attribute_s'):.2f} ({med(later, 'attribute_cpu_s'):.2f}) | "
              f"{med(later, 'attribute_cpu_s') / med(later, 'generate_cpu_s'):.2f} |", "",
              "| lever | median s (CPU s) | fully scored | top-10 overlap min / mean | Spearman min |", "|---|---|---|---|---|"]
    for k, v in doc["levers"].items():
        s = v["summary"]
        lines.append(f"| {k} | {s['median_s']:.2f} ({s['median_cpu_s']:.2f}) | {s['scored']:g} | "
                     f"{s['min_overlap']:.2f} / {s['mean_overlap']:.2f} | {s['min_spearman']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
