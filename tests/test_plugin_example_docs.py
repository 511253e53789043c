"""docs/plugins.md's worked example works as written: its files are the package's, its session runs.

The package is installed with pip (tests/plugin_packages.py); each line of the documented shell session
is run as a user would (`tda ...` through the CLI app, `python -m ...` as a module), then the
documented Python generation script, in an empty directory holding only the catalogue.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tda_plugin import hookimpl, plugins
from tda_plugin.cli.app import app
from tda_plugin.sinks.ledger import Ledger
from tda_plugin.sinks.read import read_credits

from .conftest import write_catalogue
from .plugin_packages import example_plugin  # noqa: F401  (fixture)

ROOT = Path(__file__).parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text()
runner = CliRunner()


def _block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```\n", DOC, re.S)
    assert found, f"docs/plugins.md has no {marker} block"
    return found.group(1)


def test_the_documented_files_are_the_package_files() -> None:
    shown = dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```\n", DOC, re.S))
    package = ROOT / "tests" / "plugin_example"
    files = sorted(str(p.relative_to(ROOT)) for p in package.rglob("*") if p.suffix in (".py", ".toml")
                   and not any(part in ("build",) or part.endswith(".egg-info") for part in p.parts))
    assert sorted(shown) == files
    for path, text in shown.items():
        assert (ROOT / path).read_text() == text, f"docs/plugins.md shows an outdated {path}"


def _run(line: str) -> int:
    expected = int(m.group(1)) if (m := re.search(r"#.*exit code (\d+)", line)) else 0
    words = shlex.split(line, comments=True)
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if words[:2] == ["pip", "install"]:
        assert words[2:] == ["./tests/plugin_example"]  # the example_plugin fixture pip-installed exactly this
        return expected
    if words[0] == "tda":
        r = runner.invoke(app, words[1:], env=env)
        assert r.exit_code == expected, f"{line}\n{r.output}"
        return r.exit_code
    assert words[:2] == ["python", "-m"] and not env, line
    argv = sys.argv
    sys.argv = [words[2], *words[3:]]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(words[2], run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
    return 0


class IndexObserver:
    def __init__(self) -> None:
        self.built: list[tuple[str, str, int]] = []

    @hookimpl
    def tda_index_built(self, index_dir, info):
        self.built.append((index_dir, info["adapter"], info["segments"]))


def test_the_documented_session_works(example_plugin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TDA_MAX_SHARE", raising=False)
    write_catalogue(tmp_path / "corpus")
    observer = IndexObserver()
    plugins.get_plugin_manager().register(observer, name="index_observer")
    try:
        codes = [_run(ln) for ln in _block("session").splitlines() if ln.strip()]
    finally:
        plugins.get_plugin_manager().unregister(observer)
    assert codes[-1] == 4 and not any(codes[:-1])
    assert observer.built == [("idx", "tiny-conv", 12)]

    doc, where = read_credits(tmp_path / "gen.wav")
    assert where == f"tags of {tmp_path / 'gen.wav'}" and doc["model"]["adapter"] == "tiny-conv"
    assert doc["method"]["embedder"] == "band_energy" and doc["method"]["training_segments"] == 12
    with Ledger(tmp_path / "credits.sqlite") as ledger:
        rows = list(ledger.rows())
    assert len(rows) == len(doc["credits"]) and {r.generated for r in rows} == {str(tmp_path / "gen.wav")}
    exported = list(csv.DictReader((tmp_path / "credits.csv").open()))
    assert [r["title"] for r in exported] == [c["title"] for c in doc["credits"]]
    statement = [json.loads(ln) for ln in (tmp_path / "royalties.jsonl").read_text().splitlines()]
    assert {s["artist"] for s in statement} == {a["artist"] for a in doc["artists"]}

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(_block("python-session"), "docs/plugins.md", "exec"), {"__name__": "__docs__"})
    assert printed.getvalue().count("['tags', 'ledger']") == 2
    for i, prompt in enumerate(["low hum", "high beep"]):
        doc, where = read_credits(tmp_path / "out" / f"clip_{i}.flac")
        assert where.startswith("tags of") and doc["query"]["prompt"] == prompt
    with Ledger(tmp_path / "credits.sqlite") as ledger:
        assert len({r.generated for r in ledger.rows()}) == 3
