"""`tda demo --corpus DIR` reads a real catalogue in fetch_real_music.sh's format (no captions)."""
from __future__ import annotations

from pathlib import Path

from tda_plugin.catalog import read_catalog
from tda_plugin.demo.pipeline import _with_captions

from .conftest import write_catalogue


def test_catalogue_without_captions_gets_artist_prompts(tmp_path: Path) -> None:
    corpus = write_catalogue(tmp_path / "real")
    lines = (corpus / "tracks.csv").read_text().splitlines()
    rows = [",".join(line.split(",")[:4]) + ",wesnoth" for line in lines]  # fetch_real_music.sh's columns
    rows[0] = "path,title,artist,license,source"
    (corpus / "tracks.csv").write_text("\n".join(rows) + "\n")
    out = _with_captions(corpus, tmp_path / "demo")
    tracks = read_catalog(out)
    assert out == tmp_path / "demo" / "catalogue"
    assert [t.caption for t in tracks] == [f"music by {t.artist}" for t in tracks]
    assert all(t.resolved.is_file() for t in tracks)  # paths made absolute in the copy
    assert read_catalog(corpus)[0].caption is None     # the user's catalogue is untouched


def test_catalogue_with_captions_is_used_as_is(tmp_path: Path) -> None:
    corpus = write_catalogue(tmp_path / "cat")
    assert _with_captions(corpus, tmp_path / "demo") == corpus
