"""The credits ledger: append-only, answers "what did artist A get credited for?", survives concurrent writers."""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.sink_result import result_doc
from tda_plugin.cli.app import app
from tda_plugin.sinks.ledger import Ledger, default_ledger_path

from .ledger_writer import append_many

runner = CliRunner()


def test_rows_keep_model_and_method_and_cannot_be_changed(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.append(result_doc(), tmp_path / "gen.wav") == 3
        rows = list(ledger.rows())
        assert [r.rank for r in rows] == [1, 2, 3] and len({r.attribution_id for r in rows}) == 1
        first = rows[0].to_dict()
        assert first["generated"] == str((tmp_path / "gen.wav").resolve()) and first["model_fingerprint"] == "f" * 64
        assert first["method"]["alpha"] == 1e-7 and first["artist"] == "Ärtist 0" and first["share"] == 0.5
        for sql in ("UPDATE credits SET share = 1", "DELETE FROM credits"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                ledger._db.execute(sql)
        assert len(list(ledger.rows())) == 3


def test_ledger_location_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDA_LEDGER", str(tmp_path / "env.sqlite"))
    assert default_ledger_path() == tmp_path / "env.sqlite"
    with Ledger() as ledger:
        ledger.append(result_doc(), None)
    r = runner.invoke(app, ["credits", "list"])
    assert r.exit_code == 0 and "3 credit(s)" in r.stdout
    monkeypatch.delenv("TDA_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_ledger_path() == tmp_path / "data" / "tda-plugin" / "credits.sqlite"


def test_list_and_export_answer_what_an_artist_was_credited_for(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    with Ledger(db) as ledger:
        ledger.append(result_doc(prompt="one"), tmp_path / "a.wav")
        ledger.append(result_doc(prompt="two", artists=("Someone Else",)), tmp_path / "b.wav")
    r = runner.invoke(app, ["credits", "list", "--ledger", str(db), "--artist", "Artist 1"])
    assert r.exit_code == 0, r.output
    assert "1 credit(s) of Artist 1" in r.stdout and "a.wav" in r.stdout and "b.wav" not in r.stdout

    r = runner.invoke(app, ["credits", "export", "--ledger", str(db), "--format", "csv", "--artist", "Ärtist 0"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(row["prompt"], row["title"], float(row["share"])) for row in rows] == [("one", "Track 0", 0.5), ("one", "Track 2", 0.2)]
    assert json.loads(rows[0]["method"])["subset"] == "blocks"

    out = tmp_path / "all.json"
    r = runner.invoke(app, ["credits", "export", "--ledger", str(db), "--format", "json", "--out", str(out)])
    assert r.exit_code == 0 and len(json.loads(out.read_text())) == 6
    r = runner.invoke(app, ["credits", "export", "--ledger", str(db), "--format", "json", "--since", "2999-01-01"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = runner.invoke(app, ["credits", "export", "--ledger", str(db), "--since", "2020-01-01T00:00:00+02:00", "--format", "json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 6
    r = runner.invoke(app, ["credits", "list", "--ledger", str(db), "--since", "last tuesday"])
    assert r.exit_code == 3 and "is not a date" in r.stderr
    r = runner.invoke(app, ["credits", "export", "--ledger", str(db), "--format", "xml"])
    assert r.exit_code == 3 and "unknown export format 'xml'" in r.stderr


def test_two_processes_writing_at_once_lose_no_rows(tmp_path: Path) -> None:
    db, per_worker = tmp_path / "shared.sqlite", 150
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=append_many, args=(str(db), w, per_worker, start, out)) for w in (0, 1)]
    for p in workers:
        p.start()
    spans = sorted(out.get(timeout=120) for _ in workers)
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    (_, a0, a1), (_, b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans  # the two writers really overlapped in time
    with Ledger(db) as ledger:
        rows = list(ledger.rows())
    assert len(rows) == 2 * per_worker * 3 and len({r.attribution_id for r in rows}) == 2 * per_worker
    assert {r.prompt for r in rows} == {f"w{w}/{i}" for w in (0, 1) for i in range(per_worker)}


def test_listing_a_missing_ledger_says_so_and_creates_nothing(tmp_path: Path) -> None:
    for command in (["credits", "list"], ["credits", "export"]):
        r = runner.invoke(app, [*command, "--ledger", str(tmp_path / "none" / "l.sqlite")])
        assert r.exit_code == 3 and "no credits ledger here" in r.stderr and "tda attribute --sink ledger" in r.stderr
    assert not (tmp_path / "none").exists()
