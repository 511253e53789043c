"""Credit sinks side by side: ledger appends with one writer vs several concurrent writer processes
(rows lost must be 0), and tagging time per audio format (samples compared before/after).

    python bench/credit_sinks.py [--attributions 300] [--writers 2] [--seconds 30]

Writes bench/results/credit_sinks.json and credit_sinks.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

FORMATS = [("wav", "WAV", "PCM_16", 44100), ("flac", "FLAC", "PCM_16", 44100), ("ogg", "OGG", "VORBIS", 44100),
           ("opus", "OGG", "OPUS", 48000), ("mp3", "MP3", "MPEG_LAYER_III", 44100)]


def _writer(ledger: str, worker: int, count: int, barrier, out) -> None:
    from tda_plugin.sinks import SinkOptions, write_credits
    from sink_result import result_doc

    barrier.wait()
    t0 = time.perf_counter()
    for i in range(count):
        write_credits(result_doc(prompt=f"{worker}/{i}"), None, ["ledger"], SinkOptions(ledger=Path(ledger)))
    out.put(time.perf_counter() - t0)


def ledger_run(tmp: Path, writers: int, per_writer: int) -> dict:
    from tda_plugin.sinks.ledger import Ledger

    db = tmp / f"ledger-{writers}.sqlite"
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(db), w, per_writer, barrier, out)) for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    times = [out.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    with Ledger(db) as ledger:
        rows = sum(1 for _ in ledger.rows())
    expected = writers * per_writer * 3
    return {"writers": writers, "attributions": writers * per_writer, "rows": rows, "rows_lost": expected - rows,
            "wall_s": wall, "attributions_per_s": writers * per_writer / wall, "slowest_writer_s": max(times)}


def tag_run(tmp: Path, seconds: float) -> list[dict]:
    from tda_plugin.sinks import write_credits
    from tda_plugin.sinks.read import read_credits
    from sink_result import result_doc

    out = []
    for ext, fmt, subtype, rate in FORMATS:
        path = tmp / f"clip.{ext}"
        t = np.arange(int(seconds * rate)) / rate
        sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format=fmt, subtype=subtype)
        before = sf.read(str(path), dtype="float32")[0]
        doc = result_doc(path=str(path))
        t0 = time.perf_counter()
        write_credits(doc, path, ["tags"])
        tag_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        back, _ = read_credits(path)
        read_s = time.perf_counter() - t0
        out.append({"format": ext, "bytes": path.stat().st_size, "tag_s": tag_s, "read_s": read_s,
                    "samples_identical": bool(np.array_equal(before, sf.read(str(path), dtype="float32")[0])),
                    "reads_back": back == doc})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attributions", type=int, default=300, help="attributions per writer")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the tagged clips")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = ledger_run(Path(tmp), 1, args.attributions)
        many = ledger_run(Path(tmp), args.writers, args.attributions)
        tags = tag_run(Path(tmp), args.seconds)
    result = {"ledger": [one, many], "concurrent_vs_single_throughput": many["attributions_per_s"] / one["attributions_per_s"],
              "tags": tags, "clip_seconds": args.seconds, "machine": platform.platform(), "python": platform.python_version()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "credit_sinks.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Credit sinks", "", "| writers | attributions | rows | rows lost | wall s | attributions/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['writers']} | {r['attributions']} | {r['rows']} | {r['rows_lost']} | {r['wall_s']:.2f} | {r['attributions_per_s']:.0f} |"
              for r in (one, many)]
    lines += ["", f"throughput, {args.writers} concurrent writers / 1 writer: {result['concurrent_vs_single_throughput']:.2f}", "",
              f"| format ({args.seconds:.0f} s clip) | bytes | tag ms | read ms | samples identical | reads back |", "|---|---|---|---|---|---|"]
    lines += [f"| {t['format']} | {t['bytes']} | {1000 * t['tag_s']:.1f} | {1000 * t['read_s']:.1f} | {t['samples_identical']} | {t['reads_back']} |"
              for t in tags]
    (args.out / "credit_sinks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
