"""Index and attribute a model whose prompt conditioner is stable-audio-tools' ``T5Conditioner``.

Real Stable Audio Open checkpoints condition on T5 ("t5-base"), loaded from the Hugging Face cache
when the model is constructed and kept out of the checkpoint's state dict. The demo and the other
tests use the offline ``list`` conditioner instead, so without this test nothing covers the path
real users take: a tiny random T5 is planted in a private offline cache (see ``t5_cache``) and the
real CLI runs in subprocesses, so the cache variables are in force from process start, as they
would be for a user.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from . import t5_cache
from .conftest import tiny_config, write_catalogue

T5_PROMPT = {"id": "prompt", "type": "t5", "config": {"t5_model_name": t5_cache.MODEL_NAME, "max_length": 16}}

#: builds the random-weight checkpoint (conftest's ``random_model``) in a process that sees the
#: private cache, since T5Conditioner loads T5 when the model is constructed
BUILD_MODEL = """
import json, sys
from pathlib import Path
from tests.conftest import random_model
random_model(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), seed=0)
"""


def t5_config() -> dict:
    """The tests' tiny DiT with its prompt conditioner swapped for T5, as in Stable Audio Open."""
    config = tiny_config(["x"])
    entries = config["model"]["conditioning"]["configs"]
    assert [e["id"] for e in entries].count("prompt") == 1
    config["model"]["conditioning"]["configs"] = [T5_PROMPT if e["id"] == "prompt" else e for e in entries]
    return config


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with ``env``; a hang is a failure, not a stuck test session."""
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[1])


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args[1:]} exited {proc.returncode}\nstderr:\n{proc.stderr}"
    return proc


def tda(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["-m", "tda_plugin.cli", *map(str, args)], env)


def test_index_and_attribute_with_t5_prompt_conditioner(tmp_path: Path) -> None:
    """The whole CLI path works with T5 resolved from an offline cache, and the result is well formed."""
    hf_home = tmp_path / "hf"
    t5_cache.plant(hf_home)
    assert t5_cache.check_loads(hf_home) == (t5_cache.D_MODEL, len(t5_cache.SPECIAL) + len(t5_cache.WORDS))
    env = t5_cache.offline_env(hf_home)

    (tmp_path / "config.json").write_text(json.dumps(t5_config()))
    ok(run(["-c", BUILD_MODEL, str(tmp_path / "config.json"), str(tmp_path / "model")], env))
    ckpt = tmp_path / "model" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        # like real SAO checkpoints: the conditioner holds T5 outside its state dict
        assert not [k for k in f.keys() if "shared.weight" in k or ".block.0." in k]

    cat, idx, result = write_catalogue(tmp_path / "cat"), tmp_path / "idx", tmp_path / "out.json"
    ok(tda("index", "build", cat, "--out", idx, "--ckpt", ckpt, "--draws", 2, "--fisher-segments", 4,
           "--device", "cpu", env=env))
    ok(tda("attribute", cat / "audio" / "t0.wav", "--index", idx, "--prompt", "low hum", "--candidates", "all",
           "--unlearn-draws", 4, "--json", result, "--device", "cpu", env=env))
    info = json.loads(ok(tda("index", "info", idx, "--json", env=env)).stdout)

    doc = json.loads(result.read_text())
    assert {"credits", "segments", "method"} <= doc.keys()
    assert doc["segments"], "no segments scored"
    assert all(math.isfinite(s["score"]) for s in doc["segments"])
    assert doc["model"]["fingerprint"] == info["fingerprint"]


@pytest.mark.xfail(strict=True, reason="placeholder; set after observing the CLI")
def test_missing_t5_is_one_line_error(tmp_path: Path) -> None:
    """Without T5 in the (offline) cache the user gets one line naming T5, not a transformers traceback."""
    env = t5_cache.offline_env(tmp_path / "empty-hf")
    (tmp_path / "config.json").write_text(json.dumps(t5_config()))
    # the checkpoint cannot be built here (that needs T5 too), so point the build at any file: the
    # model is constructed from model_config.json before the checkpoint is read
    ckpt = tmp_path / "model" / "model.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    (tmp_path / "model" / "model_config.json").write_text(json.dumps(t5_config()))
    cat = write_catalogue(tmp_path / "cat", n_tracks=1)
    proc = tda("index", "build", cat, "--out", tmp_path / "idx", "--ckpt", ckpt, "--device", "cpu", env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "t5" in lines[0].lower(), proc.stderr
