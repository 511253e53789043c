"""Paths an index records (checkpoint, model config, catalogue, track files), kept valid when folders move.

A path below the index's parent folder — the project folder that usually moves as one, like the demo's
``demo-out/{index,model,catalogue}`` — is stored relative to the index directory; anything else stays
absolute. Readers resolve relative paths against where the index is now, and fall back to where it was
built (``origin``) when the index moved on its own.
"""
from __future__ import annotations

import os
from pathlib import Path


def portable(path: str | Path, index_dir: Path) -> str:
    """How ``path`` is stored in an index at ``index_dir``."""
    path = Path(path).resolve()
    project = Path(index_dir).resolve().parent
    if path == project or project in path.parents:
        return os.path.relpath(path, Path(index_dir).resolve())
    return str(path)


def resolve(stored: str, index_dir: Path, origin: str | None = None) -> Path:
    """Where a stored path points now: relative to the index, else relative to where it was built."""
    path = Path(stored)
    if path.is_absolute():
        return path
    here = (Path(index_dir) / path).resolve()
    if not here.exists() and origin:
        there = (Path(origin) / path).resolve()
        if there.exists():
            return there
    return here
