"""Tests for tda_plugin.report: the HTML page must be self-contained, play back the
audio it was given, explain itself, and never let track metadata inject markup."""

from __future__ import annotations

import base64
import html.parser
import io
import re
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console
from scipy.signal import resample_poly

from tda_plugin.report import (
    ClipReport,
    SegmentAudio,
    artist_totals,
    artists_table,
    credits_table,
    encode_audio,
    render_html,
    write_html_report,
)

SR = 8000
DATA_URI = re.compile(r'src="data:audio/mpeg;base64,([A-Za-z0-9+/=]+)"')


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


def _tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A tone of random pitch with a little noise: lossy coding keeps its waveform, unlike white noise's."""
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.4 * np.sin(2 * np.pi * rng.uniform(200, 600) * t) + 0.01 * rng.standard_normal(t.size)
    return tone.astype(np.float32)


@pytest.fixture
def clips() -> list[ClipReport]:
    rng = np.random.default_rng(0)
    return [
        ClipReport(
            result=_result(f"gen/clip{i}.wav", f"prompt {i} with \"quotes\" & <tags>"),
            audio=_tone(rng, 1.0),
            sample_rate=SR,
            segments=[SegmentAudio(11, _tone(rng, 0.5)), SegmentAudio(22, _tone(rng, 0.75))],
        )
        for i in range(2)
    ]


class _Elements(html.parser.HTMLParser):
    """Attributes of the elements named, and the text of each table, as a browser's DOM would hold them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.audio: list[dict[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "audio":
            self.audio.append({k: v or "" for k, v in attrs})
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def page(tmp_path: Path, clips: list[ClipReport]) -> str:
    out = write_html_report(tmp_path / "report.html", clips, summary=[("Prompted artist credited first", "1 of 2 <clips>")])
    assert out == tmp_path / "report.html"
    return out.read_text(encoding="utf-8")


def test_writes_single_file_atomically(tmp_path: Path, clips: list[ClipReport]) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    write_html_report(target, clips)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_one_mp3_player_per_clip_and_segment(page: str, clips: list[ClipReport]) -> None:
    expected = sum(1 + len(c.segments) for c in clips)
    assert page.count("<audio") == expected
    assert len(DATA_URI.findall(page)) == expected


def test_players_play_the_audio_they_were_given(page: str, clips: list[ClipReport]) -> None:
    """MP3 at 16 kHz (8 kHz is only in the unofficial MPEG-2.5): same length at the new rate, same waveform."""
    given = []
    for clip in clips:
        by_id = {s.segment_id: s.audio for s in clip.segments}
        given += [clip.audio] + [by_id[s["segment_id"]] for s in clip.result["segments"]]
    for payload, original in zip(DATA_URI.findall(page), given, strict=True):
        data, rate = sf.read(io.BytesIO(base64.b64decode(payload, validate=True)), dtype="float32")
        assert rate == 16000 and data.ndim == 1
        reference = resample_poly(original, 2, 1)
        assert len(data) == len(reference)
        assert np.corrcoef(data, reference)[0, 1] > 0.99


def test_audio_at_an_mpeg_rate_is_not_resampled() -> None:
    rate = 44100
    audio = np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate).astype(np.float32)
    data, mime = encode_audio(audio, rate, "tone")
    decoded, decoded_rate = sf.read(io.BytesIO(data), dtype="float32")
    assert mime == "audio/mpeg" and decoded_rate == rate and len(decoded) == len(audio)


def test_without_mp3_the_audio_is_ogg_vorbis(monkeypatch: pytest.MonkeyPatch) -> None:
    from tda_plugin import report

    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(report.sf, "available_formats", lambda: formats)
    report._can_write_mp3.cache_clear()
    try:
        data, mime = encode_audio(np.zeros(800, np.float32), SR, "silence")
    finally:
        report._can_write_mp3.cache_clear()
    assert mime == "audio/ogg" and sf.info(io.BytesIO(data)).subtype == "VORBIS"


def test_players_are_named_after_what_they_play(page: str) -> None:
    labels = [a["aria-label"] for a in _Elements(page).audio]
    assert labels[0] == 'Generated clip 1: gen/clip0.wav, prompt “prompt 0 with "quotes" & <tags>”'
    assert labels[1] == "Training segment ranked 1 for clip 1: <b>& by Ada Lovelace, 0.0–0.5 s"
    assert labels[2] == "Training segment ranked 2 for clip 1: Second by Björk, 1.5–2.2 s"
    assert labels[3].startswith("Generated clip 2: gen/clip1.wav")


def test_page_explains_credit_score_and_share_before_the_clips(page: str) -> None:
    explained = page.index("How to read this report")
    assert explained < page.index('id="clip-1"')
    for words in ("<dt>Credit</dt>", "<dt>Score</dt>", "<dt>Share</dt>", "positive scores of the clip's credited tracks",
                  "not a royalty split"):
        assert page.index(words) > explained


def test_summary_figures_are_shown_first(page: str) -> None:
    figure = page.index("<dt>Prompted artist credited first</dt><dd>1 of 2 &lt;clips&gt;</dd>")
    assert page.index("<h1>") < figure < page.index("How to read this report")


def test_artist_shares_are_tables_per_clip_and_across_clips(page: str) -> None:
    tables = _Elements(page).tables
    totals = tables[0]
    assert totals[0] == ["Artist", "Mean share", "Credited in", "First in"]
    assert totals[1:] == [["Ada Lovelace", "62.5%", "2", "2"], ["Björk", "25.0%", "2", "0"]]
    per_clip = [t for t in tables if t[0] == ["Artist", "Share", "Stays first"]]
    assert len(per_clip) == 2 and per_clip[0][1:] == [["Ada Lovelace", "62.5%", "–"], ["Björk", "25.0%", "–"]]
    assert page.count("<caption>") == 1 + 2 * 2  # the totals, and per clip its credits and its artist shares


def test_artist_totals_average_over_clips() -> None:
    a = {"artists": [{"artist": "A", "share": 0.75}, {"artist": "B", "share": 0.25}]}
    b = {"artists": [{"artist": "C", "share": 1.0}]}
    nothing = {"artists": [{"artist": "A", "share": 0.0}]}  # no positive score: nobody first
    totals = artist_totals([a, b, nothing])
    assert [(t.artist, round(t.mean_share, 6), t.credited_in, t.first_in) for t in totals] == [
        ("C", round(1 / 3, 6), 1, 1), ("A", 0.25, 2, 1), ("B", round(0.25 / 3, 6), 1, 0)]


def test_method_settings_are_listed(page: str) -> None:
    assert "<dt>alpha</dt><dd>1e-05</dd>" in page and "<dt>candidates</dt><dd>all</dd>" in page
    assert "3.2e-04" in page and "-1.0e-05" in page


def test_text_is_escaped(page: str) -> None:
    assert "<b>&" not in page
    assert "&lt;b&gt;&amp;" in page
    assert "<tags>" not in page
    assert "&lt;tags&gt;" in page


def test_template_syntax_in_metadata_is_text(tmp_path: Path, clips: list[ClipReport]) -> None:
    clips[0].result["query"]["prompt"] = "{{ 7 * 7 }} {% if true %}x{% endif %} </style><script>alert(1)</script>"
    page = write_html_report(tmp_path / "r.html", clips).read_text(encoding="utf-8")
    assert ('<p class="prompt">“{{ 7 * 7 }} {% if true %}x{% endif %} &lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;”</p>'
            in page)
    assert "<script" not in page


def test_no_remote_resources(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?https?://""", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_audio_beside_the_page(tmp_path: Path, clips: list[ClipReport]) -> None:
    page_path = write_html_report(tmp_path / "out" / "report.html", clips, audio_dir=tmp_path / "out" / "report_audio")
    page = page_path.read_text(encoding="utf-8")
    srcs = [a["src"] for a in _Elements(page).audio]
    assert "data:" not in page and srcs[:3] == ["report_audio/clip01.mp3", "report_audio/clip01-segment01.mp3",
                                                "report_audio/clip01-segment02.mp3"]
    for src in srcs:
        assert sf.info(str(page_path.parent / src)).format == "MP3"
    assert page_path.stat().st_size < 20_000


def test_a_demo_shaped_page_stays_under_1_mb(tmp_path: Path) -> None:
    """The demo's shape: 4 clips of 2.048 s at 8 kHz, each with its 10 top segments of 2.048 s (the demo's music)."""
    from tda_plugin.demo.synth import STYLES, render_track

    rng = np.random.default_rng(0)
    n = 16384
    tracks = [render_track(style, 0, 2.1, SR, seed=0) for style in STYLES[:4]]
    clips = []
    for k, track in enumerate(tracks):
        result = _result(f"clips/clip_{k:02d}.wav", STYLES[k].prompt)
        result["segments"] = [{**result["segments"][0], "rank": r + 1, "segment_id": r} for r in range(10)]
        noisy = track[:n] + 0.05 * rng.standard_normal(n).astype(np.float32)  # generated clips are noisier
        segments = [SegmentAudio(r, np.roll(tracks[r % 4], r * 997)[:n]) for r in range(10)]
        clips.append(ClipReport(result, noisy, SR, segments))
    page = write_html_report(tmp_path / "report.html", clips)
    assert page.read_text(encoding="utf-8").count("<audio") == 44
    assert page.stat().st_size < 1_000_000, page.stat().st_size


def test_template_ships_as_package_data() -> None:
    assert resources.files("tda_plugin").joinpath("templates", "report.html.j2").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "templates/*" in pyproject["tool"]["setuptools"]["package-data"]["tda_plugin"]


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


def _with_stability(track: float, artist: float = 1.0) -> dict:
    result = _result("q.wav", "p")
    result["method"]["stability"] = {"resamples": 1000, "of": "the 4 loss draws", "settled_at": 0.9}
    result["credits"][0]["first_share"], result["credits"][1]["first_share"] = track, 1.0 - track
    result["artists"][0]["first_share"], result["artists"][1]["first_share"] = artist, 1.0 - artist
    return result


def test_an_unsettled_first_credit_is_flagged_in_the_table_and_on_the_page() -> None:
    unsettled = _render(credits_table(_with_stability(0.62)))
    assert "62.0%" in unsettled and "38.0%" in unsettled and "first track is not settled" in unsettled
    assert "first artist is not settled" in _render(credits_table(_with_stability(0.62, 0.7)))
    settled = _render(credits_table(_with_stability(0.95)))
    assert "95.0%" in settled and "not settled" not in settled
    assert "70.0%" in _render(artists_table(_with_stability(0.62, 0.7)))
    assert "–" in _render(credits_table(_result("q.wav", "p")))  # a result stored before stability was recorded
    rng = np.random.default_rng(0)

    def page(result: dict) -> str:
        return render_html([ClipReport(result=result, audio=_tone(rng, 1.0), sample_rate=SR, segments=[])])

    assert "first artist is not settled" in page(_with_stability(0.95, 0.7)) and "<dt>Stays first</dt>" in page(_result("q", "p"))
    assert "first track is not settled" in page(_with_stability(0.62))
    assert "not settled" not in page(_with_stability(0.95))
