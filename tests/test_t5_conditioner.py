"""Index and attribute a model whose prompt conditioner is stable-audio-tools' ``T5Conditioner``.

Real Stable Audio Open checkpoints condition on T5 ("t5-base"), loaded from the Hugging Face cache
when the model is constructed and kept out of the checkpoint's state dict. The demo and the other
tests use the offline ``list`` conditioner instead, so without this module nothing covers the path
real users take: a tiny random T5 is planted in a private offline cache (see ``t5_cache``) and the
real CLI runs in subprocesses, so that the cache variables are in force from process start, as
they are for a user.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from . import t5_cache
from .conftest import tiny_config, write_catalogue

REPO = Path(__file__).resolve().parents[1]
T5_PROMPT = {"id": "prompt", "type": "t5", "config": {"t5_model_name": t5_cache.MODEL_NAME, "max_length": 16}}

#: builds the random-weight checkpoint (bench/tiny_project.py's ``random_model``) in a process that sees the
#: private cache, since T5Conditioner loads T5 when the model is constructed
BUILD_MODEL = """
import json, sys
from pathlib import Path
from bench.tiny_project import random_model
random_model(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), seed=0)
"""


def t5_config() -> dict[str, Any]:
    """The tests' tiny DiT with its prompt conditioner swapped for T5, as in Stable Audio Open."""
    config = tiny_config(["x"])
    entries = config["model"]["conditioning"]["configs"]
    assert [e["id"] for e in entries].count("prompt") == 1
    config["model"]["conditioning"]["configs"] = [T5_PROMPT if e["id"] == "prompt" else e for e in entries]
    return config


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root with ``env``; a hang fails instead of stalling the session."""
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Pass ``proc`` through if it succeeded; otherwise fail showing its stderr, which says why."""
    assert proc.returncode == 0, f"{proc.args[1:]} exited {proc.returncode}\nstderr:\n{proc.stderr}"
    return proc


def tda(*args: str | int | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real CLI entry point, as ``python -m tda_plugin.cli``."""
    return run(["-m", "tda_plugin.cli", *map(str, args)], env)


@pytest.fixture(scope="module")
def t5_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HF_HOME holding the tiny "t5-base", checked to load offline before anything relies on it."""
    hf_home = tmp_path_factory.mktemp("hf")
    t5_cache.plant(hf_home)
    assert t5_cache.check_loads(hf_home) == (t5_cache.D_MODEL, len(t5_cache.SPECIAL) + len(t5_cache.WORDS))
    return hf_home


@pytest.fixture(scope="module")
def t5_checkpoint(tmp_path_factory: pytest.TempPathFactory, t5_home: Path) -> Path:
    """model.safetensors (+ model_config.json beside it) of the T5-conditioned tiny DiT, random weights."""
    root = tmp_path_factory.mktemp("t5model")
    (root / "config.json").write_text(json.dumps(t5_config()))
    ok(run(["-c", BUILD_MODEL, str(root / "config.json"), str(root / "model")], t5_cache.offline_env(t5_home)))
    ckpt = root / "model" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        conditioner = [k for k in f.keys() if k.startswith("conditioner.conditioners.prompt.")]
    # as in real SAO checkpoints: only the projection 768 -> cond_dim is saved, T5 itself is not
    assert conditioner and all(".proj_out." in k for k in conditioner), conditioner
    return ckpt


@pytest.mark.slow  # builds a T5 cache and indexes with it: a minute or more
def test_index_and_attribute_with_t5_prompt_conditioner(tmp_path: Path, t5_home: Path, t5_checkpoint: Path) -> None:
    """The whole CLI path works with T5 resolved from an offline cache, and the result is well formed."""
    env = t5_cache.offline_env(t5_home)
    cat, idx, result = write_catalogue(tmp_path / "cat"), tmp_path / "idx", tmp_path / "out.json"
    ok(tda("index", "build", cat, "--out", idx, "--ckpt", t5_checkpoint, "--draws", 2, "--fisher-segments", 4,
           "--device", "cpu", env=env))
    ok(tda("attribute", cat / "audio" / "t0.wav", "--index", idx, "--prompt", "low hum", "--candidates", "all",
           "--unlearn-draws", 4, "--json", result, "--device", "cpu", env=env))
    info = json.loads(ok(tda("index", "info", idx, "--json", env=env)).stdout)

    doc = json.loads(result.read_text())
    assert {"credits", "segments", "method"} <= doc.keys()
    assert doc["segments"], "no segments scored"
    assert all(math.isfinite(s["score"]) for s in doc["segments"])
    assert doc["model"]["fingerprint"] == info["fingerprint"]


@pytest.mark.slow  # builds a T5 cache and indexes with it: a minute or more
def test_missing_t5_is_one_line_error(tmp_path: Path, t5_checkpoint: Path) -> None:
    """Without T5 in the (offline) cache the user gets one error line naming T5, not a transformers traceback.

    The checkpoint is valid, so T5 is the only thing missing. Third-party import warnings on stderr
    are not this test's concern; the error itself must be the single ``error:`` line.
    """
    env = t5_cache.offline_env(tmp_path / "empty-hf")
    cat = write_catalogue(tmp_path / "cat", n_tracks=1)
    proc = tda("index", "build", cat, "--out", tmp_path / "idx", "--ckpt", t5_checkpoint, "--device", "cpu", env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "t5" in errors[0].lower(), proc.stderr
