"""The `tda` command line as a user drives it: exit codes, stdout data, one-line errors on stderr."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tda_plugin.cli.app import app

runner = CliRunner()


def test_index_build_info_and_attribute(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> None:
    ckpt, cfg = tiny_model
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", str(tiny_catalogue), "--out", str(idx), "--ckpt", str(ckpt),
                            "--model-config", str(cfg), "--draws", "2", "--fisher-segments", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "segments of 4 tracks" in r.stderr
    r = runner.invoke(app, ["index", "info", str(idx), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["adapter"] == "stable-audio" and info["segments"] > 0 and info["draws"] == 2
    r = runner.invoke(app, ["index", "info", str(idx)])
    assert r.exit_code == 0 and "fingerprint" in r.stdout

    out = tmp_path / "credits.json"
    r = runner.invoke(app, ["attribute", str(tiny_catalogue / "audio" / "t0.wav"), "--index", str(idx), "--prompt", "low hum",
                            "--top", "3", "--candidates", "all", "--unlearn-draws", "2", "--alpha", "1e-7", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "Artist" in r.stdout  # the credits table
    doc = json.loads(out.read_text())
    assert doc["query"]["path"].endswith("t0.wav") and doc["query"]["prompt"] == "low hum"
    assert len(doc["segments"]) == 3 and doc["method"]["candidates"] == "all"

    r = runner.invoke(app, ["attribute", str(tiny_catalogue / "audio" / "t0.wav"), str(tiny_catalogue / "audio" / "t1.wav"),
                            "--index", str(idx), "--candidates", "2", "--unlearn-draws", "2", "--json", "-"])
    assert r.exit_code == 0, r.output
    docs = json.loads(r.stdout)
    assert len(docs) == 2 and all(d["method"]["scored"] == 2 for d in docs)


def test_errors_are_one_line_on_stderr(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    r = runner.invoke(app, ["attribute", str(tmp_path / "missing.wav"), "--index", str(tmp_path)])
    assert r.exit_code == 3
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    r = runner.invoke(app, ["index", "build", str(tmp_path), "--out", str(tmp_path / "i"), "--ckpt", str(tiny_model[0]),
                            "--adapter", "nope"])
    assert r.exit_code == 3 and "unknown adapter 'nope'" in r.stderr


def test_plugins_lists_builtins() -> None:
    r = runner.invoke(app, ["plugins"])
    assert r.exit_code == 0
    for name in ("stable-audio", "activations", "latent_stats", "hookspec"):
        assert name in r.stdout
