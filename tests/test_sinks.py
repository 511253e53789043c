"""Choosing credit sinks: names are checked up front, file-only sinks need a file, a veto releases nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bench.sink_result import result_doc
from tda_plugin.cli.app import app
from tda_plugin.errors import TdaError, UnknownPluginError
from tda_plugin.sinks import SinkOptions, write_credits
from tda_plugin.sinks.ledger import Ledger

runner = CliRunner()


def test_unknown_sink_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(UnknownPluginError, match=r"unknown credit sink 'sidecars' \(available: ledger, sidecar, tags"):
        write_credits(result_doc(), tmp_path / "x.wav", ["sidecars"])


def test_file_sinks_need_a_file_and_the_ledger_does_not(tmp_path: Path) -> None:
    with pytest.raises(TdaError, match="sidecar, tags write beside or into an audio file"):
        write_credits(result_doc(), None, ["sidecar", "tags", "ledger"])
    (receipt,) = write_credits(result_doc(), None, ["ledger"], SinkOptions(ledger=tmp_path / "l.sqlite"))
    assert receipt.location.endswith("(3 row(s))")
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert [r.generated for r in ledger.rows()] == [None] * 3


def test_a_vetoed_result_goes_to_no_sink(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(str(path), np.zeros(800, dtype=np.float32), 8000)
    doc = {**result_doc(), "vetoes": ["memorisation guard: too close to Track 0"]}
    assert write_credits(doc, path, ["sidecar", "ledger"], SinkOptions(ledger=tmp_path / "l.sqlite")) == []
    assert not (tmp_path / "x.wav.credits.json").exists() and not (tmp_path / "l.sqlite").exists()


def test_tda_attribute_rejects_a_misspelt_sink_before_any_work(tmp_path: Path) -> None:
    r = runner.invoke(app, ["attribute", str(tmp_path / "x.wav"), "--index", str(tmp_path), "--sink", "tag"])
    assert r.exit_code == 3 and "unknown credit sink 'tag'" in r.stderr


def test_credits_show_without_credits_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "x.flac"
    sf.write(str(path), np.zeros(800, dtype=np.float32), 8000)
    r = runner.invoke(app, ["credits", "show", str(path)])
    assert r.exit_code == 3 and "no credits found" in r.stderr and "tda attribute" in r.stderr
