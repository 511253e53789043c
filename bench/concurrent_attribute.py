"""Four `tda attribute` processes on one index at once give the results of one at a time, and corrupt
nothing: not the index, not a shared ledger (docs/reliability.md).

    python bench/concurrent_attribute.py [--processes 4] [--work /tmp/tda-concurrent]

Builds a small index (once), then attributes N clips one process after another, then N processes at once
(each its own clip, all writing one ledger), and compares the result JSON of each clip field by field
(scores bit for bit); then verifies the index's checksums and the ledger's integrity and row count.
Writes bench/results/concurrent_attribute.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from reliability_common import BUILD_ARGS, env, machine, make_project, run, tda, write_results

ATTRIBUTE = ["--prompt", "low hum", "--unlearn-draws", "4", "--candidates", "all", "--sink", "ledger"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tda-concurrent"))
    args = parser.parse_args()
    catalogue, ckpt = make_project(args.work)
    idx = args.work / "idx"
    if not (idx / "index.json").is_file() or b'"complete": true' not in (idx / "index.json").read_bytes():
        done = run("index", "build", catalogue, "--out", idx, "--ckpt", ckpt, *BUILD_ARGS)
        assert done.returncode == 0, done.stderr
    clips = sorted((catalogue / "audio").glob("*.wav"))[: args.processes]
    results: dict[str, list[dict]] = {}
    timing = {}
    for mode in ("sequential", "concurrent"):
        out = args.work / mode
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        commands = [tda("attribute", clip, "--index", idx, *ATTRIBUTE, "--ledger", out / "ledger.sqlite",
                        "--json", out / f"{k}.json") for k, clip in enumerate(clips)]
        t0 = time.monotonic()
        if mode == "sequential":
            codes = [subprocess.run(c, env=env(), capture_output=True).returncode for c in commands]
        else:
            procs = [subprocess.Popen(c, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
            codes = [p.wait() for p in procs]
        timing[mode] = round(time.monotonic() - t0, 1)
        assert codes == [0] * len(clips), (mode, codes)
        results[mode] = [json.loads((out / f"{k}.json").read_text()) for k in range(len(clips))]
        db = sqlite3.connect(f"file:{out / 'ledger.sqlite'}?mode=ro", uri=True)
        timing[f"{mode}_ledger"] = {"integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
                                    "attributions": db.execute("SELECT COUNT(DISTINCT attribution_id) FROM credits").fetchone()[0]}
        db.close()
    same = [a == b for a, b in zip(results["sequential"], results["concurrent"])]
    verify = run("index", "verify", idx)
    doc = {"machine": machine(), "processes": len(clips), "seconds": timing, "identical": same,
           "index_verify_rc": verify.returncode, "index_verify": verify.stderr.strip()}
    md = (f"# {len(clips)} `tda attribute` processes on one index at once\n\n"
          f"| | wall (s) | results identical to sequential | ledger integrity | attributions in the ledger |\n|---|---|---|---|---|\n"
          f"| one at a time | {timing['sequential']} | (reference) | {timing['sequential_ledger']['integrity']} | "
          f"{timing['sequential_ledger']['attributions']} |\n"
          f"| {len(clips)} at once | {timing['concurrent']} | {sum(same)}/{len(same)} (every field, scores bit for bit) | "
          f"{timing['concurrent_ledger']['integrity']} | {timing['concurrent_ledger']['attributions']} |\n\n"
          f"`tda index verify` afterwards: exit {verify.returncode}, \"{verify.stderr.strip()}\".")
    write_results("concurrent_attribute", doc, md)


if __name__ == "__main__":
    main()
