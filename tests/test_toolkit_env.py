"""README's install line in the environment a stable-audio-tools user already has (issue 12, item 8).

Slow (a fresh `pip install stable-audio-tools`: minutes and gigabytes from PyPI), so it runs only when
asked for: ``python -m pytest -m toolkit_env tests/test_toolkit_env.py`` (README: Install). In a throwaway
venv: install the toolkit as a user would, then README's lines verbatim from this checkout (no
constraints file of this project); every package the toolkit installed must keep its version (``pip
freeze`` before/after: only additions), the toolkit must build a model and generate the same audio as
before, and `tda` must build an index and attribute a clip.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.toolkit_env

ROOT = Path(__file__).resolve().parents[1]
#: README's commands for a stable-audio-tools environment, run from the checkout (kept verbatim in README)
INSTALL = ["pip install 'setuptools<81'",
           "pip list --format=freeze --exclude-editable > toolkit-pins.txt",
           "pip install -c toolkit-pins.txt ."]


def shell(command: str, venv: Path, cwd: Path = ROOT, timeout: float = 3600) -> str:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "OMP_NUM_THREADS": "1", "TDA_NO_PROGRESS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def freeze(venv: Path) -> dict[str, str]:
    lines = shell("python -m pip list --format=freeze", venv).splitlines()
    return dict(line.lower().split("==", 1) for line in lines if "==" in line)


def test_readme_install_keeps_a_stable_audio_tools_environment(tmp_path: Path) -> None:
    for line in INSTALL:
        assert line in (ROOT / "README.md").read_text(), f"README no longer says: {line}"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    shell("python -m pip install --quiet stable-audio-tools", venv)  # the user's environment, as PyPI resolves it
    shell("python -m pip install --quiet 'setuptools<81'", venv)     # without it the toolkit cannot build a model
    from tda_plugin.adapters.stable_audio_demo import demo_config

    config = tmp_path / "model_config.json"
    config.write_text(json.dumps(demo_config(["low hum", "high beep"], segment_samples=4096, embed_dim=64, depth=2)))
    check = ROOT / "tests" / "toolkit_env_check.py"
    shell(f"python {check} generate {config} {tmp_path / 'before.npy'}", venv, cwd=tmp_path)
    before = freeze(venv)

    work = tmp_path / "checkout"  # README's lines run in a copy of the working tree: toolkit-pins.txt stays out of it
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    for line in INSTALL:
        shell(line.replace("pip ", "python -m pip ", 1), venv, cwd=work)
    after = freeze(venv)
    moved = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert not moved, f"the install moved toolkit packages: {moved}"
    assert "tda-plugin" in after and "faiss-cpu" in after

    shell(f"python {check} generate {config} {tmp_path / 'after.npy'}", venv, cwd=tmp_path)
    assert np.array_equal(np.load(tmp_path / "before.npy"), np.load(tmp_path / "after.npy"))
    shell(f"python {check} project {config} {tmp_path / 'p'}", venv, cwd=tmp_path)
    assert shell("tda --version", venv).startswith("tda-plugin ")
    p = tmp_path / "p"
    shell(f"tda index build {p / 'cat'} --out {p / 'idx'} --ckpt {p / 'model' / 'model.safetensors'} --draws 2 "
          "--fisher-segments 3 --device cpu", venv)
    doc = json.loads(shell(f"tda attribute {p / 'cat' / 'audio' / 't0.wav'} --index {p / 'idx'} --prompt 'low hum' "
                           "--unlearn-draws 2 --candidates all --sink none --json -", venv))
    assert doc["status"] == "ok" and doc["credits"]
