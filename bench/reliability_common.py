"""Shared by the reliability benches (docs/reliability.md): a small real-architecture project, the `tda`
command as a user runs it, directory digests, and result files.

The project is the test suite's: a random-weight stable-audio-tools DiT (bench/tiny_project.py) and sine-tone
catalogue tracks, large enough that an index build has several shards and Fisher chunks.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

#: the index settings every reliability bench builds with (3 Fisher chunks, 6 shards)
BUILD_ARGS = ["--draws", "4", "--fisher-segments", "40", "--shard-size", "8", "--device", "cpu"]


def make_project(root: Path, tracks: int = 8, seconds: float = 3.2) -> tuple[Path, Path]:
    """(catalogue dir, checkpoint) under ``root``, created once."""
    from tiny_project import random_model, tiny_config, write_catalogue

    catalogue, ckpt = root / "catalogue", root / "model" / "model.safetensors"
    if not (catalogue / "tracks.csv").is_file():
        write_catalogue(catalogue, n_tracks=tracks, seconds=seconds)
    if not ckpt.is_file():
        random_model(tiny_config(["low hum", "high beep"]), ckpt.parent, seed=0)
    return catalogue, ckpt


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TDA_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}


def tda(*args: str | Path) -> list[str]:
    """The command line of `tda ARGS` with this interpreter (what a user's `tda` runs)."""
    return [sys.executable, "-m", "tda_plugin.cli", *map(str, args)]


def run(*args: str | Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(tda(*args), capture_output=True, text=True, env=env(), timeout=timeout)


def digest(directory: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``directory`` (hidden temporaries included: none may remain)."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[p.relative_to(directory).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_results(name: str, doc: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)
