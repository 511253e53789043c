"""What reaches the terminal: our lines yes, third parties' prints, tqdm bars and warnings only with -v; user
text printed as written (no Rich markup); import failures named by their real cause; a light `tda --help`."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tda_plugin.cli import console
from tda_plugin.cli.app import app
from tda_plugin.errors import import_failure

runner = CliRunner()


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_output_only_with_verbose(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                              verbose: bool) -> None:
    monkeypatch.setattr(console, "verbose", verbose)
    with warnings.catch_warnings(record=True) as shown:  # where Python would show warnings (pytest records them)
        warnings.simplefilter("always")
        with console.session():
            print("toolkit seed print")
            sys.stderr.write("  3%|▎         | 1/30 [00:00<00:03]\n")  # what tqdm writes
            warnings.warn("a library warning", RuntimeWarning)
            console.err.print("our own line")
            console.write_data("data\n")
    captured = capsys.readouterr()
    assert "our own line" in captured.err and captured.out.endswith("data\n")
    for noise in ("toolkit seed print", "1/30"):
        assert (noise in captured.out + captured.err) == verbose
    assert [str(w.message) for w in shown] == (["a library warning"] if verbose else [])


def test_user_text_is_not_rich_markup(tmp_path: Path) -> None:
    r = runner.invoke(app, ["credits", "show", str(tmp_path / "clip [stable-audio] [bold]x[/bold].wav")])
    assert r.exit_code == 3 and "clip [stable-audio] [bold]x[/bold].wav: no such audio file" in r.stderr


def test_import_failures_name_their_cause(monkeypatch: pytest.MonkeyPatch, tiny_model: tuple[Path, Path],
                                          tiny_catalogue: Path, tmp_path: Path) -> None:
    missing = import_failure(ModuleNotFoundError("No module named 'stable_audio_tools'", name="stable_audio_tools"),
                             "stable-audio-tools", "stable_audio_tools", "pip install stable-audio-tools")
    assert str(missing) == "stable-audio-tools is not installed (pip install stable-audio-tools)"
    broken = import_failure(ModuleNotFoundError("No module named 'pkg_resources'", name="pkg_resources"),
                            "stable-audio-tools", "stable_audio_tools", "pip install stable-audio-tools")

    import tda_plugin.adapters.stable_audio_adapter as sa

    def fail() -> None:
        raise broken

    monkeypatch.setattr(sa, "_toolkit", fail)
    r = runner.invoke(app, ["index", "build", str(tiny_catalogue), "--out", str(tmp_path / "i"), "--ckpt", str(tiny_model[0])])
    assert r.exit_code == 3
    assert "stable-audio-tools is installed but failed to import: No module named 'pkg_resources'; " \
           "pip install 'setuptools<81'" in r.stderr


def test_help_and_version_import_nothing_heavy() -> None:
    """`tda --help` answers at once: the CLI module imports neither torch nor FAISS nor scipy (docs/cli.md: timing)."""
    code = ("import sys, tda_plugin.cli.app; heavy = [m for m in ('torch', 'faiss', 'scipy', 'soundfile', "
            "'safetensors', 'stable_audio_tools') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_full_disk_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """However the library that hit it words it, a full disk is one line and exit 3 (bench/full_disk.py: the real thing)."""
    import errno
    import sqlite3

    from safetensors import SafetensorError

    from tda_plugin import atomic
    from tda_plugin.cli.errors import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device", "x"))
    assert disk_full(sqlite3.OperationalError("database or disk is full"))
    assert disk_full(SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                     "\"No space left on device\" })"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))

    def full(target: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    from tda_plugin.sinks.ledger import Ledger

    Ledger(tmp_path / "ledger.sqlite").close()  # an existing, empty ledger to export
    monkeypatch.setattr(atomic, "write_bytes", full)
    monkeypatch.setenv("TDA_LEDGER", str(tmp_path / "ledger.sqlite"))
    r = runner.invoke(app, ["credits", "export", "--out", str(tmp_path / "out.csv")])
    assert r.exit_code == 3 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: no space left on the device writing") and "rerun" in r.stderr


def test_long_stages_write_progress_lines_when_stderr_is_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a batch scheduler (stderr a file) a counted stage reports done/total and time left as plain lines,
    paced by TDA_PROGRESS_EVERY; TDA_NO_PROGRESS silences them; open-ended stages never write lines."""
    import io

    from rich.console import Console

    from tda_plugin import progress

    log = io.StringIO()
    monkeypatch.setattr(progress, "stderr", Console(file=log, force_terminal=False, width=200))
    monkeypatch.delenv("TDA_NO_PROGRESS", raising=False)
    monkeypatch.setenv("TDA_PROGRESS_EVERY", "0")
    with progress.stage("training the autoencoder (4 steps)", total=4) as advance:
        for _ in range(4):
            advance(1)
    with progress.stage("loading the model") as advance:
        advance(1)
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("training the autoencoder (4 steps): 4/4 (100 %), ")
    assert "1/4 (25 %)" in lines[0] and lines[0].endswith(" left")

    monkeypatch.setenv("TDA_PROGRESS_EVERY", "3600")  # paced: nothing within the hour
    with progress.stage("scoring", total=2) as advance:
        advance(2)
    monkeypatch.setenv("TDA_PROGRESS_EVERY", "0")
    monkeypatch.setenv("TDA_NO_PROGRESS", "1")
    with progress.stage("scoring", total=2) as advance:
        advance(2)
    assert len(log.getvalue().splitlines()) == 4
