"""`tda demo --adapter audiocraft` end to end, at a few training steps: every file the demo promises is written.

The demo trains for a step budget with an unbounded wall-clock budget (so machine load cannot change the
model); this runs that path, which no other test does, at 2 EnCodec and 3 LM steps instead of the demo's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from tda_plugin.cli.app import app
from tda_plugin.demo import pipeline
from tda_plugin.index.store import Index

runner = CliRunner()


def test_the_audiocraft_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "AUDIOCRAFT_STEPS", (2, 3))
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--adapter", "audiocraft", "--out", str(out), "--clips", "2", "--device", "cpu",
                            "--ledger", str(tmp_path / "ledger.sqlite")])
    assert r.exit_code == 0, r.output
    for k in range(2):
        doc = json.loads((out / "clips" / f"clip_{k:02d}.wav.credits.json").read_text())
        assert doc["model"]["adapter"] == "audiocraft" and doc["credits"]
        assert "no random draws" in doc["method"]["stability"]["not_estimable"]  # why "settled" has no count
    assert (out / "report.html").is_file()
    assert "settled is not estimable (the model's loss has no random draws:" in " ".join(r.output.split())
    assert Index(out / "index").meta.index_settings.draws == 1  # MusicGen's loss has no draws to average
