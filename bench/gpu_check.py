"""Scoring throughput of the full-size Stable Audio Open DiT with random weights (run by bench/gpu_check.sh).

    python bench/gpu_check.py                # on a GPU: full-size architecture, bf16 and fp32
    python bench/gpu_check.py --small        # smoke run on CPU with the demo-size architecture

The model is stable-audio-tools' own ``diffusion_cond`` built from Stable Audio Open 1.0's
model_config (DiT: 1536 wide, 24 layers, 24 heads, 64 latent channels, 1024 latent frames for
2 097 152 samples at 44.1 kHz), except that the T5 prompt conditioner — whose weights would have to
be downloaded — is replaced by the offline ``list`` conditioner with the same 768-dim output. Latents
are random (scoring cost does not depend on their values). Reports, for the exhaustive path (score
N segments) and the prefiltered one (encode-free query: unlearning step + sketch + top-M search +
scoring M = 5 % of N): scored segment-draws per second, achieved TFLOP/s (FLOPs of one forward row
counted by torch.utils.flop_counter) and the fraction of the GPU's dense bf16 peak.
Writes bench/results/gpu_check.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.fisher import group_damping
from tda_plugin.randomness import make_draws, query_stream, segment_stream
from tda_plugin.scoring import auto_batch_size, losses
from tda_plugin.settings import UnlearnSettings
from tda_plugin.sketch import for_model as sketch_for_model
from tda_plugin.unlearn import unlearning_delta

PROMPTS = ["warm pad", "fast drums"]

#: dense bf16 tensor-core peak (FLOP/s) by device-name fragment, most specific first
BF16_PEAK = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12)]


def compile_forward(module: torch.nn.Module) -> None:
    """torch.compile the module's forward in place (parameter names, and so the index, stay the same)."""
    module.forward = torch.compile(module.forward, dynamic=False)  # type: ignore[method-assign]


def sao_config(small: bool) -> dict:
    """Stable Audio Open 1.0's model_config with an offline prompt conditioner (``--small``: demo size)."""
    if small:
        from tda_plugin.adapters.stable_audio_demo import demo_config

        return demo_config(PROMPTS, sample_rate=8000, segment_samples=4096, objective="v", embed_dim=64, depth=2)
    enc = {"in_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
           "latent_dim": 128, "use_snake": True}
    dec = {"out_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
           "latent_dim": 64, "use_snake": True, "final_tanh": False}
    return {
        "model_type": "diffusion_cond", "sample_size": 2097152, "sample_rate": 44100, "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
                "encoder": {"type": "oobleck", "requires_grad": False, "config": enc},
                "decoder": {"type": "oobleck", "config": dec}, "bottleneck": {"type": "vae"},
                "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2}},
            "conditioning": {"cond_dim": 768, "configs": [
                {"id": "prompt", "type": "list", "config": {"options": PROMPTS}},
                {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}}]},
            "diffusion": {"cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                          "global_cond_ids": ["seconds_start", "seconds_total"], "type": "dit",
                          "config": {"io_channels": 64, "embed_dim": 1536, "depth": 24, "num_heads": 24,
                                     "cond_token_dim": 768, "global_cond_dim": 1536, "project_cond_tokens": False,
                                     "transformer_type": "continuous_transformer"}},
            "io_channels": 64},
        "training": {"timestep_sampler": "uniform"},
    }


def peak_for(name: str) -> float | None:
    return next((p for frag, p in BF16_PEAK if frag in name), None)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def flops_per_row(adapter, latents: torch.Tensor, conds: list[Conditioning]) -> float:
    """FLOPs of one forward row (one segment under one draw), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        adapter.loss(latents[:1], adapter.condition(conds[:1]), make_draws(0, [segment_stream(0)], 1))
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="demo-size model on CPU: checks the script, measures nothing")
    ap.add_argument("--segments", type=int, default=0, help="segments scored per path (default: 96, --small: 4)")
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--n", type=int, default=20_000, help="catalogue size N for the prefiltered path (M = 5 %%)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd forward")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    from tda_plugin.adapters.stable_audio_adapter import StableAudioAdapter, build_model

    t0 = time.monotonic()
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    draws = 2 if args.small else args.draws
    segments = args.segments or (4 if args.small else 96)
    torch.manual_seed(0)
    config = sao_config(args.small)
    adapter = StableAudioAdapter(build_model(config), config, "random-weights", device=str(dev))
    with torch.no_grad():  # stable-audio-tools zero-initialises some outputs; perturb so every path does work
        for p in adapter.module.parameters():
            p.add_(0.02 * torch.randn_like(p))
    frames = adapter.default_segment_samples() // adapter.downsampling
    channels = config["model"]["io_channels"]
    latents = torch.randn(segments, channels, frames, device=dev)
    conds = [Conditioning(PROMPTS[i % 2], 0.0, 47.0) for i in range(segments)]
    streams = [segment_stream(i) for i in range(segments)]
    params = sum(p.numel() for n, p in adapter.module.named_parameters() if ".transformer.layers." in n)
    fpr = flops_per_row(adapter, latents, conds)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    peak = peak_for(name) if dev.type == "cuda" else None
    results = []

    def score(label: str, precision: str) -> float:
        batch = auto_batch_size(adapter, latents, conds, streams, seed=0, draws=draws, precision=precision)
        losses(adapter, latents[:1], conds[:1], streams[:1], seed=0, draws=draws, batch_size=batch, precision=precision)
        sync(dev)
        t = time.perf_counter()
        losses(adapter, latents, conds, streams, seed=0, draws=draws, batch_size=batch, precision=precision)
        sync(dev)
        secs = time.perf_counter() - t
        rate = segments * draws / secs
        row = {"path": "exhaustive", "variant": label, "precision": precision, "batch_rows": batch,
               "segment_draws_per_s": round(rate, 2), "tflops": round(rate * fpr / 1e12, 2),
               "fraction_of_bf16_peak": round(rate * fpr / peak, 3) if peak else None}
        results.append(row)
        print(row, flush=True)
        return rate

    rates = {p: score("eager", p) for p in ("bf16", "fp32")}
    if args.compile:
        compile_forward(adapter.module.model)
        rates["bf16"] = max(rates["bf16"], score("torch.compile", "bf16"))

    # prefiltered path: the query's own work (unlearning step over 64 draws + its sketch + top-M search)
    names = [n for n, _ in adapter.module.named_parameters() if ".transformer.layers." in n]
    fisher = {n: torch.full_like(p, 1e-6, device="cpu") for n, p in adapter.module.named_parameters() if n in names}
    un = UnlearnSettings(unlearn_draws=8 if args.small else 64)
    q = latents[:1]
    sync(dev)
    t = time.perf_counter()
    delta, _, _ = unlearning_delta(adapter, names, fisher, q, adapter.condition(conds[:1]),
                                   make_draws(1, [query_stream(0)], un.unlearn_draws), None, un, args.n, 0.1)
    sketch = sketch_for_model(adapter.module, names, fisher, group_damping(fisher, names, 0.1), seed=0)
    w = sketch.of_step(dict(zip(names, delta)))
    bank = torch.nn.functional.normalize(torch.randn(args.n, sketch.dim, device=dev), dim=1)
    m = max(1, math.ceil(0.05 * args.n))
    torch.topk(bank @ w.to(dev), m).indices.cpu()
    sync(dev)
    fixed = time.perf_counter() - t
    for precision, rate in rates.items():
        pre = fixed + m * draws / rate
        full = args.n * draws / rate
        row = {"path": "prefiltered", "precision": precision, "n": args.n, "m": m, "query_fixed_s": round(fixed, 2),
               "query_s": round(pre, 2), "exhaustive_query_s": round(full, 2), "speedup": round(full / pre, 2),
               "effective_segment_draws_per_s": round(args.n * draws / pre, 1)}
        results.append(row)
        print(row, flush=True)
    doc = {"device": name, "bf16_peak_flops": peak, "small": args.small, "block_parameters": params,
           "latent_shape": [channels, frames], "draws": draws, "segments": segments, "flops_per_row": fpr,
           "torch": torch.__version__, "wall_s": round(time.monotonic() - t0, 1), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"GPU check on {name} ({'demo-size smoke run' if args.small else 'Stable Audio Open 1.0 size'}, "
             f"{params / 1e6:.2f} M block parameters, {fpr:.3g} FLOP per row, {draws} draws), {doc['wall_s']} s.",
             "", "| path | variant | precision | segment-draws/s | TFLOP/s | of bf16 peak |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['variant']} | {r['precision']} | {r['segment_draws_per_s']} | {r['tflops']} | "
              f"{r['fraction_of_bf16_peak']} |" for r in results if r["path"] == "exhaustive"]
    lines += ["", "| precision | N | M | query fixed s | prefiltered query s | exhaustive query s | speed-up |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['n']} | {r['m']} | {r['query_fixed_s']} | {r['query_s']} | "
              f"{r['exhaustive_query_s']} | {r['speedup']} |" for r in results if r["path"] == "prefiltered"]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
