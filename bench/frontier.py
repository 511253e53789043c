"""Accuracy against cost: every method the ground truths measured, and the default chosen from the frontier.

    python bench/frontier.py --catalogue demo=eval/demo-lds/lds.json,eval/demo-lds/artists.json \
                             --catalogue real=eval/real-lds/lds.json[,...] [--sizes 72,204,21000] [--time-on INDEX]

Accuracy comes from the commands' own JSON: each method's LDS (``tda eval lds``) and per-artist agreement
(``tda eval artists``: the Spearman of its artist shares with the true rises, ``artist_spearman``, and whether the
artist it pays most is the one whose removal hurts most, ``artist_top``), per query, so that every method is tested
against the best point with the paired two-sided Wilcoxon test the commands use. Beside each method's cost, what a
query reads per catalogue segment (``stored per segment``): a method that needs each segment's whole gradient either
stores it (4 bytes per differentiated parameter per segment) or recomputes it for every query.

Cost is a query's work in forward-row equivalents (one row: one segment under one draw through the network,
≈ 2·P·T FLOPs for P parameters and T tokens), counted from the model's own shapes for each catalogue size N:

* unlearning: the query gradient (forward + backward ≈ 3 rows per unlearning draw) and the candidates' scoring
  rows (``tda_plugin.shortlist.score_rows``); the gated default adds its second step and its kept segments'
  rows on every draw;
* TRAK at k: the query gradient, its projection (2·p·k FLOPs for the p differentiated parameters, traker's
  dense projector) and N products of length k; ``trak:exact`` and first-order: N products of length p;
* EK-FAC / K-FAC: the query gradient, its preconditioning in the Kronecker eigenbases (four matrix products per
  linear layer) and N products of length p with stored gradients;
* similarity embedders and random: 0 (their embedding is paid by every method alike).

With ``--time-on INDEX`` it also measures CPU seconds of one query on that index (one thread): ``tda attribute``'s
defaults and its prompted mode, and the TRAK/EK-FAC query path with the catalogue's features precomputed.

The default is the cheapest point (at the largest N) whose LDS and per-artist agreement are not significantly
below the best point's on any catalogue (paired, two-sided, α = 0.05); ``--choose-on`` says it again on a subset of
the metrics. Writes bench/results/frontier.{json,md,png}.
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

from tda_plugin.experiments.metrics import mean_interval, paired_test
from tda_plugin.settings import AttributeSettings
from tda_plugin.shortlist import score_rows

ALPHA = 0.05


def model_shapes(index: Path) -> dict[str, Any]:
    """P (every parameter), p (the differentiated subset), T (tokens of one segment) and the subset's linear layers."""
    from tda_plugin.attributor import Attributor
    from tda_plugin.experiments.influence import SUBSET, tracked_modules

    att = Attributor.from_index(index)
    module = att.adapter.module
    names = att.adapter.parameter_groups()[SUBSET]
    params = dict(module.named_parameters())
    latents = att.index.gather([min(att.index.segments)], "latents")
    layers = [tuple(dict(module.named_modules())[n].weight.shape) for n in tracked_modules(module, names)]
    return {"P": sum(p.numel() for p in module.parameters()), "p": sum(params[n].numel() for n in names),
            "T": int(latents.shape[-1]), "layers": layers, "draws": int(att.index.meta.settings["draws"])}


def rows(method: str, n: int, shapes: dict[str, Any]) -> float | None:
    """Forward-row equivalents of one query on a catalogue of ``n`` segments (None: a method this model omits)."""
    default = AttributeSettings()
    u, d = default.unlearn.unlearn_draws, shapes["draws"]
    row_flops = 2.0 * shapes["P"] * shapes["T"]
    gradient = 3 * u
    products = lambda length: 2.0 * n * length / row_flops  # noqa: E731
    if method == "unlearning":  # gated: the null-branch step and scoring, then the prompted step on the kept top
        return 2 * gradient + score_rows(default, n, d) + min(n, default.top) * d
    if method.startswith("unlearning"):
        return gradient + score_rows(default, n, d)
    if method.startswith("trak:"):
        k = method.split(":")[1]
        if k == "exact":
            return gradient + products(shapes["p"])
        return gradient + 2.0 * shapes["p"] * int(k) / row_flops + products(int(k))
    if method in ("ekfac", "kfac", "first_order", "first_order:none"):
        precondition = sum(4.0 * o * i * (o + i) for o, i in shapes["layers"]) / row_flops if "fac" in method else 0.0
        return gradient + precondition + products(shapes["p"])
    if method.startswith("similar:") or method == "random":
        return 0.0
    return None


def accuracy(paths: list[Path]) -> dict[str, dict[str, list[float]]]:
    """metric -> method -> per-query values, from an LDS JSON and (optionally) a per-artist JSON."""
    out: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        doc = json.loads(path.read_text())
        if doc["experiment"] == "lds":
            out["lds"] = {m: list(v) for m, v in doc["per_query"].items()}
        elif doc["experiment"] == "artists":
            out["artist_spearman"] = {m: [r["spearman"] for r in v] for m, v in doc["per_query"].items()}
            out["artist_top"] = {m: [r["top_hit"] for r in v] for m, v in doc["per_query"].items()}
    return out


def stored_bytes(method: str, shapes: dict[str, Any]) -> float | None:
    """Catalogue-side floats (float32) a query reads per segment beyond what every method keeps (the latents): the
    D cached baseline losses and the sensitivity (unlearning), the projected gradient (TRAK at k) or the whole
    gradient of the differentiated subset (unprojected TRAK, EK-FAC, K-FAC), unless it is recomputed per query."""
    if method.startswith("unlearning"):
        return 4.0 * (shapes["draws"] + 1)
    if method.startswith("trak:"):
        k = method.split(":")[1]
        return 4.0 * (shapes["p"] if k == "exact" else int(k))
    if method in ("ekfac", "kfac", "first_order", "first_order:none"):
        return 4.0 * shapes["p"]
    if method.startswith("similar:") or method == "random":
        return 0.0
    return None


def timed_queries(index: Path, count: int) -> dict[str, float]:
    """CPU seconds of one query (mean over ``count`` training segments with their captions) on ``index``."""
    from tda_plugin.attributor import Attributor
    from tda_plugin.experiments import influence
    from tda_plugin.experiments.context import Context
    from tda_plugin.experiments.retraining import Query, encode
    from tda_plugin.report_files import segment_audio

    torch.set_num_threads(1)
    att = Attributor.from_index(index)
    ids = sorted(att.index.segments)[:: max(1, len(att.index.segments) // count)][:count]
    sr = att.index.meta.sample_rate
    queries = [Query(f"segment {i}", "held-out", segment_audio(att.index, i), sr,
                     att.index.tracks[att.index.segments[i].track_id].caption) for i in ids]
    out: dict[str, float] = {}
    if att.adapter.name == "stable-audio":  # the yardstick: one 100-step generation of one segment (the toolkit's own)
        from tda_plugin.adapters.stable_audio_demo import generate_clip

        gen = lambda: generate_clip(att.adapter, queries[0].prompt, seconds_total=float(att.index.meta.segment_seconds),  # noqa: E731
                                    samples=att.index.meta.segment_samples, seed=0, steps=100)
        gen()
        started = time.process_time()
        gen()
        out["generation (100 steps)"] = time.process_time() - started
    for label, settings in (("unlearning", AttributeSettings()), ("unlearning:prompt", AttributeSettings(conditioning="prompt"))):
        att.attribute(queries[0].audio, sr, prompt=queries[0].prompt, settings=settings)  # warm
        started = time.process_time()
        for q in queries:
            att.attribute(q.audio, sr, prompt=q.prompt, settings=settings)
        out[label] = (time.process_time() - started) / len(queries)
    ctx = Context(att, {})
    encoded = [encode(att, q) for q in queries]
    influence.training_gradients(ctx)  # the catalogue's side, stored at index time in a deployment
    for k in (2048, None):
        name = influence.trak_name(k)
        influence.trak(k)(ctx, encoded[:1])  # features of the catalogue
        for q in encoded:
            q.memo.clear()
        started = time.process_time()
        influence.trak(k)(ctx, encoded)
        out[name] = (time.process_time() - started) / len(encoded)
    return out


def choose(table: list[dict[str, Any]], metrics: dict[str, dict[str, dict[str, list[float]]]], size: int) -> dict[str, Any]:
    """The cheapest method at ``size`` not significantly below the best on any catalogue and metric."""
    verdicts = {}
    for row in sorted(table, key=lambda r: (r["rows"][str(size)] is None, r["rows"][str(size)] or 0.0)):
        name, fails = row["method"], []
        for cat, by_metric in metrics.items():
            for metric, per_method in by_metric.items():
                if name not in per_method:
                    fails.append(f"{cat} {metric}: not measured")
                    continue
                best = max(per_method, key=lambda m: np.nanmean(per_method[m]))
                t = paired_test(per_method[name], per_method[best])
                if name != best and t["diff_mean"] < 0 and t["p_two_sided"] < ALPHA:
                    fails.append(f"{cat} {metric}: below {best} (p = {t['p_two_sided']:.2g})")
        verdicts[name] = fails
        if not fails:
            return {"method": name, "rows": row["rows"][str(size)], "rejected_cheaper": {
                m: f for m, f in verdicts.items() if m != name}}
    return {"method": None, "rejected_cheaper": verdicts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogue", action="append", required=True, help="NAME=LDS_JSON[,ARTISTS_JSON]")
    ap.add_argument("--sizes", default="72,204,21000", help="catalogue sizes N to cost a query at")
    ap.add_argument("--time-on", type=Path, help="an index to measure CPU seconds per query on (one thread)")
    ap.add_argument("--time-queries", type=int, default=4)
    ap.add_argument("--choose-on", help="also choose on these metrics only (comma-separated: lds, artist_spearman, "
                                         "artist_top)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    metrics, shapes = {}, None
    for spec in args.catalogue:
        name, paths = spec.split("=", 1)
        files = [Path(p) for p in paths.split(",")]
        metrics[name] = accuracy(files)
        if shapes is None:
            shapes = model_shapes(Path(json.loads(files[0].read_text())["index"]))
    assert shapes is not None
    methods = sorted({m for by_metric in metrics.values() for per in by_metric.values() for m in per})
    seconds = timed_queries(args.time_on, args.time_queries) if args.time_on else {}
    table = []
    for m in methods:
        row: dict[str, Any] = {"method": m, "rows": {str(n): rows(m, n, shapes) for n in sizes}, "cpu_s": seconds.get(m),
                               "stored_bytes_per_segment": stored_bytes(m, shapes)}
        for cat, by_metric in metrics.items():
            for metric, per in by_metric.items():
                if m in per:
                    row[f"{cat}:{metric}"] = mean_interval(per[m])
        table.append(row)
    choice = choose(table, metrics, max(sizes))
    chosen_on = [m.strip() for m in args.choose_on.split(",")] if args.choose_on else []
    narrowed = {c: {m: v for m, v in by.items() if m in chosen_on} for c, by in metrics.items()}
    second = choose(table, narrowed, max(sizes)) if chosen_on else None
    generation = seconds.get("generation (100 steps)")
    doc = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "shapes": {k: v for k, v in shapes.items() if k != "layers"},
           "sizes": sizes, "table": table, "choice": choice, "alpha": ALPHA, "generation_cpu_s": generation,
           "choice_on": {"metrics": chosen_on, **second} if second else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frontier.json").write_text(json.dumps(doc, indent=1, default=str))
    cols = [f"{c}:{m}" for c, by in metrics.items() for m in by]
    lines = ["| method | " + " | ".join(cols) + " | " + " | ".join(f"rows/query at N={n:,}" for n in sizes)
             + " | stored per segment | CPU s/query | × a 100-step generation |", "|---" * (4 + len(cols) + len(sizes)) + "|"]
    for row in sorted(table, key=lambda r: -np.nan_to_num(r.get(cols[0], {}).get("mean", np.nan), nan=-9)):
        cells = [f"{row[c]['mean']:.3f} [{row[c]['low']:.3f}, {row[c]['high']:.3f}]" if c in row else "–" for c in cols]
        cost = ["–" if row["rows"][str(n)] is None else f"{row['rows'][str(n)]:,.0f}" for n in sizes]
        stored = row["stored_bytes_per_segment"]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " | " + " | ".join(cost) + " | "
                     + ("–" if stored is None else _size(stored)) + " | "
                     + ("–" if row["cpu_s"] is None else f"{row['cpu_s']:.2f}") + " | "
                     + ("–" if row["cpu_s"] is None or not generation else f"{row['cpu_s'] / generation:.2f}") + " |")
    if generation:
        lines.append(f"\nOne 100-step generation of one segment (the toolkit's own sampler, classifier-free guidance): "
                     f"{generation:.2f} CPU s.")
    verdict = (f"\nThe cheapest point at N = {max(sizes):,} not significantly below the best on any catalogue and metric "
               f"(paired, two-sided, α = {ALPHA}): **{choice['method']}**.\n" + "".join(
                   f"- {m}: {'; '.join(f)}\n" for m, f in choice["rejected_cheaper"].items() if f))
    if second:
        verdict += (f"\nThe same rule on {', '.join(chosen_on)} only: **{second['method']}**.\n" + "".join(
            f"- {m}: {'; '.join(f)}\n" for m, f in second["rejected_cheaper"].items() if f))
    (args.out / "frontier.md").write_text("\n".join(lines) + "\n" + verdict)
    print("\n".join(lines) + "\n" + verdict)
    plot(table, cols, max(sizes), args.out / "frontier.png")


def _size(n: float) -> str:
    return next(f"{n / u:.3g} {name}" for u, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B")) if n >= u or u == 1.0)


def plot(table: list[dict[str, Any]], cols: list[str], size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 4), dpi=100, squeeze=False)
    for ax, col in zip(axes[0], cols):
        for row in table:
            if col not in row or row["rows"][str(size)] is None:
                continue
            x, s = max(row["rows"][str(size)], 1.0), row[col]
            ax.errorbar(x, s["mean"], yerr=[[s["mean"] - s["low"]], [s["high"] - s["mean"]]], fmt="o", capsize=3)
            ax.annotate(row["method"], (x, s["mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"forward-row equivalents per query at N = {size:,}")
        ax.set_ylabel(col)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
