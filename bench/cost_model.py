"""A cost model on paper for a 460 000-segment catalogue (115 000 tracks) on Stable Audio Open 1.0's DiT.

    python bench/cost_model.py [--segments 460000] [--candidates 256 --shortlist 32]

FLOPs are counted, not guessed: stable-audio-tools builds Stable Audio Open 1.0's architecture
(bench/gpu_check.py's config) on PyTorch's ``meta`` device (shapes only, no memory, no weights) and
torch.utils.flop_counter counts every operation of, per 47.55-s segment (1024 latent frames): the VAE
encoder; one forward row of the loss (one draw); one segment's gradient (D draws, forward + backward)
with and without activation checkpointing; and, per query, the unlearning gradient. The sketch's
projection is counted analytically from the parameter shapes. Times then follow from an assumed
fraction of the GPU's dense peak (``--utilisation``, one for fp32 and one for bf16 autocast): no GPU was
measured, so every time below is modelled and says so. Writes bench/results/cost_model.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tda_plugin.settings import AttributeSettings, IndexSettings
from tda_plugin.shortlist import score_rows

#: dense peak FLOP/s of one H100 SXM / H200 (same tensor cores): fp32 (no TF32), bf16
PEAK = {"fp32": 67e12, "bf16": 989e12}
#: published reference points (the issue's): seconds
CHOI_UNLEARN_STEP_H100 = 20 * 60
CHOI_LOSS_PASS_8XH100_115K = 5 * 3600
WANG_QUERY_A100_118K = 2.28 * 3600
DTRAK_QUERY = 46.7


def count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def sao_flops(draws: int, unlearn_draws: int, sketch_dim: int) -> dict:
    from gpu_check import sao_config  # bench/ is on sys.path when this file runs as a script
    from tda_plugin.adapter import Conditioning
    from tda_plugin.adapters.stable_audio_adapter import StableAudioAdapter, build_model
    from tda_plugin.fisher import gradients_for, named_parameters
    from tda_plugin.gradients import checkpointing
    from tda_plugin.randomness import make_draws

    config = sao_config(False)
    with torch.device("meta"):
        model = build_model(config)
    adapter = StableAudioAdapter(model, config, "meta", device="meta")
    names = adapter.parameter_groups()["blocks"]
    params = named_parameters(adapter, names)
    frames = adapter.default_segment_samples() // adapter.downsampling
    x = torch.zeros(1, 64, frames, device="meta")
    cond = [Conditioning("warm pad", 0.0, 47.0)]
    audio = torch.zeros(1, 2, adapter.default_segment_samples(), device="meta")
    with torch.no_grad():
        encode = count(lambda: adapter.encode(audio))
        row = count(lambda: adapter.loss(x, adapter.condition(cond), make_draws(0, ["s"], 1)))
    def gradient() -> None:
        with gradients_for(params):
            torch.autograd.grad(adapter.loss(x, adapter.condition(cond), make_draws(0, ["s"], 1)).mean(), params)

    grad = {}
    for recompute in (True, False):  # one draw counted, times the draws (rows are independent: FLOPs are linear)
        with checkpointing(adapter, recompute):
            grad[recompute] = draws * count(gradient)
    r = math.isqrt(sketch_dim)
    sketch = sum(2 * r * p.numel() + 2 * r * r * math.prod(p.shape[1:]) if p.dim() >= 2 else 2 * p.numel() for p in params)
    return {"block_parameters": sum(p.numel() for p in params), "latent_frames": frames,
            "segment_seconds": adapter.default_segment_samples() / adapter.sample_rate, "draws": draws,
            "encode": encode, "forward_row": row, "gradient_recompute": grad[True], "gradient": grad[False],
            "sketch": float(sketch), "unlearn_gradient": grad[False] / draws * unlearn_draws}


def model(f: dict, n: int, *, candidates: int, shortlist: int, first_draws: int, default: AttributeSettings,
          utilisation: dict[str, float], search_s: float) -> dict:
    d = f["draws"]
    build = {"fast": n * (f["encode"] + f["gradient"] + f["sketch"]),
             "reference": n * (f["encode"] + d * f["forward_row"] + f["gradient_recompute"] + f["sketch"])
             + 64 * f["gradient_recompute"]}
    fixed = f["encode"] + f["unlearn_gradient"] + f["sketch"]
    m_default = default.candidate_count(n)
    query = {f"M = {candidates}, shortlist {shortlist} after {first_draws} draws (an option; its recall fell short at 1k-20k)":
             fixed + score_rows(replace(default, candidates=candidates, shortlist=shortlist, shortlist_draws=first_draws),
                                n, d) * f["forward_row"],
             f"default (--candidates {default.candidates}: {m_default:,} of N, shortlist {default.shortlist} after "
             f"{default.shortlist_draws} draws)": fixed + score_rows(default, n, d) * f["forward_row"],
             "--candidates all": fixed + n * d * f["forward_row"]}
    out: dict = {"flop": {"build": build, "query": query}, "seconds": {}}
    for precision, u in utilisation.items():
        rate = u * PEAK[precision]
        out["seconds"][precision] = {
            "build_gpu_hours": {k: v / rate / 3600 for k, v in build.items()},
            "build_hours_8_gpus": {k: v / rate / 3600 / 8 for k, v in build.items()},
            "query_s_1_gpu": {k: v / rate + search_s for k, v in query.items()},
            "query_s_8_gpus": {k: (fixed / rate) + (v - fixed) / rate / 8 + search_s for k, v in query.items()},
            "loss_pass_hours_8_gpus": n * d * f["forward_row"] / rate / 3600 / 8}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=460_000)
    ap.add_argument("--draws", type=int, default=IndexSettings.draws)
    ap.add_argument("--unlearn-draws", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=256)
    ap.add_argument("--shortlist", type=int, default=32)
    ap.add_argument("--first-draws", type=int, default=4)
    ap.add_argument("--utilisation", default="fp32=0.5,bf16=0.35",
                    help="assumed fraction of the dense peak the forward/backward passes reach")
    ap.add_argument("--search-s", type=float, default=0.06, help="FAISS IVF-PQ top-M search at this N (bench/latency.py)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    f = sao_flops(args.draws, args.unlearn_draws, 4096)
    util = {k: float(v) for k, v in (kv.split("=") for kv in args.utilisation.split(","))}
    doc = {"segments": args.segments, "flops_per_unit": f, "utilisation_assumed": util, "peak": PEAK,
           "settings": {"candidates": args.candidates, "shortlist": args.shortlist, "first_draws": args.first_draws,
                        "unlearn_draws": args.unlearn_draws},
           "model": model(f, args.segments, candidates=args.candidates, shortlist=args.shortlist,
                          first_draws=args.first_draws, default=AttributeSettings(), utilisation=util, search_s=args.search_s),
           "references_s": {"choi_unlearning_step_1xH100": CHOI_UNLEARN_STEP_H100,
                            "choi_loss_pass_115k_tracks_8xH100": CHOI_LOSS_PASS_8XH100_115K,
                            "wang_query_118k_items_1xA100": WANG_QUERY_A100_118K, "dtrak_query": DTRAK_QUERY},
           "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost_model.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "cost_model.md").write_text(markdown(doc) + "\n")
    print(markdown(doc))


def markdown(doc: dict) -> str:
    f, m = doc["flops_per_unit"], doc["model"]
    t = lambda x: f"{x / 1e12:,.1f} TFLOP"  # noqa: E731
    lines = [f"Cost model (modelled, not measured on a GPU) — Stable Audio Open 1.0 DiT, {f['block_parameters'] / 1e9:.2f} B "
             f"block parameters, {f['segment_seconds']:.2f}-s segments ({f['latent_frames']} latent frames), {f['draws']} draws, "
             f"N = {doc['segments']:,} segments.", "",
             "| unit | FLOPs (counted) |", "|---|---|",
             f"| VAE encoder, one segment | {t(f['encode'])} |", f"| loss forward, one row (segment × draw) | {t(f['forward_row'])} |",
             f"| segment gradient, {f['draws']} draws, with activation checkpointing | {t(f['gradient_recompute'])} |",
             f"| segment gradient, {f['draws']} draws, without | {t(f['gradient'])} |",
             f"| sketch projection, one segment | {t(f['sketch'])} |",
             f"| query unlearning gradient, {doc['settings']['unlearn_draws']} draws | {t(f['unlearn_gradient'])} |", ""]
    for precision, s in m["seconds"].items():
        u = doc["utilisation_assumed"][precision]
        lines += [f"{precision} at an assumed {100 * u:.0f} % of {doc['peak'][precision] / 1e12:.0f} TFLOP/s (H100 SXM / H200):", "",
                  "| | one GPU | 8 GPUs |", "|---|---|---|",
                  f"| index build, fast path | {s['build_gpu_hours']['fast']:,.0f} GPU-h | {s['build_hours_8_gpus']['fast']:,.1f} h |",
                  f"| index build, reference path | {s['build_gpu_hours']['reference']:,.0f} GPU-h | "
                  f"{s['build_hours_8_gpus']['reference']:,.1f} h |",
                  f"| one loss pass over N ({f['draws']} draws) | | {s['loss_pass_hours_8_gpus']:,.1f} h |"]
        for k in s["query_s_1_gpu"]:
            lines.append(f"| query, {k} | {s['query_s_1_gpu'][k]:,.1f} s | {s['query_s_8_gpus'][k]:,.1f} s |")
        lines.append("")
    r = doc["references_s"]
    lines += [f"References: Choi et al. about {r['choi_unlearning_step_1xH100'] / 60:.0f} min per unlearning step on one H100 and "
              f"{r['choi_loss_pass_115k_tracks_8xH100'] / 3600:.0f} h on 8×H100 for one loss pass over 115k tracks; Wang et al. "
              f"{r['wang_query_118k_items_1xA100'] / 3600:.2f} h per query on an A100 at 118k items; D-TRAK {r['dtrak_query']} s per query."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
