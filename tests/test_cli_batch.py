"""`tda attribute` on folders: one model load, every clip checked first, one bad clip skipped and reported,
prompts and timing from --prompt / --prompts / what is stored with the clip, per-clip JSON status, CSV."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tda_plugin.cli.app import app

runner = CliRunner()
FAST = ["--unlearn-draws", "2", "--alpha", "1e-7", "--candidates", "all", "--top", "3"]


@pytest.fixture()
def clips(tmp_path: Path, tiny_catalogue: Path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    for k in (0, 1):
        shutil.copy(tiny_catalogue / "audio" / f"t{k}.wav", folder / f"c{k}.wav")
    return folder


def test_a_folder_with_bad_files(clips: Path, tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tda_plugin.attributor as attributor

    (clips / "b_garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    nan = np.sin(np.arange(16000) / 5.0).astype(np.float32)
    nan[100] = np.nan
    sf.write(clips / "d_nan.wav", nan, 8000, subtype="FLOAT")
    (clips / "notes.txt").write_text("not a clip")
    loads = []
    real = attributor.load_adapter
    monkeypatch.setattr(attributor, "load_adapter", lambda *a, **k: loads.append(1) or real(*a, **k))
    out = clips.parent / "out.json"
    r = runner.invoke(app, ["attribute", str(clips), "--index", str(tiny_index), "--prompt", "low hum", *FAST,
                            "--json", str(out)])
    assert r.exit_code == 3, r.output
    assert len(loads) == 1
    docs = json.loads(out.read_text())
    assert [Path(d["query"]["path"]).name for d in docs] == ["b_garbage.wav", "c0.wav", "c1.wav", "d_nan.wav"]
    assert [d["status"] for d in docs] == ["error", "ok", "ok", "error"]
    assert "cannot decode audio" in docs[0]["error"] and "NaN or infinite" in docs[3]["error"]
    assert all(len(d["credits"]) >= 1 for d in docs if d["status"] == "ok")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in r.stderr
    first_credit = next(i for i, line in enumerate(r.stderr.splitlines()) if "credits -> sidecar" in line)
    assert all(r.stderr.splitlines().index(e) < first_credit for e in errors)  # checked before any attribution
    assert (clips / "c0.wav.credits.json").is_file() and (clips / "c1.wav.credits.json").is_file()
    assert "2 of 4 clip(s) attributed, 2 failed" in r.stderr


def test_conditioning_comes_from_the_command_line_the_csv_or_the_clip(clips: Path, tiny_index: Path) -> None:
    """A clip attributed once (its result stored beside it) re-attributes to the same scores with no options."""
    from tda_plugin import AttributeSettings, Attributor, UnlearnSettings
    from tda_plugin.sinks import write_credits

    settings = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), top=3, candidates="all")
    stored = Attributor.from_index(tiny_index).attribute_file(clips / "c0.wav", prompt="high beep", settings=settings,
                                                              seconds_start=0.25, seconds_total=3.0).to_dict()
    write_credits(stored, clips / "c0.wav", ["sidecar"])

    r = runner.invoke(app, ["attribute", str(clips / "c0.wav"), "--index", str(tiny_index), *FAST, "--sink", "none",
                            "--json", "-"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["query"]["prompt"] == "high beep" and again["query"]["seconds_start"] == 0.25
    assert again["query"]["seconds_total"] == 3.0
    assert again["query"]["conditioning_from"] == {"prompt": "sidecar", "seconds_start": "sidecar", "seconds_total": "sidecar"}
    assert [s["score"] for s in again["segments"]] == [s["score"] for s in stored["segments"]]  # bit for bit

    table = clips.parent / "prompts.csv"
    table.write_text("path,prompt,seconds_total\nclips/c0.wav,low hum,\nclips/c1.wav,high beep,2.5\nclips/gone.wav,x,\n")
    r = runner.invoke(app, ["attribute", str(clips), "--index", str(tiny_index), *FAST, "--sink", "none",
                            "--prompts", str(table), "--json", "-"])
    assert r.exit_code == 0, r.output
    c0, c1 = json.loads(r.stdout)
    assert c0["query"]["prompt"] == "low hum" and c0["query"]["seconds_total"] == 3.0  # CSV prompt, stored timing
    assert c0["query"]["conditioning_from"] == {"prompt": "prompts.csv", "seconds_start": "sidecar", "seconds_total": "sidecar"}
    assert c1["query"]["prompt"] == "high beep" and c1["query"]["seconds_total"] == 2.5
    assert "1 row(s) of" in r.stderr and "name no clip" in r.stderr

    r = runner.invoke(app, ["attribute", str(clips), "--index", str(tiny_index), *FAST, "--sink", "none",
                            "--prompts", str(table), "--prompt", "given", "--seconds-total", "9", "--json", "-"])
    assert [d["query"]["prompt"] for d in json.loads(r.stdout)] == ["given", "given"]
    assert {d["query"]["conditioning_from"]["seconds_total"] for d in json.loads(r.stdout)} == {"command line"}

    r = runner.invoke(app, ["attribute", str(clips / "c1.wav"), "--index", str(tiny_index), *FAST, "--sink", "none",
                            "--json", "-"])
    assert r.exit_code == 0, r.output
    bare = json.loads(r.stdout)
    assert bare["query"]["prompt"] is None and bare["query"]["seconds_total"] == pytest.approx(1.6)
    assert bare["query"]["conditioning_from"]["prompt"] == "default"
    assert "c1.wav: no prompt" in r.stderr and "attributed on the model's null branch" in r.stderr
    assert bare["method"]["conditioning"] == "unconditional"  # the JSON says which mode answered


def test_csv_output_and_stdout_rules(clips: Path, tiny_index: Path) -> None:
    (clips / "z_short.wav").write_bytes(b"")
    sf.write(clips / "z_short.wav", np.zeros(100, np.float32) + 0.1 * np.sin(np.arange(100)), 8000)
    r = runner.invoke(app, ["attribute", str(clips), "--index", str(tiny_index), "--prompt", "low hum", *FAST,
                            "--sink", "none", "--csv", "-"])
    assert r.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(Path(row["path"]).name, row["status"]) for row in rows if row["rank"] in ("1", "")] == \
        [("c0.wav", "ok"), ("c1.wav", "ok"), ("z_short.wav", "error")]
    assert "shorter than one" in rows[-1]["error"] and rows[0]["prompt"] == "low hum"
    c0 = [row for row in rows if row["path"].endswith("c0.wav")]  # one row per credited track, ranked
    assert [row["rank"] for row in c0] == [str(k + 1) for k in range(len(c0))] and all(row["artist"] for row in c0)
    r = runner.invoke(app, ["attribute", str(clips), "--index", str(tiny_index), "--json", "-", "--csv", "-"])
    assert r.exit_code == 3 and "both write to stdout" in r.stderr


def test_sinks_none_and_small_things(clips: Path, tiny_index: Path) -> None:
    clip = str(clips / "c0.wav")
    r = runner.invoke(app, ["attribute", clip, "--index", str(tiny_index), "--prompt", "low hum", *FAST, "--sink", "none"])
    assert r.exit_code == 0 and not (clips / "c0.wav.credits.json").exists()
    r = runner.invoke(app, ["attribute", clip, "--index", str(tiny_index), "--sink", "none", "--sink", "ledger"])
    assert r.exit_code == 3 and "cannot be combined" in r.stderr
    r = runner.invoke(app, ["attribute", clip, "--index", str(tiny_index), "--sink", "sidecars"])
    assert r.exit_code == 3 and "unknown credit sink 'sidecars'" in r.stderr and "'none' for no sink" in r.stderr
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("tda-plugin ")
    r = runner.invoke(app, ["credits", "show", str(clips)])
    assert r.exit_code == 3 and "is a directory" in r.stderr
    r = runner.invoke(app, ["attribute", str(clips.parent / "empty"), "--index", str(tiny_index)])
    assert r.exit_code == 3 and "no such audio file" in r.stderr
    (clips.parent / "empty").mkdir()
    r = runner.invoke(app, ["attribute", str(clips.parent / "empty"), "--index", str(tiny_index)])
    assert r.exit_code == 3 and "no audio files in this folder" in r.stderr
