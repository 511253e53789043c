"""Atomic file writes: a file carries its final name only once it is complete.

Everything an index build or an attribution writes goes through here, so an interrupted job leaves
either the old file or the new one, never half of one (temp file in the same directory + os.replace).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import save_file


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_tensors(target: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors (contiguous CPU copies) atomically; the same input always gives the same bytes."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(target) as tmp:
        save_file(clean, str(tmp), metadata=metadata)
        _sort_metadata(tmp)


def _sort_metadata(path: Path) -> None:
    """safetensors writes ``__metadata__`` in hash-map order, which changes from process to process when it has
    several keys; sort them in place (same length), so a rebuilt or resumed index is byte-identical."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        meta = header.get("__metadata__")
        if not meta or len(meta) < 2:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        fixed = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(fixed) <= size:  # always equal: only the order of keys changed
            fh.seek(8)
            fh.write(fixed.ljust(size, b" "))


def write_with(target: Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result onto ``target`` (for third-party writers like FAISS)."""
    with atomic_path(target) as tmp:
        writer(tmp)
