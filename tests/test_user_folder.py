"""Whatever a user's folder holds ends in a result with warnings or a one-line error, never a traceback (issue 28,
item 6), through the real CLI: sample rates and channel counts, lengths from 10 ms to an hour, WAV, FLAC,
OGG/Vorbis, MP3 and Opus, non-ASCII paths (clips, outputs, catalogue tracks), a catalogue changed or gone between
build and query, and two builds into one folder.

The sweep's clips go through one `tda attribute` call on the shared tiny index (one model load); the catalogue
cases work on a copy of a small project built here, in a folder with non-ASCII names.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import Result
from typer.testing import CliRunner

from tda_plugin import audio as audio_io
from tda_plugin.cli.app import app

from .conftest import SEGMENT, SR

runner = CliRunner()
FAST = ["--unlearn-draws", "1", "--alpha", "1e-7", "--candidates", "all", "--top", "2"]
BUILD = ["--draws", "2", "--fisher-segments", "3", "--shard-size", "4"]
FOLDER = "Ärtist – 音楽"
SHORT = "shorter than one 0.51 s segment|audio is empty"


def tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    """[frames, channels] of sines at -8 dBFS, a different pitch per channel."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * (220 + 55 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def run(args: list[str]) -> Result:
    """One `tda` command in this process; it must end as the CLI documents (0 or 3), never in a traceback."""
    r = runner.invoke(app, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code in (0, 3) and "Traceback" not in r.output, r.output
    return r


def errors(r: Result) -> list[str]:
    """The error lines on stderr; a command that fails says each failure in one line starting with `error:`."""
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


# -- the sweep: one folder, one `tda attribute` call -------------------------------------------------------


@dataclass(frozen=True)
class Input:
    name: str
    seconds: float
    rate: int = SR
    channels: int = 1
    format: str = "WAV"
    subtype: str = "PCM_16"
    #: a regular expression its one-line error matches; None: attributed
    refused: str | None = None


INPUTS = [
    *(Input(f"rate {rate} Hz, {channels} ch é.wav", 0.7, rate, channels) for rate in (8000, 11025, 22050, 44100, 48000, 96000)
      for channels in (1, 2, 6)),
    Input("format é.flac", 0.7, 48000, 2, "FLAC", "PCM_24"),
    Input("format é.ogg", 0.7, 44100, 2, "OGG", "VORBIS"),
    Input("format é.mp3", 0.7, 44100, 2, "MP3", "MPEG_LAYER_III"),
    Input("format 8 kHz é.mp3", 0.7, 8000, 1, "MP3", "MPEG_LAYER_III"),
    Input("format é.opus", 0.7, 48000, 2, "OGG", "OPUS"),
    Input("format 6 ch é.opus", 0.7, 48000, 6, "OGG", "OPUS"),  # Opus's surround overshoots full scale by +0.03 dB
    Input("length 10 ms é.wav", 0.01, refused=SHORT),
    Input("length 10 ms 96 kHz 6 ch é.flac", 0.01, 96000, 6, "FLAC", "PCM_16", refused=SHORT),
    Input("length 10 ms é.mp3", 0.01, 44100, 2, "MP3", "MPEG_LAYER_III", refused=SHORT),
    Input("length 10 ms é.opus", 0.01, 48000, 1, "OGG", "OPUS", refused=SHORT),
    Input("length half a segment é.wav", SEGMENT / SR / 2, refused=SHORT),
    Input("length one segment é.wav", SEGMENT / SR),
    Input("length ten segments é.ogg", 10 * SEGMENT / SR, 44100, 2, "OGG", "VORBIS"),
]


def write(inp: Input, folder: Path) -> str | None:
    """Write ``inp`` into ``folder``; None, or why this libsndfile cannot write it."""
    if not sf.check_format(inp.format, inp.subtype):
        return f"libsndfile {sf.__libsndfile_version__} cannot write {inp.format}/{inp.subtype}"
    sf.write(folder / inp.name, tone(inp.seconds, inp.rate, inp.channels), inp.rate, format=inp.format, subtype=inp.subtype)
    return None


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_index: Path) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sweep") / FOLDER
    folder.mkdir()
    unwritable = {inp.name: why for inp in INPUTS if (why := write(inp, folder))}
    out = folder.parent / "résultats ✓"
    r = run(["attribute", str(folder), "--index", str(tiny_index), "--prompt", "low hum", *FAST,
             "--json", str(out / "crédits é.json"), "--csv", str(out / "crédits é.csv")])
    docs = {Path(d["query"]["path"]).name: d for d in json.loads((out / "crédits é.json").read_text(encoding="utf-8"))}
    return {"folder": folder, "out": out, "result": r, "docs": docs, "unwritable": unwritable}


def test_the_sweep_is_one_call_that_reports_every_clip(sweep: dict[str, Any]) -> None:
    r, docs = sweep["result"], sweep["docs"]
    written = [inp for inp in INPUTS if inp.name not in sweep["unwritable"]]
    refused = [inp for inp in written if inp.refused]
    assert r.exit_code == (3 if refused else 0)
    assert set(docs) == {inp.name for inp in written}
    assert len(errors(r)) == len(refused)
    assert f"{len(written) - len(refused)} of {len(written)} clip(s) attributed" in r.stderr
    with open(sweep["out"] / "crédits é.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {Path(row["path"]).name for row in rows if row["status"] == "ok"} == {i.name for i in written if not i.refused}


@pytest.mark.parametrize("inp", INPUTS, ids=[i.name for i in INPUTS])
def test_each_input_is_attributed_or_refused_in_one_line(sweep: dict[str, Any], inp: Input) -> None:
    if inp.name in sweep["unwritable"]:
        pytest.skip(sweep["unwritable"][inp.name])
    doc = sweep["docs"][inp.name]
    if inp.refused:
        assert doc["status"] == "error" and re.search(inp.refused, doc["error"]) and "\n" not in doc["error"]
        said = [line for line in errors(sweep["result"]) if inp.name in line]
        assert said == [f"error: {doc['error']}"]
        return
    assert doc["status"] == "ok" and doc["credits"], doc.get("error")
    query = doc["query"]
    assert query["conformed"]["sample_rate"] == inp.rate and query["conformed"]["channels"] == inp.channels
    assert query["warnings"] == []  # a sine at -8 dBFS: nothing odd, whatever the container
    assert query["duration_s"] == pytest.approx(inp.seconds, abs=0.08)  # lossy codecs pad a little
    assert (sweep["folder"] / f"{inp.name}.credits.json").is_file()


def test_report_of_the_sweep_with_non_ascii_paths(sweep: dict[str, Any], tiny_index: Path) -> None:
    attributed = [str(sweep["folder"] / name) for name, doc in sweep["docs"].items() if doc["status"] == "ok"]
    page = sweep["out"] / "rapport é.html"
    r = run(["report", *attributed, "--index", str(tiny_index), "--out", str(page), "--audio-dir", str(sweep["out"] / "son ø")])
    assert r.exit_code == 0 and page.is_file() and not errors(r)
    assert "rate 96000 Hz, 6 ch é.wav" in page.read_text(encoding="utf-8")
    assert len(list((sweep["out"] / "son ø").iterdir())) > len(attributed)  # each clip and its segments' players


# -- an hour, and more ---------------------------------------------------------------------------------------


def sparse_wav(path: Path, seconds: float, rate: int, channels: int) -> None:
    """A 16-bit WAV of ``seconds`` of silence that takes no disk space: its header, then a hole."""
    size = int(seconds * rate) * channels * 2
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, channels, rate,
                         rate * channels * 2, channels * 2, 16, b"data", size)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + size)


def test_an_hour_is_announced_up_front_and_more_is_refused(tmp_path: Path, tiny_index: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An hour of audio is decoded and checked, then announced with its estimate before any clip is attributed.
    Its unlearning step (windows × draws in one backward pass) is where memory runs out: that is simulated, not
    run (an hour is 7032 windows of this index). Over an hour, or over an hour of 48 kHz stereo's samples, is
    refused from the header, before anything is decoded."""
    import torch

    import tda_plugin.attributor as attributor

    real = attributor.unlearning_delta

    def bounded(adapter: Any, names: Any, fisher: Any, encoded: torch.Tensor, *args: Any) -> Any:
        if encoded.shape[0] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(adapter, names, fisher, encoded, *args)

    monkeypatch.setattr(attributor, "unlearning_delta", bounded)
    folder = tmp_path / FOLDER
    folder.mkdir()
    rate = audio_io.MIN_SAMPLE_RATE  # the cheapest hour tda reads: 3.6 M samples, 28.8 M at the index's 8 kHz
    sf.write(folder / "a hour é.wav", tone(3600.0, rate, 1), rate, subtype="PCM_16")
    sf.write(folder / "b over an hour é.wav", tone(3601.0, rate, 1), rate, subtype="PCM_16")
    sparse_wav(folder / "c half an hour 96 kHz 6 ch é.wav", 1800.0, 96000, 6)
    sf.write(folder / "d short é.wav", tone(0.7, SR, 1), SR)
    r = run(["attribute", str(folder), "--index", str(tiny_index), "--prompt", "low hum", *FAST, "--sink", "none"])
    assert r.exit_code == 3
    said = errors(r)
    assert len(said) == 3
    assert "b over an hour é.wav: its header declares 1.0003 h of audio, more than the 1 h" in said[0]
    assert "c half an hour 96 kHz 6 ch é.wav: 30 min of 6-channel 96000 Hz audio is 4.1 GB decoded, more than the " \
           "1.4 GB" in said[1]
    assert "a hour é.wav: out of memory in the unlearning step, which runs its 7032 window(s) of 0.51 s under 1 draw(s)" \
           in said[2] and "--unlearn-draws" in said[2]
    lines = r.stderr.splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("note:") and "a hour é.wav" in line)
    assert "3600.0 s is 7032 windows" in lines[note] and "expect about" in lines[note]
    assert note < lines.index(said[2])  # said before the work starts
    assert "1 of 4 clip(s) attributed, 3 failed" in r.stderr


# -- the catalogue: non-ASCII, then changed or gone after the build ----------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> Path:
    """A project folder with non-ASCII names: catalogue, index built by `tda index build`, one attributed clip."""
    root = tmp_path_factory.mktemp("project") / "Projet – 目録"
    audio = root / "catalogue é" / "audio ü"
    audio.mkdir(parents=True)
    lines = (tiny_catalogue / "tracks.csv").read_text().splitlines()
    rows = [lines[0]]
    for k, line in enumerate(lines[1:]):
        shutil.copy(tiny_catalogue / "audio" / f"t{k}.wav", audio / f"piste {k} é.wav")
        rows.append(line.replace(f"audio/t{k}.wav", f"audio ü/piste {k} é.wav"))
    (root / "catalogue é" / "tracks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = run(["index", "build", str(root / "catalogue é"), "--out", str(root / "index ø"), "--ckpt", str(tiny_model[0]), *BUILD])
    assert r.exit_code == 0 and "4 tracks, 0 file(s) skipped" in r.stderr
    clip = root / "clip é.wav"
    track, _ = sf.read(audio / "piste 1 é.wav", dtype="float32")
    sf.write(clip, track[:2 * SEGMENT], SR, subtype="FLOAT")
    r = run(["attribute", str(clip), "--index", str(root / "index ø"), "--prompt", "high beep", *FAST, "--top", "10"])
    assert r.exit_code == 0
    return root


def copy_of(project: Path, tmp_path: Path) -> Path:
    """The project moved as a whole (the index finds its catalogue relative to itself)."""
    return Path(shutil.copytree(project, tmp_path / project.name))


def test_non_ascii_catalogue_builds_and_verifies(project: Path) -> None:
    r = run(["index", "verify", str(project / "index ø")])
    assert r.exit_code == 0 and "healthy" in r.stderr
    credits = json.loads((project / "clip é.wav.credits.json").read_text(encoding="utf-8"))
    assert any("piste" in c["path"] and "é" in c["path"] for c in credits["credits"])


@pytest.mark.parametrize("change", ["deleted", "shortened", "undecodable", "tracks.csv deleted"])
def test_catalogue_changed_after_the_build(project: Path, tmp_path: Path, change: str) -> None:
    """Attribution never reads the catalogue (the index holds what it needs); the report's players cut the
    catalogue's files, and leave out a track that is gone or changed, with a warning naming it."""
    root = copy_of(project, tmp_path)
    track = root / "catalogue é" / "audio ü" / "piste 1 é.wav"
    if change == "deleted":
        track.unlink()
    elif change == "shortened":
        sf.write(track, sf.read(track, dtype="float32")[0][:SEGMENT], SR)
    elif change == "undecodable":
        track.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio any more")
    else:
        (root / "catalogue é" / "tracks.csv").unlink()
    clip, index = root / "clip é.wav", root / "index ø"
    r = run(["attribute", str(clip), "--index", str(index), "--prompt", "high beep", *FAST, "--sink", "none", "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)["credits"]
    r = run(["report", str(clip), "--index", str(index), "--out", str(root / "rapport é.html")])
    assert r.exit_code == 0 and not errors(r)
    if change == "tracks.csv deleted":
        assert "WARNING" not in r.stderr
        return
    warning = " ".join(r.stderr.split())  # the log handler wraps long warnings
    why = {"deleted": "no such audio file", "shortened": "0.51 s long, not the 1.60 s it was when the index read it",
           "undecodable": "cannot decode audio"}[change]
    assert f"piste 1 é.wav: {why}" in warning and "(the report has no player for its segments)" in warning
    assert warning.count("WARNING") == 1


def test_index_rebuilt_from_a_changed_catalogue(project: Path, tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    """An edited tracks.csv is another index: refused in one line unless --overwrite; rebuilt in place, its
    segments are numbered afresh, so the report refuses clips attributed with the old one instead of playing
    other music for their segments."""
    root = copy_of(project, tmp_path)
    catalogue, index = root / "catalogue é", root / "index ø"
    lines = (catalogue / "tracks.csv").read_text(encoding="utf-8").splitlines()
    (catalogue / "tracks.csv").write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8")  # track 0 gone
    build = ["index", "build", str(catalogue), "--out", str(index), "--ckpt", str(tiny_model[0]), *BUILD]
    r = run(build)
    assert r.exit_code == 3 and errors(r) == [line for line in r.stderr.splitlines() if line]
    assert "holds an index built with other corpus_hash; use another --out or pass --overwrite" in r.stderr
    assert run([*build, "--overwrite"]).exit_code == 0
    r = run(["report", str(root / "clip é.wav"), "--index", str(index), "--out", str(root / "rapport é.html")])
    assert r.exit_code == 3 and len(errors(r)) == 1
    assert "was attributed with another index of this model" in r.stderr and not (root / "rapport é.html").exists()


def test_resumed_build_refuses_a_track_changed_since_it_was_read(project: Path, tmp_path: Path,
                                                                  tiny_model: tuple[Path, Path]) -> None:
    """A build reads each track twice, planning and encoding; a file changed in between (a resumed or repaired
    build) would misplace its segments: one line, not a traceback."""
    root = copy_of(project, tmp_path)
    index = root / "index ø"
    (index / "shards" / "shard-00000.safetensors").unlink()  # the repair re-encodes it from the catalogue
    track = root / "catalogue é" / "audio ü" / "piste 0 é.wav"
    sf.write(track, sf.read(track, dtype="float32")[0][:SEGMENT], SR)
    r = run(["index", "build", str(root / "catalogue é"), "--out", str(index), "--ckpt", str(tiny_model[0]), *BUILD])
    assert r.exit_code == 3 and len(errors(r)) == 1
    assert "piste 0 é.wav: 0.51 s long, not the 1.60 s it was when the index read it" in errors(r)[0]


# -- two builds into one folder ---------------------------------------------------------------------------------

HOLD = """
import fcntl, sys, time
fh = open(sys.argv[1], "a+")
fcntl.flock(fh, fcntl.LOCK_EX)
fh.truncate(0); fh.write("4242\\n"); fh.flush()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_build_into_the_same_folder_is_refused(project: Path, tmp_path: Path,
                                                       tiny_model: tuple[Path, Path]) -> None:
    """Another process holds the build's lock (as a running `tda index build` does): a second build of that
    folder says so in one line and touches nothing; once the first is gone, the same command goes on."""
    root = copy_of(project, tmp_path)
    index = root / "index ø"
    before = {p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and p.name != ".build.lock"}
    build = ["index", "build", str(root / "catalogue é"), "--out", str(index), "--ckpt", str(tiny_model[0]), *BUILD]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(index / ".build.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = run(build)
        assert r.exit_code == 3 and len(errors(r)) == 1
        assert "index ø: another `tda index build` is writing this index (process 4242); wait for it" in errors(r)[0]
        assert {p: p.stat().st_mtime_ns for p in before} == before
    finally:
        holder.kill()
        holder.wait()
    r = run(build)
    assert r.exit_code == 0 and "4 tracks" in r.stderr
    (tmp_path / "a file").write_text("not a folder")
    r = run([*build[:3], "--out", str(tmp_path / "a file"), *build[5:]])
    assert r.exit_code == 3 and errors(r) == [f"error: {tmp_path / 'a file'}: is a file; --out names the index's "
                                              "directory  (set TDA_DEBUG=1 for the traceback)"]
