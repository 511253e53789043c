"""Kill -9 credits-ledger writers mid-write, many times: no committed row may be lost, no attribution may be
half-written, and the database must pass ``PRAGMA integrity_check`` after every kill (docs/reliability.md).

    python bench/kill_ledger.py [--writers 4] [--kills 40] [--seed 0] [--work /tmp/tda-kill-ledger]

Each writer appends attributions through the ledger sink, as `tda attribute --sink ledger` does, and prints
an attribution's tag only after its append returned (committed). The parent SIGKILLs a random writer at a
random moment, checks the database, and starts a new writer in its place. At the end every printed tag
must be in the ledger with all its rows. Writes bench/results/kill_ledger.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from reliability_common import env, machine, write_results

CREDITS = 5  # rows per attribution


def write_forever(ledger: Path, name: str) -> None:
    """A writer: append attributions through the ledger sink until killed, printing each one's tag once its append
    returned (committed). Runs as ``python bench/kill_ledger.py --writer LEDGER NAME``."""
    from sink_result import result_doc
    from tda_plugin.sinks import SinkOptions, write_credits

    i = 0
    while True:
        doc = result_doc(prompt=f"{name}/{i}")
        doc["credits"] = [dict(doc["credits"][0], rank=r + 1, track_id=r) for r in range(CREDITS)]
        write_credits(doc, None, ["ledger"], SinkOptions(ledger=ledger))
        print(f"{name}/{i}", flush=True)  # only once the append returned: committed
        i += 1


def check(ledger: Path) -> tuple[str, dict[str, int]]:
    """(integrity_check result, rows per prompt) read through a fresh connection."""
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=60)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = dict(db.execute("SELECT prompt, COUNT(*) FROM credits GROUP BY attribution_id"))
    finally:
        db.close()
    return integrity, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tda-kill-ledger"))
    parser.add_argument("--writer", nargs=2, metavar=("LEDGER", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        write_forever(Path(args.writer[0]), args.writer[1])
        return
    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    ledger = args.work / "credits.sqlite"
    for p in [*args.work.glob("credits.sqlite*"), *args.work.glob("writer-*.log")]:
        p.unlink()
    logs: list[Path] = []
    procs: dict[int, subprocess.Popen] = {}

    def start(slot: int) -> None:
        log = args.work / f"writer-{len(logs)}.log"
        logs.append(log)
        procs[slot] = subprocess.Popen([sys.executable, __file__, "--writer", str(ledger), f"w{len(logs) - 1}"], env=env(),
                                       stdout=log.open("w"), stderr=subprocess.DEVNULL, start_new_session=True)

    try:
        doc = trial(args, ledger, logs, procs, start, rng)
    finally:
        for proc in procs.values():  # never leave a writer behind, whatever happened
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    md = (f"# kill -9 during credits-ledger writes\n\n{args.writers} writer processes, {args.kills} SIGKILLs of a random "
          f"writer at random moments over {doc['seconds']} s (a new writer replaces each).\n\n"
          f"| attributions committed (reported after the append returned) | in the ledger | committed ones lost | "
          f"half-written attributions | integrity checks | failed |\n|---|---|---|---|---|---|\n"
          f"| {doc['committed_attributions']} | {doc['attributions_in_ledger']} | {doc['committed_lost']} | "
          f"{doc['partial_attributions']} | {doc['integrity_checks']} | {doc['integrity_failures']} |\n\n"
          "The ledger may hold a few more attributions than were reported: a writer killed between its commit and its print.")
    write_results("kill_ledger", doc, md)


def trial(args: argparse.Namespace, ledger: Path, logs: list[Path], procs: dict, start, rng: random.Random) -> dict:
    for slot in range(args.writers):
        start(slot)
    deadline = time.monotonic() + 300
    while not any(log.stat().st_size for log in logs) and time.monotonic() < deadline:
        time.sleep(0.5)  # imports; the first committed rows
    checks = []
    t0 = time.monotonic()
    for k in range(args.kills):
        time.sleep(rng.uniform(0.05, 1.5))
        writing = [k for k, proc in procs.items() if logs[int(proc.args[-1][1:])].stat().st_size]
        while not writing:  # kill writers that are writing, not ones still importing
            time.sleep(0.2)
            writing = [k for k, proc in procs.items() if logs[int(proc.args[-1][1:])].stat().st_size]
        slot = rng.choice(writing)
        os.killpg(procs[slot].pid, signal.SIGKILL)
        procs[slot].wait()
        integrity, rows = check(ledger)  # the others keep writing meanwhile
        checks.append({"kill": k, "integrity": integrity, "attributions": len(rows),
                       "partial": sum(n != CREDITS for n in rows.values())})
        start(slot)
    for proc in procs.values():
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    integrity, rows = check(ledger)
    committed = [line for log in logs for line in log.read_text().splitlines() if line]
    lost = [tag for tag in committed if rows.get(tag) != CREDITS]
    return {"machine": machine(), "writers": args.writers, "kills": args.kills, "seconds": round(time.monotonic() - t0, 1),
            "committed_attributions": len(committed), "attributions_in_ledger": len(rows),
            "committed_lost": len(lost), "lost": lost[:20], "partial_attributions": sum(n != CREDITS for n in rows.values()),
            "integrity_checks": len(checks) + 1,
            "integrity_failures": sum(c["integrity"] != "ok" for c in checks) + (integrity != "ok"),
            "final_integrity": integrity, "checks": checks}


if __name__ == "__main__":
    main()
