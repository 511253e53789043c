"""A full disk under `tda index build` and `tda attribute`: one error line, no partial file under a final
name, and the build resumes to the same bytes once space is back (docs/reliability.md).

    sudo python bench/full_disk.py [--work /tmp/tda-full-disk] [--size-mb 64]

Mounts a small tmpfs (needs root, or CAP_SYS_ADMIN) as the output. A reference build there gives the
index's files; then, for several amounts of free space, a filler file leaves only that much, the build
runs out of space part-way, every file left under its final name is compared with the reference (each must
be complete and identical, the catalogue must pass SQLite's integrity check), the filler is removed and
the same command is rerun. Last, `tda attribute --json` onto the full disk. Writes
bench/results/full_disk.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from reliability_common import BUILD_ARGS, digest, machine, make_project, run, write_results

#: free space left for each trial, as a fraction of the finished index's size
FREE = [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97]


def fill(mount: Path, free: int) -> None:
    """Leave about ``free`` bytes free on ``mount``."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    avail = shutil.disk_usage(mount).free
    with open(filler, "wb") as fh:
        left = max(0, avail - free)
        while left > 0:
            n = min(left, 1 << 20)
            fh.write(b"\0" * n)
            left -= n


def leftovers(idx: Path, expected: dict[str, str]) -> dict[str, object]:
    """What the failed build left: files whose bytes differ from the reference's (index.json and the catalogue
    are rewritten later, so only their soundness counts), temporaries, and the catalogue's integrity."""
    found = digest(idx) if idx.is_dir() else {}
    partial = [n for n, h in found.items() if n not in ("index.json", "catalog.sqlite", "catalog.sqlite-journal")
               and not n.split("/")[-1].startswith(".") and expected.get(n) != h]
    temporaries = [n for n in found if n.split("/")[-1].startswith(".")]
    integrity = None
    if (idx / "catalog.sqlite").is_file():
        try:
            db = sqlite3.connect(f"file:{idx / 'catalog.sqlite'}?mode=ro", uri=True)
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            db.close()
        except sqlite3.Error as exc:
            integrity = f"unreadable: {exc}"
    meta_ok = None
    if (idx / "index.json").is_file():
        try:
            json.loads((idx / "index.json").read_text())
            meta_ok = True
        except ValueError:
            meta_ok = False
    return {"files": len(found), "partial_or_wrong": partial, "temporaries": temporaries, "catalog_integrity": integrity,
            "index_json_parses": meta_ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tda-full-disk"))
    parser.add_argument("--size-mb", type=int, default=64)
    args = parser.parse_args()
    catalogue, ckpt = make_project(args.work)
    mount = args.work / "mnt"
    mount.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        raise SystemExit(f"cannot mount a tmpfs ({mounted.stderr.strip()}); run as root, or see docs/reliability.md")
    try:
        idx = mount / "idx"
        build = ("index", "build", catalogue, "--out", idx, "--ckpt", ckpt, *BUILD_ARGS)
        assert run(*build).returncode == 0
        expected = digest(idx)
        size = sum((idx / n).stat().st_size for n in expected)
        shutil.rmtree(args.work / "reference", ignore_errors=True)
        shutil.copytree(idx, args.work / "reference")
        shutil.rmtree(idx)
        trials = []
        for fraction in FREE:
            shutil.rmtree(idx, ignore_errors=True)
            fill(mount, int(fraction * size))
            failed = run(*build)
            errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
            left = leftovers(idx, expected)
            (mount / "filler").unlink()
            resumed = run(*build)
            trials.append({"free_bytes": int(fraction * size), "free_fraction": fraction, "exit": failed.returncode,
                           "error_lines": len(errors), "error": errors[0] if errors else failed.stderr[-400:],
                           "traceback": "Traceback" in failed.stderr, **left, "resume_exit": resumed.returncode,
                           "identical_after_resume": resumed.returncode == 0 and digest(idx) == expected})
            print(trials[-1], flush=True)
        # attribute: --json onto a full disk
        fill(mount, 0)
        out = mount / "credits.json"
        clip = catalogue / "audio" / "t0.wav"
        attributed = run("attribute", clip, "--index", args.work / "reference", "--prompt", "low hum", "--unlearn-draws", "2",
                         "--candidates", "all", "--sink", "none", "--json", out)
        attribute = {"exit": attributed.returncode, "error": [l for l in attributed.stderr.splitlines() if l.startswith("error:")],
                     "traceback": "Traceback" in attributed.stderr, "left_on_disk": sorted(p.name for p in mount.iterdir() if p.name != "filler")}
        (mount / "filler").unlink()
    finally:
        subprocess.run(["umount", str(mount)])
    doc = {"machine": machine(), "index_bytes": size, "trials": trials, "attribute_json_on_full_disk": attribute}
    rows = "\n".join(f"| {t['free_bytes']} ({t['free_fraction']:.0%}) | {t['exit']} | {t['error_lines']} | "
                     f"{len(t['partial_or_wrong'])} | {len(t['temporaries'])} | {t['catalog_integrity']} | {t['resume_exit']} | "
                     f"{'yes' if t['identical_after_resume'] else '**no**'} |" for t in trials)
    md = (f"# A full disk (tmpfs of {args.size_mb} MB, filled to leave a fraction of the {size}-byte index free)\n\n"
          "| free bytes | build exit | error lines | partial or wrong files under a final name | temp files left | "
          "catalogue integrity | resume exit | identical after resume |\n|---|---|---|---|---|---|---|---|\n" + rows +
          f"\n\n`tda attribute --json` onto the full disk: exit {attribute['exit']}, "
          f"{len(attribute['error'])} error line(s), traceback: {attribute['traceback']}, files left: {attribute['left_on_disk'] or 'none'}.\n\n"
          + (f"Error line, e.g.: `{trials[0]['error']}`\n" if trials else ""))
    write_results("full_disk", doc, md)


if __name__ == "__main__":
    main()
