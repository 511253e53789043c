"""`tda report`: the page for attributed clips, built from the credits stored with them (what the demo calls too)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.sinks.sidecar import sidecar_path

runner = CliRunner()


def test_report_of_attributed_clips_with_their_segments(tmp_path: Path, attributed_clips: list[Path], tiny_index: Path) -> None:
    page = attributed_clips[0].parent.parent / "report.html"
    r = runner.invoke(app, ["report", *map(str, attributed_clips), "--index", str(tiny_index), "--out", str(page)])
    assert r.exit_code == 0, r.output
    assert f"report: {page}" in r.stderr
    text = page.read_text(encoding="utf-8")
    results = [json.loads(sidecar_path(p).read_text()) for p in attributed_clips]
    assert text.count("<audio") == sum(1 + len(res["segments"]) for res in results)
    assert "<h2 id=\"clip-1-heading\">clips/clip_00.wav</h2>" in text  # named relative to the page
    assert all(f"“{res['query']['prompt']}”" in text for res in results)


def test_report_of_a_folder_without_index_has_the_clips_players_only(tmp_path: Path, attributed_clips: list[Path]) -> None:
    page = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(attributed_clips[0].parent), "--out", str(page)])
    assert r.exit_code == 0, r.output
    assert page.read_text(encoding="utf-8").count("<audio") == len(attributed_clips)


def test_report_refuses_another_models_index_and_unattributed_clips(tmp_path: Path, attributed_clips: list[Path],
                                                                     tiny_index: Path) -> None:
    clip = tmp_path / "clip.wav"
    shutil.copy(attributed_clips[0], clip)
    doc = json.loads(sidecar_path(attributed_clips[0]).read_text())
    doc["model"]["fingerprint"] = "0" * 64
    sidecar_path(clip).write_text(json.dumps(doc))
    r = runner.invoke(app, ["report", str(clip), "--index", str(tiny_index), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 3 and "attributed with model 000000000000" in r.stderr and "give the index" in r.stderr
    sidecar_path(clip).unlink()
    r = runner.invoke(app, ["report", str(clip), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 3 and "no credits found" in r.stderr
    assert not (tmp_path / "r.html").exists()
