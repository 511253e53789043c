"""Human-facing views of an attribution result: Rich tables for the terminal and a
single self-contained HTML page for sharing.

An attribution result is the plain JSON-serialisable dict produced by the attribution
pipeline (``query``, ``model``, ``method``, ``segments``, ``credits``, ``artists``).
Keeping this module dependent on that dict only, rather than on the pipeline's
objects, lets a saved ``result.json`` be re-rendered later without a model loaded.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from rich.table import Table
from rich.text import Text

__all__ = [
    "ClipReport",
    "SegmentAudio",
    "artists_table",
    "credits_table",
    "write_html_report",
]

_BAR_BLOCKS = " ▏▎▍▌▋▊▉█"
_BAR_WIDTH = 20


@dataclass
class SegmentAudio:
    """Audio of one training segment, so listeners can compare it with the clip."""

    segment_id: int
    audio: np.ndarray  # float32 mono


@dataclass
class ClipReport:
    """Everything the HTML report needs for one generated clip."""

    result: dict
    audio: np.ndarray  # the generated clip, float32 mono
    sample_rate: int
    segments: list[SegmentAudio]  # matched to result["segments"] by segment_id


# --------------------------------------------------------------------------- formatting


def _fmt_score(score: float) -> str:
    """Scores span many orders of magnitude and may be negative, so use 2-digit scientific."""
    return f"{float(score):.1e}"


def _fmt_share(share: float) -> str:
    """Shares are fractions of the attribution mass; people read percentages."""
    return f"{100.0 * float(share):.1f}%"


def _fmt_param(value: Any) -> str:
    """Floats like alpha are shown compactly (1e-05, not 1.0000000000000001e-05)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _query_label(result: Mapping[str, Any]) -> str:
    """The query's path when it came from a file, else a generic name."""
    query = result.get("query") or {}
    return str(query.get("path") or "query")


def _method_items(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Hyper-parameters in the order the pipeline recorded them, so reports stay comparable."""
    method = result.get("method") or {}
    return [(str(k), _fmt_param(v)) for k, v in method.items()]


def _unicode_bar(fraction: float, width: int = _BAR_WIDTH) -> str:
    """A bar with eighth-cell resolution, so close shares remain distinguishable."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    bar = "█" * full + (_BAR_BLOCKS[rest] if rest else "")
    return bar.ljust(width)


def _max_share(artists: Sequence[Mapping[str, Any]]) -> float:
    """Bars are scaled to the largest share so that small shares are still visible."""
    return max((float(a["share"]) for a in artists), default=0.0)


# --------------------------------------------------------------------------- Rich tables


def credits_table(result: dict, *, top: int = 10) -> Table:
    """Top credited training tracks for one query, for display in the terminal.

    User-supplied strings are wrapped in ``Text`` so that brackets in titles or prompts
    are not interpreted as Rich markup.
    """
    query = result.get("query") or {}
    title = Text(_query_label(result), style="bold")
    if query.get("prompt"):
        title.append(f"\n“{query['prompt']}”", style="italic")
    credits = list(result.get("credits") or [])
    shown = credits[:top]

    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right", style="dim")
    table.add_column("artist", style="cyan")
    table.add_column("title")
    table.add_column("licence", style="magenta")
    table.add_column("score", justify="right")
    table.add_column("share", justify="right", style="green")
    for credit in shown:
        table.add_row(
            str(credit["rank"]),
            Text(str(credit["artist"])),
            Text(str(credit["title"])),
            Text(str(credit.get("license", ""))),
            _fmt_score(credit["score"]),
            _fmt_share(credit["share"]),
        )
    if len(credits) > len(shown):
        table.caption = f"showing {len(shown)} of {len(credits)} credited tracks"
    return table


def artists_table(result: dict) -> Table:
    """Attribution share per artist, with a bar so the distribution is visible at a glance."""
    artists = list(result.get("artists") or [])
    peak = _max_share(artists)
    table = Table(title=Text(f"{_query_label(result)}: artist shares", style="bold"), title_justify="left")
    table.add_column("artist", style="cyan")
    table.add_column("share", justify="right", style="green")
    table.add_column("", style="green", no_wrap=True)
    for artist in artists:
        share = float(artist["share"])
        table.add_row(
            Text(str(artist["artist"])),
            _fmt_share(share),
            _unicode_bar(share / peak if peak > 0 else 0.0),
        )
    return table


# --------------------------------------------------------------------------- HTML report


_CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --fg: #1d2330; --muted: #667085;
  --line: #e3e6eb; --accent: #3b6fd8; --accent-soft: #dbe6fb;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171d; --card: #1c2029; --fg: #e6e9ef; --muted: #98a2b3;
    --line: #2c323e; --accent: #7aa2f7; --accent-soft: #283350;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 2rem 1rem 4rem; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
main { max-width: 960px; margin: 0 auto; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 0 0 .25rem; word-break: break-all; }
h3 { font-size: .95rem; margin: 1.5rem 0 .5rem; text-transform: uppercase;
     letter-spacing: .04em; color: var(--muted); }
.subtitle, .meta { color: var(--muted); margin: 0 0 1.5rem; }
.clip { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
        padding: 1.5rem; margin-bottom: 2rem; box-shadow: 0 1px 3px rgba(0,0,0,.06); }
.prompt { font-size: 1.1rem; font-style: italic; margin: .25rem 0 .5rem; }
.meta { font-size: .85rem; margin: 0 0 .25rem; }
.method { font: .8rem/1.6 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
          color: var(--muted); margin: 0 0 1rem; }
.method span { display: inline-block; background: var(--accent-soft); color: var(--fg);
               border-radius: 4px; padding: 0 .4rem; margin: 0 .25rem .25rem 0; }
audio { width: 100%; display: block; }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:hover { background: var(--accent-soft); }
.note { color: var(--muted); font-size: .85rem; margin: .25rem 0 0; }
svg.bars { width: 100%; height: auto; display: block; }
svg.bars text { fill: var(--fg); font-size: 13px; font-family: inherit; }
svg.bars .track { fill: var(--accent-soft); }
svg.bars .bar { fill: var(--accent); }
.segments { list-style: none; padding: 0; margin: 0; display: grid; gap: .75rem; }
.segments li { border: 1px solid var(--line); border-radius: 8px; padding: .6rem .8rem; }
.segments .label { margin: 0 0 .4rem; }
.segments .label .rank { color: var(--muted); margin-right: .4rem; }
.segments .label .detail { color: var(--muted); font-size: .85rem; }
"""

# Geometry of the artist-share chart, in SVG user units (scaled to the page width).
_SVG_WIDTH = 640
_SVG_LABEL_W = 190
_SVG_PCT_W = 60
_SVG_ROW_H = 26
_SVG_BAR_H = 16
_SVG_LABEL_CHARS = 26


def _esc(value: Any) -> str:
    """Every piece of text comes from track metadata or user prompts, so escape it all."""
    return html.escape(str(value), quote=True)


def _mono_float32(audio: np.ndarray, what: str) -> np.ndarray:
    """The report only plays mono; reject anything else rather than guess a downmix."""
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected mono audio, got array of shape {np.shape(audio)}")
    return arr


def _wav_data_uri(audio: np.ndarray, sample_rate: int, what: str) -> str:
    """16-bit PCM WAV halves the size of float WAV and every browser plays it.

    Samples are clipped to [-1, 1] first so that hot clips saturate instead of wrapping.
    """
    if sample_rate <= 0:
        raise ValueError(f"{what}: sample rate must be positive, got {sample_rate}")
    samples = np.clip(_mono_float32(audio, what), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, samples, int(sample_rate), format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _audio_tag(audio: np.ndarray, sample_rate: int, what: str) -> str:
    return f'<audio controls preload="metadata" src="{_wav_data_uri(audio, sample_rate, what)}"></audio>'


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _artist_svg(artists: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bar chart of artist shares as inline SVG (no scripts, no external assets).

    Long names are truncated in the label; the full name is kept in a <title> tooltip.
    """
    peak = _max_share(artists)
    bar_area = _SVG_WIDTH - _SVG_LABEL_W - _SVG_PCT_W
    height = _SVG_ROW_H * len(artists) + 4
    rows = []
    for i, artist in enumerate(artists):
        name = str(artist["artist"])
        share = max(float(artist["share"]), 0.0)
        width = bar_area * (share / peak) if peak > 0 else 0.0
        y = 2 + i * _SVG_ROW_H
        bar_y = y + (_SVG_ROW_H - _SVG_BAR_H) / 2
        text_y = y + _SVG_ROW_H / 2
        rows.append(
            "<g>"
            f"<title>{_esc(name)}: {_fmt_share(share)}</title>"
            f'<text x="{_SVG_LABEL_W - 8}" y="{text_y:.1f}" text-anchor="end" '
            f'dominant-baseline="central">{_esc(_truncate(name, _SVG_LABEL_CHARS))}</text>'
            f'<rect class="track" x="{_SVG_LABEL_W}" y="{bar_y:.1f}" width="{bar_area}" '
            f'height="{_SVG_BAR_H}" rx="3"/>'
            f'<rect class="bar" x="{_SVG_LABEL_W}" y="{bar_y:.1f}" width="{width:.1f}" '
            f'height="{_SVG_BAR_H}" rx="3"/>'
            f'<text x="{_SVG_WIDTH - 4}" y="{text_y:.1f}" text-anchor="end" '
            f'dominant-baseline="central">{_fmt_share(share)}</text>'
            "</g>"
        )
    return (
        f'<svg class="bars" viewBox="0 0 {_SVG_WIDTH} {height}" role="img" '
        f'aria-label="Attribution share per artist">{"".join(rows)}</svg>'
    )


def _credits_html(credits: Sequence[Mapping[str, Any]], top: int) -> str:
    shown = list(credits)[:top]
    rows = "".join(
        "<tr>"
        f'<td class="num">{_esc(c["rank"])}</td>'
        f"<td>{_esc(c['artist'])}</td>"
        f'<td title="{_esc(c.get("path", ""))}">{_esc(c["title"])}</td>'
        f"<td>{_esc(c.get('license', ''))}</td>"
        f'<td class="num">{_esc(_fmt_score(c["score"]))}</td>'
        f'<td class="num">{_esc(_fmt_share(c["share"]))}</td>'
        "</tr>"
        for c in shown
    )
    note = ""
    if len(credits) > len(shown):
        note = f'<p class="note">Showing {len(shown)} of {len(credits)} credited tracks.</p>'
    return (
        "<table><thead><tr>"
        '<th class="num">#</th><th>Artist</th><th>Title</th><th>Licence</th>'
        '<th class="num">Score</th><th class="num">Share</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>{note}"
    )


def _segments_html(clip: ClipReport, label: str) -> str:
    """Players for the segments whose audio was supplied, in the result's rank order.

    Audio for a segment that the result does not list means the caller paired the wrong
    data, so it is an error rather than silently dropped.
    """
    by_id = {int(s["segment_id"]): s for s in clip.result.get("segments") or []}
    unknown = sorted({seg.segment_id for seg in clip.segments} - by_id.keys())
    if unknown:
        raise ValueError(f"{label}: audio supplied for segments not in the result: {unknown}")
    audio_by_id = {seg.segment_id: seg.audio for seg in clip.segments}
    listed = sorted((s for s in by_id.values() if int(s["segment_id"]) in audio_by_id), key=lambda s: s["rank"])
    items = []
    for seg in listed:
        sid = int(seg["segment_id"])
        player = _audio_tag(audio_by_id[sid], clip.sample_rate, f"{label}, segment {sid}")
        items.append(
            "<li>"
            '<p class="label">'
            f'<span class="rank">#{_esc(seg["rank"])}</span>'
            f"<strong>{_esc(seg['title'])}</strong> — {_esc(seg['artist'])} "
            f'<span class="detail">· {float(seg["start_s"]):.1f}–{float(seg["end_s"]):.1f} s '
            f"· score {_esc(_fmt_score(seg['score']))}</span>"
            "</p>"
            f"{player}"
            "</li>"
        )
    return f'<ul class="segments">{"".join(items)}</ul>'


def _clip_html(index: int, clip: ClipReport, top: int) -> str:
    result = clip.result
    query = result.get("query") or {}
    model = result.get("model") or {}
    label = str(query.get("path") or f"Clip {index}")
    prompt = query.get("prompt")
    artists = list(result.get("artists") or [])

    parts = [f'<section class="clip" id="clip-{index}">', f"<h2>{_esc(label)}</h2>"]
    if prompt:
        parts.append(f'<p class="prompt">“{_esc(prompt)}”</p>')
    meta = [f"{float(query.get('duration_s', len(clip.audio) / clip.sample_rate)):.1f} s"]
    if model.get("adapter"):
        meta.append(f"model {model['adapter']}")
    if model.get("fingerprint"):
        meta.append(f"fingerprint {str(model['fingerprint'])[:12]}")
    parts.append(f'<p class="meta">{" · ".join(_esc(m) for m in meta)}</p>')
    method = _method_items(result)
    if method:
        spans = "".join(f"<span>{_esc(k)}={_esc(v)}</span>" for k, v in method)
        parts.append(f'<p class="method">method {spans}</p>')
    parts.append(_audio_tag(clip.audio, clip.sample_rate, label))

    parts.append("<h3>Credited tracks</h3>")
    parts.append(_credits_html(list(result.get("credits") or []), top))

    parts.append("<h3>Artist shares</h3>")
    if artists:
        parts.append(_artist_svg(artists))
        total = sum(float(a["share"]) for a in artists)
        if total < 0.995:
            parts.append(f'<p class="note">Listed artists account for {_fmt_share(total)} of the attribution.</p>')
    else:
        parts.append('<p class="note">No artist shares.</p>')

    if clip.segments:
        parts.append("<h3>Top segments</h3>")
        parts.append(_segments_html(clip, label))
    parts.append("</section>")
    return "".join(parts)


def _render_page(clips: Sequence[ClipReport], title: str, top: int) -> str:
    body = "\n".join(_clip_html(i, clip, top) for i, clip in enumerate(clips, start=1))
    if not clips:
        body = '<p class="note">No clips were attributed.</p>'
    count = f"{len(clips)} clip" + ("" if len(clips) == 1 else "s")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_esc(title)}</h1>\n<p class=\"subtitle\">{count}</p>\n"
        f"{body}\n</main>\n</body>\n</html>\n"
    )


def write_html_report(
    path: Path,
    clips: Sequence[ClipReport],
    *,
    title: str = "tda-plugin attribution report",
    top: int = 10,
) -> Path:
    """Write one self-contained HTML page (audio as data URIs, inline CSS and SVG).

    Self-contained so the file can be mailed or archived and still play offline. The
    page is written to a temporary file beside ``path`` and moved into place, so a
    reader never sees a half-written report and a failure leaves any old one intact.
    """
    path = Path(path)
    page = _render_page(clips, title, top)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
