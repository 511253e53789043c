"""Tests for tda_plugin.report: the HTML page must be self-contained, play back the
audio it was given, and never let track metadata inject markup."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from tda_plugin.report import (
    ClipReport,
    SegmentAudio,
    artists_table,
    credits_table,
    write_html_report,
)

SR = 8000
DATA_URI = re.compile(r'src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"')


def _result(path: str, prompt: str) -> dict:
    return {
        "query": {"path": path, "prompt": prompt, "duration_s": 1.0},
        "model": {"adapter": "stable_audio", "fingerprint": "0123456789abcdef"},
        "method": {
            "mode": "newton",
            "alpha": 1e-05,
            "steps": 3,
            "subset": "all",
            "draws": 4,
            "unlearn_draws": 2,
            "candidates": "all",
            "seed": 0,
        },
        "segments": [
            {"rank": 1, "segment_id": 11, "track_id": 1, "path": "a.wav", "title": "<b>&",
             "artist": "Ada Lovelace", "start_s": 0.0, "end_s": 0.5, "score": 3.2e-4},
            {"rank": 2, "segment_id": 22, "track_id": 2, "path": "b.wav", "title": "Second",
             "artist": "Björk", "start_s": 1.5, "end_s": 2.25, "score": -1.0e-5},
        ],
        "credits": [
            {"rank": 1, "track_id": 1, "path": "a.wav", "title": "<b>&", "artist": "Ada Lovelace",
             "license": "CC-BY", "score": 3.2e-4, "share": 0.625},
            {"rank": 2, "track_id": 2, "path": "b.wav", "title": "Second", "artist": "Björk",
             "license": "CC0", "score": -1.0e-5, "share": 0.25},
        ],
        "artists": [{"artist": "Ada Lovelace", "share": 0.625}, {"artist": "Björk", "share": 0.25}],
    }


def _noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture
def clips() -> list[ClipReport]:
    rng = np.random.default_rng(0)
    return [
        ClipReport(
            result=_result(f"gen/clip{i}.wav", f"prompt {i} with \"quotes\" & <tags>"),
            audio=_noise(rng, 1.0),
            sample_rate=SR,
            segments=[SegmentAudio(11, _noise(rng, 0.5)), SegmentAudio(22, _noise(rng, 0.75))],
        )
        for i in range(2)
    ]


@pytest.fixture
def page(tmp_path: Path, clips: list[ClipReport]) -> str:
    out = write_html_report(tmp_path / "report.html", clips)
    assert out == tmp_path / "report.html"
    return out.read_text(encoding="utf-8")


def test_writes_single_file_atomically(tmp_path: Path, clips: list[ClipReport]) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    write_html_report(target, clips)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_one_player_per_clip_and_segment(page: str, clips: list[ClipReport]) -> None:
    expected = sum(1 + len(c.segments) for c in clips)
    assert page.count("<audio") == expected
    assert len(DATA_URI.findall(page)) == expected


def test_data_uris_decode_to_wav(page: str, clips: list[ClipReport]) -> None:
    expected_lengths = []
    for clip in clips:
        expected_lengths.append(len(clip.audio))
        by_id = {s.segment_id: s for s in clip.segments}
        expected_lengths += [len(by_id[s["segment_id"]].audio) for s in clip.result["segments"]]
    decoded = []
    for payload in DATA_URI.findall(page):
        data, rate = sf.read(io.BytesIO(base64.b64decode(payload, validate=True)), dtype="float32")
        assert rate == SR
        assert data.ndim == 1
        decoded.append(len(data))
    assert decoded == expected_lengths


def test_roundtrip_audio_is_close(tmp_path: Path, clips: list[ClipReport]) -> None:
    page = write_html_report(tmp_path / "r.html", clips[:1]).read_text(encoding="utf-8")
    data, _ = sf.read(io.BytesIO(base64.b64decode(DATA_URI.findall(page)[0])), dtype="float32")
    expected = np.clip(clips[0].audio, -1, 1)
    assert np.max(np.abs(data - expected)) < 1e-3  # 16-bit quantisation only


def test_artists_shares_and_method_appear(page: str) -> None:
    assert "Ada Lovelace" in page
    assert "Björk" in page
    assert "62.5%" in page
    assert "25.0%" in page
    assert "<svg" in page
    assert "alpha=1e-05" in page
    assert "candidates=all" in page
    assert "3.2e-04" in page


def test_text_is_escaped(page: str) -> None:
    assert "<b>&" not in page
    assert "&lt;b&gt;&amp;" in page
    assert "<tags>" not in page
    assert "&lt;tags&gt;" in page


def test_no_remote_resources(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?https?://""", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_rejects_audio_for_unknown_segment(tmp_path: Path, clips: list[ClipReport]) -> None:
    clips[0].segments.append(SegmentAudio(99, np.zeros(10, np.float32)))
    with pytest.raises(ValueError, match="99"):
        write_html_report(tmp_path / "r.html", clips)
    assert not list(tmp_path.iterdir())


def test_rejects_multichannel_audio(tmp_path: Path, clips: list[ClipReport]) -> None:
    clips[0].audio = np.zeros((2, 100), np.float32)
    with pytest.raises(ValueError, match="mono"):
        write_html_report(tmp_path / "r.html", clips)


def _render(table) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def test_credits_table_renders() -> None:
    result = _result("gen/clip.wav", "a [bold]prompt[/bold]")
    text = _render(credits_table(result))
    assert "gen/clip.wav" in text
    assert "[bold]prompt[/bold]" in text  # prompts are not parsed as Rich markup
    assert "Ada Lovelace" in text and "Björk" in text
    assert "62.5%" in text and "25.0%" in text
    assert "3.2e-04" in text and "-1.0e-05" in text
    assert "CC-BY" in text


def test_credits_table_top_limits_rows() -> None:
    text = _render(credits_table(_result("q.wav", "p"), top=1))
    assert "Ada Lovelace" in text
    assert "Björk" not in text
    assert "showing 1 of 2" in text


def test_credits_table_untitled_query() -> None:
    result = _result("x", "p")
    result["query"]["path"] = None
    assert "query" in _render(credits_table(result))


def test_artists_table_renders() -> None:
    text = _render(artists_table(_result("q.wav", "p")))
    assert "Ada Lovelace" in text and "Björk" in text
    assert "62.5%" in text and "25.0%" in text
    assert "█" * 20 in text  # the largest share fills the bar
