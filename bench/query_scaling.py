"""Recall of the exhaustive top-10 and query latency against catalogue size N, side by side with
``--candidates all``, from one run.

    python bench/real_music_model.py /tmp/real/fetched /tmp/real-model --steps 2000
    tda index build /tmp/real-model/catalogue --ckpt /tmp/real-model/model/model.safetensors --out /tmp/real-model/idx
    python bench/query_scaling.py --index /tmp/real-model/idx --sizes 1000,5000,20000 \\
        --held-out /tmp/real-model/held_out --noisy 6 --generated 3 --name real-scale

Catalogues of N segments are nested random subsets of one index (seeded), each written as an index of its
own (``sub_index``: the subset's latents, baseline rows and sketches, the full index's Fisher), so every N
shares the unlearning step of a query and the subsets' exhaustive rankings are exactly comparable. Per query:

1. ``--candidates all``: every segment of the largest N scored on every draw, in the subsets' nesting
   order, the time of each prefix recorded: the exhaustive latency at every N, measured in one pass
   (encode + unlearning step, then exact scoring of exactly those N segments);
2. per N, the default settings end to end (``Attributor.attribute`` on the N-segment index) and the
   previous default (4.5 % of N, no shortlist): latency and the top-10 each reports, against the
   exhaustive top-10 of that N (recall, measured);
3. from the traces of 1, the recall of a grid of candidate counts, shortlists and first-pass draws at
   every N, replayed without scoring again (tda_plugin/recall.py, ``staged_top``).
Queries: ``--held-out`` clips (not in the index; prompts from queries.json), ``--generated`` clips from the
index's model with the catalogue's prompts, and ``--noisy`` training segments with 20 dB noise.
Writes bench/results/query_scaling-<name>.{json,md,png}. To spread the queries over processes, run
with ``--queries 0,1,2`` etc. (each writes its own JSON; the N-segment indexes are written once and
reused), then ``--merge`` to combine them into one report. ``--reuse-traces`` loads the exhaustive traces a
previous run saved in ``--work`` instead of scoring them again, so a change of defaults is re-timed in minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from query_trace import QueryTrace, exhaustive_top, exhaustive_trace, staged_top
from tda_plugin import Attributor, AttributeSettings
from tda_plugin.atomic import write_json, write_tensors
from tda_plugin.audio import load as load_audio
from tda_plugin.catalog import Track
from tda_plugin.evaluation import spread_segments
from tda_plugin.experiments.prefilter import noisy_queries
from tda_plugin.index import vectors, verify
from tda_plugin.index.catalog_db import CatalogDB, SegmentRow
from tda_plugin.index.store import Index, sensitivity_name, shard_name
from tda_plugin.recall import Query

PREVIOUS = AttributeSettings(candidates="4.5%", shortlist=None)
GRID_CANDIDATES = (64, 128, 256, 512, 1024)
GRID_SHORTLIST = (16, 32, 64, None)
GRID_DRAWS = (1, 2, 4)


def nesting(index: Index, seed: int = 0) -> list[int]:
    """Every segment id in a seeded random order: its first N are the N-segment catalogue."""
    ids = np.array(sorted(index.segments))
    return [int(i) for i in ids[np.random.default_rng(seed).permutation(len(ids))]]


def sub_index(full: Index, ids: list[int], out: Path) -> Path:
    """An index of the segments ``ids`` of ``full`` (same model, settings, Fisher; ids kept), shards rewritten;
    reused if a previous run wrote it."""
    if (out / "index.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    (out / "shards").mkdir(parents=True)
    ids = sorted(ids)
    size = int(full.meta.settings["shard_size"])
    rows = [full.segments[i] for i in ids]
    rows = [SegmentRow(s.segment_id, s.track_id, s.seg_index, s.start_s, s.end_s, k // size) for k, s in enumerate(rows)]
    tracks = {s.track_id for s in rows}
    db = CatalogDB(out / "catalog.sqlite")
    db.add_tracks_and_segments([(Track(t.track_id, t.path, Path(t.resolved), t.title, t.artist, t.license, t.caption),
                                 t.duration_s) for t in full.tracks.values() if t.track_id in tracks], rows, [])
    db.close()
    fp = {"fingerprint": full.meta.fingerprint}
    sketches = _sketches(full)
    for k in range(math.ceil(len(ids) / size)):
        chunk = ids[k * size:(k + 1) * size]
        write_tensors(out / shard_name(k), {"segment_ids": torch.tensor(chunk), "latents": full.gather(chunk, "latents")}, fp)
    merged = {"segment_ids": torch.tensor(ids), "losses": full.baseline_rows(ids)}
    merged.update({key: full.baseline_rows(ids, key) for key in full.baseline if key.startswith("sensitivity.")})
    write_tensors(out / "baseline.safetensors", merged, fp)
    shutil.copy(full.root / "fisher.safetensors", out / "fisher.safetensors")
    vectors.save(vectors.build(np.stack([sketches[i] for i in ids]), np.array(ids)), out / "vectors.faiss")
    meta = {**full.meta.to_dict(), "files": verify.manifest(out)}  # the subset's own files, checked on load
    write_json(out / "index.json", meta)  # last: its presence marks the index written
    return out


def _sketches(full: Index) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for k in sorted({s.shard for s in full.segments.values()}):
        with safe_open(str(full.root / shard_name(k)), "pt") as fh:
            sids = fh.get_tensor("segment_ids").tolist()
        with safe_open(str(full.root / sensitivity_name(k)), "pt") as fh:
            out.update(zip(sids, fh.get_tensor("sketch").numpy()))
    return out


def queries(att: Attributor, held_out: Path | None, noisy: int, generated: int, seed: int = 0) -> list[Query]:
    found: list[Query] = []
    if held_out is not None:
        for q in json.loads((held_out / "queries.json").read_text()):
            data, sr = load_audio(held_out / q["path"])
            found.append(Query(f"held-out {q['path']}", data, sr, q["prompt"]))
    if generated:
        from tda_plugin.adapters.stable_audio_demo import generate_clip

        prompts = sorted({t.caption for t in att.index.tracks.values() if t.caption})
        seconds = 4 * att.index.meta.segment_seconds
        for g in range(generated):
            prompt = prompts[(g * 5) % len(prompts)]
            audio = generate_clip(att.adapter, prompt, seconds_total=seconds, samples=4 * att.index.meta.segment_samples,
                                  seed=seed + g, steps=50)
            found.append(Query(f"generated {g} ({prompt})", audio, att.index.meta.sample_rate, prompt))
    return found + noisy_queries(att, spread_segments(att, noisy))


def timed(att: Attributor, query: Query, settings: AttributeSettings) -> tuple[float, list[int], int]:
    t = time.perf_counter()
    result = att.attribute(query.audio, query.sample_rate, prompt=query.prompt, settings=settings)
    return time.perf_counter() - t, [s["segment_id"] for s in result.segments], int(result.method["scored"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--held-out", type=Path)
    ap.add_argument("--noisy", type=int, default=4)
    ap.add_argument("--generated", type=int, default=3)
    ap.add_argument("--queries", default="", help="run only these query numbers (e.g. 0,1,2: split a run over processes)")
    ap.add_argument("--merge", action="store_true", help="combine the --queries runs' JSON files into one report")
    ap.add_argument("--name", default="real")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tda-query-scaling"))
    ap.add_argument("--reuse-traces", action="store_true",
                    help="load each query's exhaustive trace from --work (a previous run's) instead of scoring it again: "
                         "re-times the default paths after a change of defaults, its --candidates all latency the trace's")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    if args.merge:
        merge(args.out, args.name)
        return
    t0 = time.monotonic()
    full = Attributor.from_index(args.index)
    order = nesting(full.index)
    sizes = [min(int(x), len(order)) for x in args.sizes.split(",") if x]
    subs = {n: Attributor(Index(sub_index(full.index, order[:n], args.work / f"sub-{n}")), full.adapter) for n in sizes}
    qs = queries(full, args.held_out, args.noisy, args.generated)
    picked = [int(x) for x in args.queries.split(",") if x] or list(range(len(qs)))
    default = AttributeSettings()
    per_query = []
    for number in picked:
        q = qs[number]
        stored = args.work / f"trace-{args.name}-{number}.npz"
        trace = _load_trace(stored) if args.reuse_traces else \
            exhaustive_trace(subs[max(sizes)], q, order=order[:max(sizes)], marks=sizes)
        row = {"number": number, "query": q.name, "seconds": trace.seconds, "sizes": {}}
        for n in sizes:
            members = set(order[:n])
            exact = exhaustive_top(trace, members)
            got = {}
            for label, settings in (("default", default), ("previous", PREVIOUS)):
                seconds, top, scored = timed(subs[n], q, settings)
                got[label] = {"seconds": round(seconds, 3), "scored": scored, "recall": len(set(top) & set(exact)) / 10}
            got["all"] = {"seconds": round(trace.seconds["fixed"] + trace.seconds[f"scoring_{n}"], 3), "scored": n}
            got["grid"] = {f"{m}/{k}/{d}": len(set(staged_top(trace, members, candidates=m, shortlist=k, shortlist_draws=d))
                                                & set(exact)) / 10
                           for m in GRID_CANDIDATES for k in GRID_SHORTLIST for d in GRID_DRAWS if k is None or k < m}
            row["sizes"][str(n)] = got
        per_query.append(row)
        print(json.dumps({"query": q.name, **{n: {k: v for k, v in r.items() if k != "grid"} for n, r in row["sizes"].items()}}),
              flush=True)
        if not args.reuse_traces:
            _save_trace(stored, trace)
    doc = {"name": args.name, "index": str(args.index), "segments": len(order), "sizes": sizes,
           "draws": full.index.meta.settings["draws"], "default": {"candidates": default.candidates, "shortlist": default.shortlist,
                                                                   "shortlist_draws": default.shortlist_draws},
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(time.monotonic() - t0, 1),
           "exhaustive": "from the traces of a previous run" if args.reuse_traces else "measured in this run",
           "queries": per_query}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"query_scaling-{args.name}" + (f"-q{args.queries.replace(',', '_')}" if args.queries else ""))
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    if not args.queries:
        write_report(doc, stem)


def merge(out: Path, name: str) -> None:
    parts = sorted(out.glob(f"query_scaling-{name}-q*.json"))
    docs = [json.loads(p.read_text()) for p in parts]
    doc = {**docs[0], "queries": [q for d in docs for q in d["queries"]], "wall_s": max(d["wall_s"] for d in docs),
           "parts": [p.name for p in parts]}
    stem = out / f"query_scaling-{name}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    write_report(doc, stem)


def _save_trace(path: Path, trace: QueryTrace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ids=np.array(trace.ids), change=trace.change, sensitivity=trace.sensitivity,
                        ranking=np.array(trace.ranking), name=trace.name, seconds=json.dumps(trace.seconds))


def _load_trace(path: Path) -> QueryTrace:
    z = np.load(path)
    return QueryTrace(str(z["name"]), z["ids"].tolist(), z["change"], z["sensitivity"], z["ranking"].tolist(),
                      json.loads(str(z["seconds"])))


def summary(doc: dict) -> dict:
    """Mean recall and median latency per N and path."""
    out = {}
    for n in doc["sizes"]:
        rows = [q["sizes"][str(n)] for q in doc["queries"]]
        out[n] = {p: {"recall": float(np.mean([r[p]["recall"] for r in rows])) if p != "all" else 1.0,
                      "seconds": float(np.median([r[p]["seconds"] for r in rows])),
                      "scored": int(np.median([r[p]["scored"] for r in rows]))} for p in ("default", "previous", "all")}
        out[n]["grid"] = {c: float(np.mean([r["grid"][c] for r in rows])) for c in rows[0]["grid"]}
    return out


def write_report(doc: dict, stem: Path) -> None:
    s = summary(doc)
    d = doc["default"]
    lines = [f"Query scaling — {doc['name']}: nested catalogues of one {doc['segments']}-segment index, {len(doc['queries'])} "
             f"queries, {doc['draws']} draws, {doc['machine']}, {doc['wall_s']} s. Default: {d['candidates']} candidates, "
             f"shortlist {d['shortlist']} after a first pass over {d['shortlist_draws']} draws. Exhaustive scores "
             f"(`--candidates all`): {doc.get('exhaustive', 'measured in this run')}.", "",
             "| N | path | segments scored (median) | top-10 recall (mean) | latency s (median) |", "|---|---|---|---|---|"]
    for n in doc["sizes"]:
        for p, label in (("default", "default (fixed M)"), ("previous", "previous default (4.5 % of N)"),
                         ("all", "`--candidates all`")):
            r = s[n][p]
            lines.append(f"| {n} | {label} | {r['scored']} | {r['recall']:.3f} | {r['seconds']:.1f} |")
    lines += ["", "Recall replayed from the exhaustive traces: candidates / shortlist / first-pass draws "
              "(shortlist None: every candidate scored on all draws).", "",
              "| setting | " + " | ".join(f"N={n}" for n in doc["sizes"]) + " |", "|---|" + "---|" * len(doc["sizes"])]
    for c in s[doc["sizes"][0]]["grid"]:
        lines.append(f"| {c} | " + " | ".join(f"{s[n]['grid'][c]:.3f}" for n in doc["sizes"]) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot(doc, s, stem.with_suffix(".png"))


def _plot(doc: dict, s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ns = doc["sizes"]
    for p, label, style in (("default", "default (fixed M)", "o-"), ("previous", "4.5 % of N", "s--"),
                            ("all", "--candidates all", "^:")):
        left.plot(ns, [s[n][p]["recall"] for n in ns], style, label=label)
        right.plot(ns, [s[n][p]["seconds"] for n in ns], style, label=label)
    left.axhline(0.95, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="catalogue segments N", ylabel="top-10 recall of --candidates all", ylim=(0, 1.05))
    right.set(xscale="log", yscale="log", xlabel="catalogue segments N", ylabel="query latency s (median)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(f"{doc['name']}: {len(doc['queries'])} queries, one run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
