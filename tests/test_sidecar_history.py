"""One sidecar name, and reruns that keep what they replace: the sidecar's history, or --overwrite."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bench.sink_result import result_doc
from tda_plugin.cli.app import app
from tda_plugin.errors import TdaError
from tda_plugin.sinks import SinkOptions, write_credits
from tda_plugin.sinks.read import read_credits
from tda_plugin.sinks.sidecar import sidecar_path

runner = CliRunner()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(str(path), np.zeros(800, dtype=np.float32), 8000)
    return path


def test_a_rerun_keeps_the_earlier_credits_in_the_history(clip: Path) -> None:
    first, second, third = result_doc(prompt="one"), result_doc(prompt="two"), result_doc(prompt="three")
    assert write_credits(first, clip)[0].location == str(sidecar_path(clip))
    (receipt,) = write_credits(second, clip)
    assert receipt.location == f"{sidecar_path(clip)} (1 earlier result(s) kept in its history)"
    write_credits(third, clip)
    stored = json.loads(sidecar_path(clip).read_text())
    assert stored["query"]["prompt"] == "three"
    assert [h["query"]["prompt"] for h in stored["history"]] == ["two", "one"]  # newest first
    assert all("replaced_at" in h and "history" not in h for h in stored["history"])
    doc, where = read_credits(clip)
    assert doc == third and where == f"{sidecar_path(clip)} (2 earlier result(s) in its history)"


def test_the_same_result_again_changes_nothing(clip: Path) -> None:
    write_credits(result_doc(), clip)
    before = sidecar_path(clip).read_bytes()
    (receipt,) = write_credits(result_doc(), clip)
    assert receipt.location == f"{sidecar_path(clip)} (unchanged)" and sidecar_path(clip).read_bytes() == before


def test_overwrite_replaces_the_file_and_its_history(clip: Path) -> None:
    write_credits(result_doc(prompt="one"), clip)
    write_credits(result_doc(prompt="two"), clip)
    (receipt,) = write_credits(result_doc(prompt="three"), clip, options=SinkOptions(overwrite=True))
    assert receipt.location == str(sidecar_path(clip))
    assert json.loads(sidecar_path(clip).read_text()) == result_doc(prompt="three")


def test_a_damaged_sidecar_is_not_replaced_silently(clip: Path) -> None:
    sidecar_path(clip).write_text("{not json")
    with pytest.raises(TdaError, match="not valid JSON.*--overwrite"):
        write_credits(result_doc(), clip)
    assert sidecar_path(clip).read_text() == "{not json"
    write_credits(result_doc(), clip, options=SinkOptions(overwrite=True))
    assert read_credits(clip)[0] == result_doc()


def test_the_demos_earlier_sidecar_name_is_still_read(clip: Path) -> None:
    clip.with_suffix(".credits.json").write_text(json.dumps(result_doc(prompt="old demo")))
    doc, where = read_credits(clip)
    assert doc["query"]["prompt"] == "old demo" and where == str(clip.with_suffix(".credits.json"))


def test_tda_attribute_overwrite(tmp_path: Path, tiny_index: Path, tiny_catalogue: Path) -> None:
    clip = tmp_path / "t0.wav"
    clip.write_bytes((tiny_catalogue / "audio" / "t0.wav").read_bytes())
    args = ["attribute", str(clip), "--index", str(tiny_index), "--prompt", "low hum", "--candidates", "all",
            "--unlearn-draws", "2", "--alpha", "1e-7"]
    said = []
    for extra in (["--top", "2"], ["--top", "3"], ["--top", "3", "--overwrite"]):
        r = runner.invoke(app, args + extra)
        assert r.exit_code == 0, r.output
        said += [line for line in r.stderr.splitlines() if "credits -> sidecar" in line]
    assert said == [f"{clip}: credits -> sidecar: {sidecar_path(clip)}",
                    f"{clip}: credits -> sidecar: {sidecar_path(clip)} (1 earlier result(s) kept in its history)",
                    f"{clip}: credits -> sidecar: {sidecar_path(clip)}"]
    stored = json.loads(sidecar_path(clip).read_text())
    assert "history" not in stored and len(stored["segments"]) == 3
