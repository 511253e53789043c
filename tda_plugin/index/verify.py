"""Index integrity: the checksums a build records, ``tda index verify``, and what a rebuild must redo.

At the end of a build every file but index.json is hashed into ``index.json["files"]`` (bytes + sha256).
:func:`verify` checks an index file by file — recorded size and checksum, then whether each file reads
as what it claims to be (SQLite integrity check, safetensors header and fingerprint, FAISS) and agrees
with the catalogue — and returns every problem, the first one first. :func:`stale_files` is what a
resumed ``tda index build`` deletes before it runs, so the same build command repairs a damaged index:
each stage recomputes just the files that are gone, deterministically, so the repaired index is
byte-identical to the original.
"""
from __future__ import annotations

import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import TdaError
from .store import IndexMeta, read_meta, report_order, sha256, size_problem

#: files a finished index holds besides the shard files, in the order a build writes them
TOP_FILES = ("catalog.sqlite", "fisher.safetensors", "baseline.safetensors", "vectors.faiss")


@dataclass(frozen=True)
class Problem:
    """One damaged file: its path inside the index and what is wrong with it."""

    name: str
    what: str


def manifest(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "sha256"}} of every file of a finished index but index.json (temp files skipped)."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "index.json" and not p.name.startswith("."))
    return {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files}


def _readable(root: Path, name: str, meta: IndexMeta) -> str | None:
    """None if ``name`` reads as what it claims to be, else why not."""
    path = root / name
    try:
        if name.endswith(".sqlite"):
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                check = db.execute("PRAGMA integrity_check").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                db.close()
            if check != "ok":
                return f"a damaged SQLite database ({check})"
            missing = {"tracks", "segments", "failures", "progress"} - tables
            return f"missing table(s) {', '.join(sorted(missing))}" if missing else None
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                found = (fh.metadata() or {}).get("fingerprint")
                for key in fh.keys():
                    fh.get_slice(key).get_shape()
            return None if found == meta.fingerprint else f"from another model ({str(found)[:12]})"
        if name.endswith(".faiss"):
            from . import vectors

            vectors.load(path)
        return None
    except Exception as exc:  # every reader's own error type: what matters is that it does not read
        return f"unreadable ({' '.join(str(exc).split())[:160]})"


def verify(root: Path, progress: Callable[[int], None] = lambda n: None) -> list[Problem]:
    """Every problem of the index at ``root``, in the order a repair should see them (empty: healthy).

    ``progress(bytes)`` is called as files are hashed.
    """
    root = Path(root)
    try:
        meta = read_meta(root)
    except TdaError as exc:
        return [Problem("index.json", getattr(exc, "why", str(exc)))]
    if not meta.complete:
        return [Problem("index.json", "the build has not finished (rerun `tda index build` to resume it)")]
    problems = []
    no_shards = any(n.startswith("shards/") for n in meta.files) and not (root / "shards").is_dir()
    if no_shards:
        problems.append(Problem("shards/", "missing (the whole folder)"))
    for name in sorted(meta.files, key=report_order):
        if no_shards and name.startswith("shards/"):
            continue
        entry = meta.files[name]
        why = size_problem(root, name, entry)
        if why is None:
            why = None if sha256(root / name) == entry["sha256"] else "not what the build wrote (checksum differs)"
            progress(entry["bytes"])
        if why:
            problems.append(Problem(name, why))
    legacy = [n for n in TOP_FILES if (root / n).exists()] + \
        sorted(p.relative_to(root).as_posix() for p in (root / "shards").glob("*.safetensors"))
    expected = meta.files or dict.fromkeys(legacy)
    for name in sorted(expected, key=report_order):
        if (root / name).is_file() and not any(p.name == name for p in problems):
            why = _readable(root, name, meta)
            if why:
                problems.append(Problem(name, why))
    if not meta.files:
        problems += [Problem(n, "missing") for n in TOP_FILES if not (root / n).is_file()]
    return sorted(problems, key=lambda p: report_order(p.name))


def stale_files(root: Path, meta: IndexMeta, problems: list[Problem]) -> list[str]:
    """The files a rebuild must delete so that its stages recompute what ``problems`` name.

    A shard, a sensitivity file, the baseline or the vectors: just that file (finalize rewrites the last
    two anyway). The Fisher: it and every sensitivity file, which were computed from it. The catalogue
    or index.json: everything (segment ids and settings come from them).
    """
    names = {p.name for p in problems}
    if names & {"catalog.sqlite", "index.json"}:
        return ["*"]
    stale = set(names)
    if "fisher.safetensors" in names:
        stale |= {n for n in meta.files if n.startswith("shards/sens-")}
    return sorted(stale, key=report_order)


def repair_command(root: Path, meta: IndexMeta | None) -> str:
    """The `tda index build` command that resumes (and so repairs) this index, with its recorded settings."""
    if meta is None:
        return f"tda index build CORPUS --out {shlex.quote(str(root))} --ckpt CHECKPOINT --overwrite (with the settings it was built with)"
    from .paths import resolve

    s = meta.settings
    where = lambda stored: shlex.quote(str(resolve(stored, root, meta.origin or None)))  # noqa: E731
    args = [f"tda index build {where(meta.corpus)} --out {shlex.quote(str(root))} --ckpt {where(meta.checkpoint)}"]
    if meta.model_config:
        args.append(f"--model-config {where(meta.model_config)}")
    if meta.adapter != "stable-audio":
        args.append(f"--adapter {meta.adapter}")
    if s.get("segment_seconds") is not None:
        args.append(f"--segment-seconds {s['segment_seconds']}")
    args += [f"--draws {s['draws']}", f"--seed {s['seed']}", f"--fisher-segments {s['fisher_segments']}",
             f"--embedder {s['embedder']}", f"--shard-size {s['shard_size']}", f"--damping {s['damping']}"]
    if not s.get("unconditional", True):
        args.append("--no-unconditional")
    return " ".join(args)


def meta_or_none(root: Path) -> IndexMeta | None:
    try:
        return read_meta(root)
    except TdaError:
        return None
