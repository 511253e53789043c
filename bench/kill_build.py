"""Kill -9 during `tda index build` at random moments across every stage; each resumed build must end
byte-identical to an uninterrupted one (docs/reliability.md).

    python bench/kill_build.py [--trials 24] [--seed 0] [--work /tmp/tda-kill-build]

An uninterrupted reference build is timed while its directory is polled, which gives each stage's time
window (start, catalog, shards, fisher, sensitivities, finalize). Each trial picks a stage in turn and a
uniformly random moment inside its window, starts the same build, waits until the directory shows that
stage (start-up takes a varying time on a busy machine), waits the random offset into it, SIGKILLs the
build's whole process group, records the stage the directory shows, reruns the command to completion and compares every file
(sha256, temporaries included) with the reference. Writes bench/results/kill_build.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from reliability_common import BUILD_ARGS, digest, env, machine, make_project, run, tda, write_results

STAGES = ["start", "catalog", "shards", "fisher", "sensitivities", "finalize"]


def stage_of(idx: Path, shards: int) -> str:
    """The build stage an index directory is in, read from what is on disk."""
    meta = idx / "index.json"
    if not meta.is_file():
        return "start"
    if b'"complete": true' in meta.read_bytes():
        return "done"
    try:
        db = sqlite3.connect(f"file:{idx / 'catalog.sqlite'}?mode=ro", uri=True, timeout=0.05)
        done = db.execute("SELECT done FROM progress WHERE stage = 'catalog'").fetchone()
        db.close()
    except sqlite3.Error:
        done = None
    if not done:
        return "catalog"
    if len(list(idx.glob("shards/shard-*.safetensors"))) < shards:
        return "shards"
    if not (idx / "fisher.safetensors").is_file():
        return "fisher"
    if len(list(idx.glob("shards/sens-*.safetensors"))) < shards:
        return "sensitivities"
    return "finalize"


def reached(idx: Path, shards: int, target: str) -> bool:
    stage = stage_of(idx, shards)
    return stage == "done" or STAGES.index(stage) >= STAGES.index(target)


def build_command(catalogue: Path, idx: Path, ckpt: Path) -> list[str]:
    return tda("index", "build", catalogue, "--out", idx, "--ckpt", ckpt, *BUILD_ARGS)


def reference(catalogue: Path, idx: Path, ckpt: Path) -> tuple[dict[str, float], float, int]:
    """Build once, polling the directory: first time each stage shows, total time, number of shards."""
    shutil.rmtree(idx, ignore_errors=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(build_command(catalogue, idx, ckpt), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    shards = 10 ** 9  # unknown until the catalogue is planned
    while proc.poll() is None:
        if shards == 10 ** 9 and (idx / "catalog.sqlite").is_file():
            try:
                db = sqlite3.connect(f"file:{idx / 'catalog.sqlite'}?mode=ro", uri=True, timeout=0.05)
                shards = db.execute("SELECT COUNT(DISTINCT shard) FROM segments").fetchone()[0] or 10 ** 9
                db.close()
            except sqlite3.Error:
                pass
        seen.setdefault(stage_of(idx, shards), time.monotonic() - t0)
        time.sleep(0.02)
    total = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"reference build failed: {proc.stderr.read()}")
    return seen, total, shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tda-kill-build"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    catalogue, ckpt = make_project(args.work)
    idx = args.work / "idx"
    seen, total, shards = reference(catalogue, idx, ckpt)
    expected = digest(idx)
    shutil.rmtree(args.work / "reference", ignore_errors=True)
    idx.rename(args.work / "reference")
    starts = [(s, seen[s]) for s in STAGES if s in seen]
    windows = {s: (t, nxt) for (s, t), (_, nxt) in zip(starts, starts[1:] + [("done", total)])}
    trials = []
    for i in range(args.trials):
        target = list(windows)[i % len(windows)]
        lo, hi = windows[target]
        at = rng.uniform(lo, hi)
        shutil.rmtree(idx, ignore_errors=True)
        proc = subprocess.Popen(build_command(catalogue, idx, ckpt), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        t0 = time.monotonic()
        if target == "start":  # a moment before anything is written
            while time.monotonic() - t0 < at and proc.poll() is None:
                time.sleep(0.005)
        else:  # start-up time varies by tens of seconds on a busy machine: wait for the stage, then a random part of it
            while proc.poll() is None and not reached(idx, shards, target):
                time.sleep(0.01)
            t1 = time.monotonic()
            while time.monotonic() - t1 < at - lo and proc.poll() is None:
                time.sleep(0.005)
        finished_first = proc.poll() is not None
        if not finished_first:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stage = stage_of(idx, shards)
        temporaries = len(list(idx.glob(".*.tmp")) + list(idx.glob("shards/.*.tmp")))
        t1 = time.monotonic()
        resumed = run("index", "build", catalogue, "--out", idx, "--ckpt", ckpt, *BUILD_ARGS)
        found = digest(idx)
        identical = resumed.returncode == 0 and found == expected
        differing = sorted(n for n in set(found) | set(expected) if found.get(n) != expected.get(n))
        if not identical:  # kept for a look
            shutil.rmtree(args.work / f"mismatch-{i}", ignore_errors=True)
            shutil.copytree(idx, args.work / f"mismatch-{i}")
        trials.append({"trial": i, "target": target, "kill_at_s": round(at, 2), "stage_at_kill": stage,
                       "killed": not finished_first, "temporaries_left": temporaries, "resume_rc": resumed.returncode,
                       "resume_s": round(time.monotonic() - t1, 1), "identical": identical,
                       **({} if identical else {"differing": differing, "stderr": resumed.stderr[-2000:]})})
        print(trials[-1], flush=True)
    covered = sorted({t["stage_at_kill"] for t in trials if t["killed"]}, key=(STAGES + ["done"]).index)
    doc = {"machine": machine(), "reference_s": round(total, 1), "stage_starts_s": {s: round(t, 2) for s, t in starts},
           "shards": shards, "files": len(expected), "trials": trials,
           "identical": sum(t["identical"] for t in trials), "killed": sum(t["killed"] for t in trials),
           "stages_covered": covered}
    rows = "\n".join(f"| {t['trial']} | {t['target']} | {t['kill_at_s']} | {t['stage_at_kill']} | {t['temporaries_left']} | "
                     f"{t['resume_rc']} | {'yes' if t['identical'] else '**no**'} |" for t in trials)
    md = (f"# kill -9 during `tda index build`\n\nReference build {total:.1f} s ({shards} shards, {len(expected)} files); "
          f"stage starts (s): {', '.join(f'{s} {t:.1f}' for s, t in starts)}.\n\n"
          f"**{doc['identical']}/{len(trials)} resumed builds byte-identical** to the reference; "
          f"{doc['killed']} kills landed in the stages {', '.join(covered)}.\n\n"
          "| trial | target stage | kill at (s) | stage at kill | temp files left by the kill | resume exit | identical |\n"
          "|---|---|---|---|---|---|---|\n" + rows)
    write_results("kill_build", doc, md)


if __name__ == "__main__":
    main()
