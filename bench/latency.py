"""Query latency with the prefilter vs ``--candidates all``, prefilter search time vs N, build throughput and memory.

    python bench/latency.py --template demo-out/index --sizes 1000 --model-sizes 1000,2000,5000,10000,20000 \\
        --search "4096@1000,10000,100000 256@100000,1000000" --build-corpus /tmp/real/catalogue --build-tracks 8,24,51

1. End to end, side by side: for each N in ``--sizes`` a synthetic index of the template's model is
   written (template segments' latents cycled with small noise, their baseline rows and sensitivities,
   the template's Fisher, random sketch vectors — valid for timing, not for answers), and one query is
   attributed with the default prefilter and with ``--candidates all``, each on a fresh Attributor.
2. Modelled for ``--model-sizes``: exhaustive = fixed + N/rate, prefiltered = fixed + search(N) + M/rate,
   from the fixed per-query cost (encode + unlearning step) and the scoring rate (segments/s)
   measured in 1 and the search time measured in 3. Marked "modelled" in the output.
3. FAISS search of the top M = 5 % of N among N random unit vectors (``--search``: sizes and counts), with the
   index kind chosen automatically (flat below 10^5, IVF-PQ from there), built by streaming.
4. Index build: segments/s and peak RSS of a fresh process building the first K tracks of
   ``--build-corpus`` with the gradient-sketch embedder (``--build-tracks``).
Writes bench/results/latency.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tda_plugin import Attributor, AttributeSettings
from tda_plugin.atomic import write_json, write_tensors
from tda_plugin.catalog import Track
from tda_plugin.index import vectors
from tda_plugin.index.catalog_db import CatalogDB, SegmentRow
from tda_plugin.index.store import Index, sensitivity_name, shard_name
from tda_plugin.recall import Query
from tda_plugin.sketch import SKETCH_DIM

SEGMENTS_PER_TRACK = 8


def synthetic_index(template: Index, out: Path, n: int, shard_size: int = 256) -> Path:
    """An index of ``n`` segments for the template's model, for timing only (see module doc)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "shards").mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    ids = sorted(template.segments)
    tracks = list(template.tracks.values())
    latents = template.gather(ids, "latents")
    base = template.baseline_rows(ids)
    sens_keys = [k for k in template.baseline if k.startswith("sensitivity.")]
    n_tracks = math.ceil(n / SEGMENTS_PER_TRACK)
    seg_s = template.meta.segment_seconds
    kept = [(Track(k, f"synthetic/{k}.wav", Path(f"synthetic/{k}.wav"), f"Synthetic {k}", tracks[k % len(tracks)].artist,
                   "none", tracks[k % len(tracks)].caption), SEGMENTS_PER_TRACK * seg_s) for k in range(n_tracks)]
    segs = [SegmentRow(i, i // SEGMENTS_PER_TRACK, i % SEGMENTS_PER_TRACK, (i % SEGMENTS_PER_TRACK) * seg_s,
                       (i % SEGMENTS_PER_TRACK + 1) * seg_s, i // shard_size) for i in range(n)]
    db = CatalogDB(out / "catalog.sqlite")
    db.add_tracks_and_segments(kept, segs, [])
    db.close()
    fp = {"fingerprint": template.meta.fingerprint}
    rows = torch.arange(n) % len(ids)
    for k in range(math.ceil(n / shard_size)):
        sl = slice(k * shard_size, min(n, (k + 1) * shard_size))
        r = rows[sl]
        lat = latents[r] + 0.05 * torch.randn(latents[r].shape, generator=gen)
        write_tensors(out / shard_name(k), {"segment_ids": torch.arange(sl.start, sl.stop), "latents": lat,
                                            "baseline": base[r]}, fp)
        write_tensors(out / sensitivity_name(k), {key[len("sensitivity."):]: template.baseline[key][r] for key in sens_keys}, fp)
    merged = {"segment_ids": torch.arange(n), "losses": base[rows]}
    merged.update({key: template.baseline[key][rows] for key in sens_keys})
    write_tensors(out / "baseline.safetensors", merged, fp)
    shutil.copy(template.root / "fisher.safetensors", out / "fisher.safetensors")
    vecs = np.random.default_rng(0).standard_normal((n, SKETCH_DIM)).astype(np.float32)
    vectors.save(vectors.build(vecs, np.arange(n)), out / "vectors.faiss")
    meta = template.meta.to_dict()
    meta.update(corpus=str(out / "synthetic"), settings={**meta["settings"], "embedder": "gradient_sketch",
                                                         "shard_size": shard_size})
    write_json(out / "index.json", meta)
    return out


def timed_query(index_dir: Path, adapter, query: Query, settings: AttributeSettings) -> tuple[float, int]:
    att = Attributor.from_index(index_dir, adapter=adapter)
    t = time.perf_counter()
    result = att.attribute(query.audio, query.sample_rate, prompt=query.prompt, settings=settings)
    return time.perf_counter() - t, result.method["scored"]


def fixed_cost(index_dir: Path, adapter, query: Query) -> float:
    """Encode + unlearning step (+ the sketch of Δ): what a query costs before any segment is scored."""
    att = Attributor.from_index(index_dir, adapter=adapter)
    un = AttributeSettings().unlearn
    t = time.perf_counter()
    eq = att.encode_query(query.audio, query.sample_rate, query.prompt)
    att.forget(eq, un)
    att.query_vector(eq)
    return time.perf_counter() - t


def search_times(sizes: list[int], dim: int, repeats: int = 5) -> list[dict]:
    out = []
    for n in sizes:
        chunk = 50_000

        def chunks(n=n):
            for i in range(0, n, chunk):
                m = min(chunk, n - i)
                yield np.random.default_rng(i).standard_normal((m, dim)).astype(np.float32), np.arange(i, i + m)

        t = time.perf_counter()
        index = vectors.build_streaming(n, dim, chunks)
        build_s = time.perf_counter() - t
        m = max(1, math.ceil(0.05 * n))
        q = np.random.default_rng(1).standard_normal(dim).astype(np.float32)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            vectors.search(index, q, m)
            times.append(time.perf_counter() - t)
        out.append({"n": n, "dim": dim, "m": m, "kind": vectors.describe(index), "search_s": float(np.median(times)),
                    "build_s": round(build_s, 2)})
        print(out[-1], flush=True)
        del index
    return out


# peak RSS from /proc/self/status VmHWM: getrusage's ru_maxrss survives execve and would include the parent's
BUILD_CHILD = """
import re, sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from tda_plugin.adapters.stable_audio import load
from tda_plugin.index.builder import build_index
from tda_plugin.settings import IndexSettings
corpus, out, ckpt = map(Path, sys.argv[1:4])
adapter = load(ckpt)
t = time.perf_counter()
report = build_index(corpus, out, adapter, checkpoint=ckpt, model_config=ckpt.with_name("model_config.json"),
                     settings=IndexSettings(embedder="gradient_sketch"))
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(report.segments, time.perf_counter() - t, hwm)
"""


def build_runs(corpus: Path, ckpt: Path, track_counts: list[int], work: Path) -> list[dict]:
    rows = list(csv.DictReader((corpus / "tracks.csv").open()))
    out = []
    for k in track_counts:
        sub = work / f"build-{k}"
        shutil.rmtree(sub, ignore_errors=True)
        sub.mkdir(parents=True)
        with (sub / "tracks.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({**r, "path": str((corpus / r["path"]).resolve())} for r in rows[:k])
        res = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(sub), str(sub / "idx"), str(ckpt)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "TDA_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
        segs, secs, rss_kb = res.stdout.split()[-3:]
        out.append({"tracks": k, "segments": int(segs), "build_s": round(float(secs), 1),
                    "segments_per_s": round(int(segs) / float(secs), 3), "peak_rss_mb": round(int(rss_kb) / 1024, 1)})
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", type=Path, required=True, help="a finished index (the demo's) whose model is timed")
    ap.add_argument("--sizes", default="1000", help="N measured end to end, both paths")
    ap.add_argument("--model-sizes", default="1000,2000,5000,10000,20000")
    ap.add_argument("--search", default=f"{SKETCH_DIM}@1000,10000,100000 256@100000,1000000",
                    help="'DIM@N1,N2 ...': vector sizes and counts for the FAISS search timing")
    ap.add_argument("--build-corpus", type=Path)
    ap.add_argument("--build-tracks", default="")
    ap.add_argument("--candidates", default=str(AttributeSettings.candidates), help="prefilter M (default: the default)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tda-latency"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    t0 = time.monotonic()
    template = Index(args.template)
    att = Attributor.from_index(args.template)
    sid = sorted(template.segments)[0]
    from tda_plugin.evaluation import segment_audio

    seg = template.segments[sid]
    query = Query("template segment 0", segment_audio(att, sid), template.meta.sample_rate,
                  template.tracks[seg.track_id].caption)
    default = AttributeSettings(candidates=int(args.candidates) if args.candidates.isdigit() else args.candidates)
    measured = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        idx = synthetic_index(template, args.work / f"synthetic-{n}", n)
        fixed = fixed_cost(idx, att.adapter, query)
        pre_s, m = timed_query(idx, att.adapter, query, default)
        all_s, _ = timed_query(idx, att.adapter, query, AttributeSettings(candidates="all"))
        measured.append({"n": n, "m": m, "prefiltered_s": round(pre_s, 3), "exhaustive_s": round(all_s, 3),
                         "ratio": round(all_s / pre_s, 2), "fixed_s": round(fixed, 3),
                         "score_rate_segments_per_s": round(n / max(1e-9, all_s - fixed), 3)})
        print(measured[-1], flush=True)
    search = []
    for group in args.search.split():
        dim, sizes = group.split("@")
        search += search_times([int(x) for x in sizes.split(",") if x], int(dim))
    modelled = []
    if measured:
        fixed, rate = measured[-1]["fixed_s"], measured[-1]["score_rate_segments_per_s"]
        for n in [int(x) for x in args.model_sizes.split(",") if x]:
            m = default.candidate_count(n)
            same = [s for s in search if s["dim"] == SKETCH_DIM] or search
            near = min(same, key=lambda s: abs(math.log(s["n"] / n))) if same else {"search_s": 0.0, "n": n}
            s_time = near["search_s"] * (n / near["n"] if vectors.kind_for(n) == "flat" else 1.0)
            pre = fixed + s_time + m / rate
            full = fixed + n / rate
            modelled.append({"n": n, "m": m, "prefiltered_s": round(pre, 2), "exhaustive_s": round(full, 2),
                             "ratio": round(full / pre, 2)})
    builds = build_runs(args.build_corpus, Path(template.meta.checkpoint),
                        [int(x) for x in args.build_tracks.split(",") if x], args.work) if args.build_corpus else []
    doc = {"template": str(args.template), "draws": template.meta.settings["draws"], "candidates": default.candidates,
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(time.monotonic() - t0, 1),
           "measured": measured, "modelled": modelled, "search": search, "build": builds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "latency.md").write_text(markdown(doc) + "\n")
    print(markdown(doc))


def markdown(doc: dict) -> str:
    lines = [f"Latency — template {doc['template']}, {doc['draws']} draws, candidates {doc['candidates']}, "
             f"{doc['machine']}, {doc['wall_s']} s.", "", "| N | M | prefiltered s | exhaustive s | ratio | how |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['m']} | {r['prefiltered_s']} | {r['exhaustive_s']} | {r['ratio']} | measured |"
              for r in doc["measured"]]
    lines += [f"| {r['n']} | {r['m']} | {r['prefiltered_s']} | {r['exhaustive_s']} | {r['ratio']} | modelled |"
              for r in doc["modelled"]]
    lines += ["", "| vectors | dim | M | index kind | search ms | build s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['dim']} | {r['m']} | {r['kind']} | {1000 * r['search_s']:.2f} | {r['build_s']} |"
              for r in doc["search"]]
    if doc["build"]:
        lines += ["", "| tracks | segments | build s | segments/s | peak RSS MB |", "|---|---|---|---|---|"]
        lines += [f"| {r['tracks']} | {r['segments']} | {r['build_s']} | {r['segments_per_s']} | {r['peak_rss_mb']} |"
                  for r in doc["build"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
