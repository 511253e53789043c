"""Index build throughput: the fast path against the original per-segment loop, side by side in one run.

    python bench/build_throughput.py --model demo-out/model/model.safetensors --corpus demo-out/catalogue \\
        --tracks 8,24 [--batch 4]

For each catalogue size (the first K tracks of ``--corpus``), the same catalogue is built twice, each in a
fresh process (so peak RSS is the build's own), alternating: ``reference`` (``build_index(reference=True)``:
the baseline in its own forward pass, the Fisher sample's gradients and every segment's gradient each
computed in their own pass, the adapter's activation checkpointing on) and ``fast`` (one forward and one
backward per segment, the Fisher sample's gradients kept). ``--batch B`` adds a third build with the
batched (torch.func vmap) plan of B segments per call, for the first size only. Times are wall-clock and CPU
seconds of the one-thread build process: on a shared machine the wall clock stretches with the load, and
the CPU-time ratio is the one that carries over. Every tensor of every index is compared with the
reference's (relative difference ‖a − b‖/‖b‖). FLOPs per segment of each formulation are counted with
torch.utils.flop_counter on one segment. Writes bench/results/build_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

CHILD = """
import json, re, sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from tda_plugin.adapters.stable_audio import load
from tda_plugin.gradients import GradientPlan
from tda_plugin.index import builder
from tda_plugin.settings import IndexSettings
corpus, out, ckpt, mode, batch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
if mode == "batched":
    builder.plan_for = lambda *a, **k: GradientPlan(batch, False)
adapter = load(ckpt)
t, c = time.perf_counter(), time.process_time()
report = builder.build_index(Path(corpus), out, adapter, checkpoint=ckpt, model_config=ckpt.with_name("model_config.json"),
                             settings=IndexSettings(embedder="gradient_sketch"), reference=mode == "reference")
seconds, cpu = time.perf_counter() - t, time.process_time() - c
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"segments": report.segments, "build_s": seconds, "cpu_s": cpu, "peak_rss_mb": hwm / 1024}))
"""


def subset(corpus: Path, tracks: int, work: Path) -> Path:
    rows = list(csv.DictReader((corpus / "tracks.csv").open()))[:tracks]
    sub = work / f"corpus-{tracks}"
    sub.mkdir(parents=True, exist_ok=True)
    with (sub / "tracks.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "path": str((corpus / r["path"]).resolve())} for r in rows)
    return sub


def build(corpus: Path, out: Path, ckpt: Path, mode: str, batch: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(out), str(ckpt), mode, str(batch)],
                         capture_output=True, text=True, env={**os.environ, "TDA_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    if res.returncode:
        raise SystemExit(f"{mode} build failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def differences(ref: Path, other: Path) -> float:
    """Largest ‖a − b‖/‖b‖ over every tensor of every safetensors file of the two indexes."""
    worst = 0.0
    for path in ref.rglob("*.safetensors"):
        a, b = load_file(str(path)), load_file(str(other / path.relative_to(ref)))
        for key in a:
            x, y = b[key].double(), a[key].double()
            worst = max(worst, float((x - y).norm() / y.norm().clamp_min(1e-300)))
    return worst


def flops_per_segment(ckpt: Path, draws: int = 16) -> dict:
    """FLOPs of one segment: baseline forward, gradient with and without activation checkpointing."""
    from torch.utils.flop_counter import FlopCounterMode

    from tda_plugin.adapter import Conditioning
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.fisher import gradient_names, named_parameters
    from tda_plugin.gradients import GradientPlan, passes
    from tda_plugin.randomness import make_draws

    adapter = load(ckpt)
    x = adapter.encode(0.1 * torch.randn(1, adapter.channels, adapter.default_segment_samples()))
    cond = [Conditioning("x", 0.0, 10.0)]
    params = named_parameters(adapter, gradient_names(adapter))

    def count(fn) -> float:
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops() / 1e9

    with torch.no_grad():
        forward = count(lambda: adapter.loss(x, adapter.condition(cond), make_draws(0, ["s"], draws)))
    grad = {r: count(lambda: list(passes(adapter, params, x, cond, ["s"], seed=0, draws=draws, plan=GradientPlan(1, r))))
            for r in (True, False)}
    return {"draws": draws, "forward_gflop": round(forward, 3), "gradient_recompute_gflop": round(grad[True], 3),
            "gradient_gflop": round(grad[False], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model.safetensors (model_config.json beside it)")
    ap.add_argument("--corpus", type=Path, required=True, help="a catalogue folder with tracks.csv")
    ap.add_argument("--tracks", default="8,24", help="catalogue sizes: the first K tracks")
    ap.add_argument("--batch", type=int, default=0, help="also time the batched (vmap) plan with this many segments per call")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tda-build-throughput"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    rows = []
    for n, k in enumerate(int(x) for x in args.tracks.split(",") if x):
        modes = ["reference", "fast"] + (["batched"] if args.batch > 1 and n == 0 else [])
        corpus = subset(args.corpus, k, args.work)
        runs = {m: build(corpus, args.work / f"idx-{k}-{m}", args.model, m, args.batch) for m in modes}
        row = {"tracks": k, "segments": runs["reference"]["segments"]}
        for m, r in runs.items():
            row[m] = {"build_s": round(r["build_s"], 1), "cpu_s": round(r["cpu_s"], 1),
                      "segments_per_s": round(r["segments"] / r["build_s"], 3),
                      "segments_per_cpu_s": round(r["segments"] / r["cpu_s"], 3), "peak_rss_mb": round(r["peak_rss_mb"], 1)}
            if m != "reference":
                row[m]["speedup"] = round(runs["reference"]["build_s"] / r["build_s"], 2)
                row[m]["cpu_speedup"] = round(runs["reference"]["cpu_s"] / r["cpu_s"], 2)
                row[m]["max_relative_difference"] = differences(args.work / f"idx-{k}-reference", args.work / f"idx-{k}-{m}")
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {"model": str(args.model), "corpus": str(args.corpus), "machine": f"{platform.machine()}, 1 thread per build",
           "flops": flops_per_segment(args.model), "builds": rows, "wall_s": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "build_throughput.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "build_throughput.md").write_text(markdown(doc) + "\n")
    print(markdown(doc))


def markdown(doc: dict) -> str:
    f = doc["flops"]
    lines = [f"Index build, {doc['model']} on {doc['corpus']} ({doc['machine']}, {doc['wall_s']} s). FLOPs per segment "
             f"({f['draws']} draws): baseline forward {f['forward_gflop']} G, gradient {f['gradient_recompute_gflop']} G "
             f"with activation checkpointing, {f['gradient_gflop']} G without.", "",
             "| tracks | segments | path | build s | CPU s | segments/s | segments per CPU s | speedup (CPU) | peak RSS MB | max rel. difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["builds"]:
        for m in ("reference", "fast", "batched"):
            if m in r:
                x = r[m]
                diff = f"{x['max_relative_difference']:.1e}" if "max_relative_difference" in x else "—"
                lines.append(f"| {r['tracks']} | {r['segments']} | {m} | {x['build_s']} | {x['cpu_s']} | {x['segments_per_s']} | "
                             f"{x['segments_per_cpu_s']} | {x.get('speedup', 1.0)}× ({x.get('cpu_speedup', 1.0)}×) | "
                             f"{x['peak_rss_mb']} | {diff} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
