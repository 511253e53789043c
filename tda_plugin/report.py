"""Human-facing views of attribution results: Rich tables for the terminal and one HTML page for sharing.

An attribution result is the plain JSON-serialisable dict produced by the attribution pipeline
(``query``, ``model``, ``method``, ``segments``, ``credits``, ``artists``). This module depends on that
dict only, not on the pipeline's objects, so stored credits (sidecar, tags) can be rendered later
without a model loaded (``tda report``, :mod:`tda_plugin.report_files`).

The page is rendered by Jinja2 with autoescaping from ``templates/report.html.j2``: every string
in it comes from track metadata or user prompts. Audio is MP3, the one compressed format every
browser plays (Safari has long played no Ogg), embedded as data URIs so the page is one file, or
written into a folder beside it (``audio_dir``) for long clips.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from rich.table import Table
from rich.text import Text

from .copies.view import copy_rows

__all__ = [
    "ArtistTotal",
    "ClipReport",
    "SegmentAudio",
    "artist_totals",
    "artists_table",
    "credits_table",
    "encode_audio",
    "render_html",
    "write_html_report",
]

log = logging.getLogger(__name__)

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
    #: the training segments' rate (the index's) when it differs from the clip's
    segment_sample_rate: int | None = None
    #: the heading of the clip's section; default: the query path stored in the result
    label: str | None = None


# --------------------------------------------------------------------------- formatting


def _fmt_score(score: float) -> str:
    """Scores span many orders of magnitude and may be negative, so use 2-digit scientific."""
    return f"{float(score):.1e}"


def _fmt_share(share: float) -> str:
    """Shares are fractions of the attribution mass; people read percentages."""
    return f"{100.0 * float(share):.1f}%"


def _fmt_param(value: Any) -> str:
    """Floats like alpha are shown compactly (1e-05, not 1.0000000000000001e-05); nested values (the
    prefilter's provenance) as the JSON the result stores, not as a Python repr."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _query_label(result: Mapping[str, Any]) -> str:
    """The query's path when it came from a file, else a generic name."""
    query = result.get("query") or {}
    return str(query.get("path") or "query")


def _method_items(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Hyper-parameters in the order the pipeline recorded them, so reports stay comparable."""
    method = result.get("method") or {}
    return [(str(k), _fmt_param(v)) for k, v in method.items()]


def _fmt_first(credit: Mapping[str, Any]) -> str:
    """A credit's share of the draw resamples that put it first (:mod:`tda_plugin.stability`); "–" for a result
    stored before that was recorded."""
    return _fmt_share(credit["first_share"]) if "first_share" in credit else "–"


def unsettled_note(result: Mapping[str, Any]) -> str | None:
    """A warning when the clip's first artist or first track is not settled: it comes first in too few resamples of
    the model's loss draws (below the threshold the result records, ``method.stability.settled_at``)."""
    settled_at = ((result.get("method") or {}).get("stability") or {}).get("settled_at")
    credits, artists = list(result.get("credits") or []), list(result.get("artists") or [])
    if settled_at is None or not credits or not artists or "first_share" not in credits[0]:
        return None
    track, artist = float(credits[0]["first_share"]), float(artists[0].get("first_share", 1.0))
    if artist < float(settled_at):
        return (f"The first artist is not settled: resampling the model's random loss draws puts {artists[0]['artist']} "
                f"first in only {_fmt_share(artist)} of cases, so read the order of the artists as uncertain.")
    if track < float(settled_at):
        return (f"The first track is not settled: resampling the model's random loss draws puts it first in only "
                f"{_fmt_share(track)} of cases, so read the order of the top tracks as uncertain (the first artist "
                f"is settled: {_fmt_share(artist)}).")
    return None


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
    table.add_column("stays first", justify="right", style="dim")
    for credit in shown:
        table.add_row(
            str(credit["rank"]),
            Text(str(credit["artist"])),
            Text(str(credit["title"])),
            Text(str(credit.get("license", ""))),
            _fmt_score(credit["score"]),
            _fmt_share(credit["share"]),
            _fmt_first(credit),
        )
    notes = [f"showing {len(shown)} of {len(credits)} credited tracks"] if len(credits) > len(shown) else []
    notes += [n for n in (unsettled_note(result),) if n]
    if notes:
        table.caption = "\n".join(notes)
    return table


def artists_table(result: dict) -> Table:
    """Attribution share per artist, with a bar so the distribution is visible at a glance."""
    artists = list(result.get("artists") or [])
    peak = _max_share(artists)
    table = Table(title=Text(f"{_query_label(result)}: artist shares", style="bold"), title_justify="left")
    table.add_column("artist", style="cyan")
    table.add_column("share", justify="right", style="green")
    table.add_column("", style="green", no_wrap=True)
    table.add_column("stays first", justify="right", style="dim")
    for artist in artists:
        share = float(artist["share"])
        table.add_row(
            Text(str(artist["artist"])),
            _fmt_share(share),
            _unicode_bar(share / peak if peak > 0 else 0.0),
            _fmt_first(artist),
        )
    return table


# --------------------------------------------------------------------------- totals over clips


@dataclass(frozen=True)
class ArtistTotal:
    """One artist across every clip of a report."""

    artist: str
    #: the artist's shares summed over the clips, divided by the number of clips (so totals add up to 100 %)
    mean_share: float
    #: clips in which the artist has a credit
    credited_in: int
    #: clips in which the artist has the largest positive share
    first_in: int


def artist_totals(results: Sequence[Mapping[str, Any]]) -> list[ArtistTotal]:
    """Per-artist totals over ``results``, largest mean share first (ties by name)."""
    total: dict[str, float] = {}
    credited: dict[str, int] = {}
    first: dict[str, int] = {}
    for result in results:
        artists = list(result.get("artists") or [])
        for a in artists:
            name = str(a["artist"])
            total[name] = total.get(name, 0.0) + float(a["share"])
            credited[name] = credited.get(name, 0) + 1
        if artists and float(artists[0]["share"]) > 0:
            name = str(artists[0]["artist"])
            first[name] = first.get(name, 0) + 1
    n = max(len(results), 1)
    rows = [ArtistTotal(a, total[a] / n, credited[a], first.get(a, 0)) for a in total]
    return sorted(rows, key=lambda r: (-r.mean_share, r.artist))


# --------------------------------------------------------------------------- audio

#: MPEG-1/2 layer III sample rates. Lower rates (8, 11.025, 12 kHz) exist only in the unofficial
#: MPEG-2.5 extension, which not every decoder plays, so such audio is resampled up to 16 kHz or more.
_MP3_RATES = (16000, 22050, 24000, 32000, 44100, 48000)


def _mono_float32(audio: np.ndarray, what: str) -> np.ndarray:
    """The report only plays mono; reject anything else rather than guess a downmix."""
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected mono audio, got array of shape {np.shape(audio)}")
    return arr


@functools.lru_cache(maxsize=1)
def _can_write_mp3() -> bool:
    if "MP3" in sf.available_formats():
        return True
    log.warning("libsndfile %s cannot write MP3; the report's audio is Ogg/Vorbis, which Safari does not play",
                sf.__libsndfile_version__)
    return False


def encode_audio(audio: np.ndarray, sample_rate: int, what: str) -> tuple[bytes, str]:
    """(MP3 bytes, MIME type) of mono ``audio``, clipped to [-1, 1] so hot clips saturate instead of wrapping.

    Where this soundfile's libsndfile cannot write MP3 (older than 1.1), Ogg/Vorbis is the fallback:
    it plays everywhere but in Safari.
    """
    if sample_rate <= 0:
        raise ValueError(f"{what}: sample rate must be positive, got {sample_rate}")
    samples = np.clip(_mono_float32(audio, what), -1.0, 1.0)
    buf = io.BytesIO()
    if not _can_write_mp3():
        sf.write(buf, samples, int(sample_rate), format="OGG", subtype="VORBIS")
        return buf.getvalue(), "audio/ogg"
    rate = next((r for r in _MP3_RATES if r >= sample_rate), _MP3_RATES[-1])
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(rate, int(sample_rate))
        samples = np.clip(resample_poly(samples, rate // g, int(sample_rate) // g), -1.0, 1.0).astype(np.float32)
    sf.write(buf, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue(), "audio/mpeg"


#: turns (encoded bytes, MIME type, a file stem) into what an <audio src> holds
AudioSource = Callable[[bytes, str, str], str]


def _data_uri(data: bytes, mime: str, _stem: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _files_beside(page: Path, audio_dir: Path) -> AudioSource:
    """Audio written into ``audio_dir``, linked relative to the page so page and folder move together."""
    from .atomic import write_bytes

    def source(data: bytes, mime: str, stem: str) -> str:
        target = audio_dir / f"{stem}{'.mp3' if mime == 'audio/mpeg' else '.ogg'}"
        write_bytes(target, data)
        return Path(os.path.relpath(target, page.parent)).as_posix()

    return source


# --------------------------------------------------------------------------- the page's content


@dataclass
class _Player:
    src: str
    #: the accessible name: what the player plays
    label: str


@dataclass
class _Clip:
    anchor: str
    label: str
    prompt: str | None
    meta: list[str]
    method: list[tuple[str, str]]
    player: _Player
    credits: list[dict[str, str]]
    credits_note: str | None
    #: the first credit is not settled under resampled draws (:func:`unsettled_note`)
    unsettled_note: str | None
    artists: list[dict[str, Any]]
    artists_note: str | None
    segments: list[dict[str, Any]] = field(default_factory=list)
    #: the catalogue tracks the clip is a near copy of (tda_plugin/copies), shown above the credits
    copies: list[dict[str, str]] = field(default_factory=list)


def _segments(clip: ClipReport, number: int, label: str, source: AudioSource) -> list[dict[str, Any]]:
    """Players for the segments whose audio was supplied, in the result's rank order.

    Audio for a segment that the result does not list means the caller paired the wrong
    data, so it is an error rather than silently dropped.
    """
    by_id = {int(s["segment_id"]): s for s in clip.result.get("segments") or []}
    unknown = sorted({seg.segment_id for seg in clip.segments} - by_id.keys())
    if unknown:
        raise ValueError(f"{label}: audio supplied for segments not in the result: {unknown}")
    audio_by_id = {seg.segment_id: seg.audio for seg in clip.segments}
    rate = clip.segment_sample_rate or clip.sample_rate
    rows = []
    for seg in sorted((s for s in by_id.values() if int(s["segment_id"]) in audio_by_id), key=lambda s: s["rank"]):
        sid = int(seg["segment_id"])
        span = f"{float(seg['start_s']):.1f}–{float(seg['end_s']):.1f} s"
        data, mime = encode_audio(audio_by_id[sid], rate, f"{label}, segment {sid}")
        name = f"Training segment ranked {seg['rank']} for clip {number}: {seg['title']} by {seg['artist']}, {span}"
        rows.append({"rank": seg["rank"], "title": seg["title"], "artist": seg["artist"], "span": span,
                     "score": _fmt_score(seg["score"]),
                     "player": _Player(source(data, mime, f"clip{number:02d}-segment{seg['rank']:02d}"), name)})
    return rows


def _clip(number: int, clip: ClipReport, top: int, source: AudioSource) -> _Clip:
    result = clip.result
    query = result.get("query") or {}
    model = result.get("model") or {}
    label = clip.label or str(query.get("path") or f"Clip {number}")
    prompt = query.get("prompt")
    meta = [f"{float(query.get('duration_s', len(clip.audio) / clip.sample_rate)):.1f} s"]
    if model.get("adapter"):
        meta.append(f"model {model['adapter']}")
    if model.get("fingerprint"):
        meta.append(f"fingerprint {str(model['fingerprint'])[:12]}")

    credits = list(result.get("credits") or [])
    shown = credits[:top]
    artists = list(result.get("artists") or [])
    peak = _max_share(artists)
    total = sum(float(a["share"]) for a in artists)
    data, mime = encode_audio(clip.audio, clip.sample_rate, label)
    player_name = f"Generated clip {number}: {label}" + (f", prompt “{prompt}”" if prompt else "")
    return _Clip(
        anchor=f"clip-{number}", label=label, prompt=prompt, meta=meta, method=_method_items(result),
        player=_Player(source(data, mime, f"clip{number:02d}"), player_name),
        credits=[{"rank": str(c["rank"]), "artist": str(c["artist"]), "title": str(c["title"]),
                  "license": str(c.get("license") or ""), "path": str(c.get("path") or ""),
                  "score": _fmt_score(c["score"]), "share": _fmt_share(c["share"]), "first": _fmt_first(c)}
                 for c in shown],
        unsettled_note=unsettled_note(result),
        credits_note=f"Showing {len(shown)} of {len(credits)} credited tracks." if len(credits) > len(shown) else None,
        artists=[{"artist": str(a["artist"]), "share": _fmt_share(a["share"]), "first": _fmt_first(a),
                  "bar": round(100.0 * max(float(a["share"]), 0.0) / peak, 1) if peak > 0 else 0.0} for a in artists],
        artists_note=f"Listed artists account for {_fmt_share(total)} of the credit." if artists and total < 0.995 else None,
        segments=_segments(clip, number, label, source),
        copies=copy_rows(result),
    )


def _totals(clips: Sequence[ClipReport]) -> list[dict[str, Any]]:
    rows = artist_totals([c.result for c in clips])
    peak = max((r.mean_share for r in rows), default=0.0)
    return [{"artist": r.artist, "share": _fmt_share(r.mean_share), "credited_in": r.credited_in,
             "first_in": r.first_in, "bar": round(100.0 * r.mean_share / peak, 1) if peak > 0 else 0.0} for r in rows]


def _subtitle(clips: Sequence[ClipReport]) -> str:
    parts = [f"{len(clips)} clip" + ("" if len(clips) == 1 else "s")]
    models = {(str((c.result.get("model") or {}).get("adapter", "")), str((c.result.get("model") or {}).get("fingerprint", ""))[:12])
              for c in clips}
    if len(models) == 1:
        adapter, fingerprint = next(iter(models))
        parts.append(" ".join(p for p in (f"model {adapter}" if adapter else "", fingerprint) if p))
    elif models:
        parts.append(f"{len(models)} models")
    return " · ".join(p for p in parts if p)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("tda_plugin", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(clips: Sequence[ClipReport], *, title: str = "tda-plugin attribution report", top: int = 10,
                summary: Sequence[tuple[str, str]] = (), audio: AudioSource = _data_uri) -> str:
    """The report page as a string.

    ``summary``: (label, value) figures shown prominently at the top, e.g. the demo's
    ("Prompted artist credited first", "3 of 4 clips"). ``audio`` places each encoded player's audio
    (default: inline data URIs).
    """
    from . import __version__

    return _environment().get_template("report.html.j2").render(
        title=title, subtitle=_subtitle(clips), summary=[(str(k), str(v)) for k, v in summary],
        totals=_totals(clips), clips=[_clip(i, c, top, audio) for i, c in enumerate(clips, start=1)],
        version=__version__)


def write_html_report(path: Path, clips: Sequence[ClipReport], *, title: str = "tda-plugin attribution report",
                      top: int = 10, summary: Sequence[tuple[str, str]] = (), audio_dir: Path | None = None) -> Path:
    """Write the report page; the audio goes inside it, or into ``audio_dir`` (linked relative to the page).

    A self-contained page can be mailed or archived and still plays offline; ``audio_dir`` keeps the
    page small for long clips (a real model's 10-s segments). The page is written to a temporary file
    beside ``path`` and moved into place, so a reader never sees a half-written report.
    """
    from .atomic import write_text

    path = Path(path)
    source = _data_uri if audio_dir is None else _files_beside(path, Path(audio_dir))
    write_text(path, render_html(clips, title=title, top=top, summary=summary, audio=source))
    return path
