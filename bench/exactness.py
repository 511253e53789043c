"""How exact are the loss differences? The cached baseline against θ0 losses recomputed in other batches.

    python bench/exactness.py --index DIR [--queries 8] [--name exactness]

τ_i = L(z_i, θ') − L(z_i, θ0) takes L(z_i, θ0) from the baseline cached at build time, in the build's
batches; L(z_i, θ') comes from the candidates' batches. Both are the same function of the segment
alone (docs/method.md, section 3), but float rounding of batched kernels depends on the batch's make-up.
This measures that rounding: θ0 losses recomputed one segment per batch and in shuffled batches of 3
segments, against the cache (per draw), and, for ``--queries`` self-queries with default settings, the
rounding term of τ, |mean_j (recomputed − cached)|, relative to |τ_i| of the top-10 and to the query's
largest |τ|, and whether the top-10 changes
when τ is taken against the recomputed θ0 losses instead. Writes bench/results/NAME.json and NAME.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from tda_plugin import Attributor, AttributeSettings
from tda_plugin.evaluation import segment_audio, spread_segments
from tda_plugin.fisher import named_parameters
from tda_plugin.index.builder import segment_conditioning
from tda_plugin.randomness import segment_stream
from tda_plugin.scoring import losses
from tda_plugin.unlearn import applied


def recompute(att: Attributor, ids: list[int], batch_size: int) -> torch.Tensor:
    """θ0 (or current) losses of ``ids`` [n, D], batched ``batch_size`` segment-draws at a time."""
    meta = att.index.meta
    conds = [segment_conditioning(att.index.tracks[att.index.segments[i].track_id], att.index.segments[i]) for i in ids]
    return losses(att.adapter, att.index.gather(ids, "latents"), conds, [segment_stream(i) for i in ids],
                  seed=meta.settings["seed"], draws=meta.settings["draws"], batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=8, help="self-queries whose τ is compared")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", default="exactness")
    args = ap.parse_args()
    t0 = time.monotonic()
    att = Attributor.from_index(args.index)
    d = att.index.meta.settings["draws"]
    ids = sorted(att.index.segments)
    cached = att.index.baseline_rows(ids)
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    alone = recompute(att, ids, d)
    mixed = recompute(att, shuffled, 3 * d)[torch.tensor([shuffled.index(i) for i in ids])]
    per_draw = torch.cat([(alone - cached).abs().flatten(), (mixed - cached).abs().flatten()])
    relative = per_draw / torch.cat([cached.abs().flatten()] * 2).clamp_min(1e-30)

    settings = AttributeSettings(candidates="all")
    meta = att.index.meta
    term_over_tau, over_scale, top_changed, spearman = [], [], 0, []
    for q in spread_segments(att, args.queries):
        seg = att.index.segments[q]
        track = att.index.tracks[seg.track_id]
        query = att.encode_query(segment_audio(att, q), meta.sample_rate, track.caption, seconds_start=seg.start_s,
                                 seconds_total=track.duration_s)
        names, delta, _, _ = att.forget(query, settings.unlearn)
        with applied(named_parameters(att.adapter, names), delta):
            after = recompute(att, ids, 64)
        tau = (after - cached).mean(dim=1)
        paired = (after - mixed).mean(dim=1)  # θ0 losses from other batches than the cache's
        top = tau.argsort(descending=True)[:10]
        term_over_tau.append(((paired - tau).abs()[top] / tau[top].abs().clamp_min(1e-30)).numpy())
        over_scale.append(float((paired - tau).abs().max() / tau.abs().max()))
        top_changed += tau.argsort(descending=True)[:10].tolist() != paired.argsort(descending=True)[:10].tolist()
        spearman.append(float(np.corrcoef(tau.argsort().argsort(), paired.argsort().argsort())[0, 1]))
    ratios = np.concatenate(term_over_tau)
    doc = {"index": str(args.index), "adapter": att.adapter.name, "segments": len(ids), "draws": d,
           "per_draw_abs_max": float(per_draw.max()), "per_draw_rel_max": float(relative.max()),
           "per_draw_rel_median": float(relative.median()),
           "queries": args.queries, "top10_rounding_over_tau_median": float(np.median(ratios)),
           "top10_rounding_over_tau_max": float(ratios.max()), "rounding_over_largest_tau_max": max(over_scale),
           "queries_whose_top10_changed": top_changed, "rank_correlation_min": min(spearman),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = (f"Exactness of τ on `{args.index}` ({doc['adapter']}, {len(ids)} segments × {d} draws), {doc['machine']}, "
          f"{doc['wall_s']:.0f} s\n\n| quantity | value |\n|---|---|\n"
          + "\n".join(f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in doc.items() if k not in ("index", "adapter", "machine", "wall_s")) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
