"""The report of attributed audio files (``tda report``, and the demo's report.html).

Everything comes from what attribution left behind: each file's credits from its tags or sidecar
(:func:`tda_plugin.sinks.read.read_credits`), its audio, and, given the index it was attributed with,
the audio of its top training segments. No model is loaded.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import audio as audio_io
from .errors import AudioError, IndexMismatchError, TdaError
from .index.store import Index
from .report import ClipReport, SegmentAudio, write_html_report
from .sinks.read import read_credits

log = logging.getLogger(__name__)

#: what a folder given to ``tda report`` is searched for
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """The files to report on: files as given, folders as the audio files directly inside them (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise TdaError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            files += found
        else:
            files.append(path)
    return files


def segment_audio(index: Index, segment_id: int) -> np.ndarray:
    """One training segment as the index cut it, mono at the index's sample rate."""
    return index.segment_audio(segment_id, channels=1)[0]


def _same_segment(index: Index, listed: dict) -> bool:
    """Whether a segment a result lists is the index's segment of that id (same track file, same start): an index
    rebuilt in place from a changed catalogue numbers its segments afresh, under the same model."""
    seg = index.segments.get(int(listed["segment_id"]))
    if seg is None:
        return False
    path, start = listed.get("path", index.tracks[seg.track_id].path), float(listed.get("start_s", seg.start_s))
    return index.tracks[seg.track_id].path == path and abs(seg.start_s - start) < 1e-6


def _players(index: Index, path: Path, where: Path, listed: list[dict], unplayable: set[int]) -> list[SegmentAudio]:
    """The audio of the ``listed`` segments of ``path``'s result, cut from the catalogue. A track whose file is gone,
    undecodable or changed gets no players: said once (``unplayable`` remembers it across clips), the page still
    written. Segments that are not this index's are refused: its players would play other music."""
    players = []
    for s in listed:
        if not _same_segment(index, s):
            raise IndexMismatchError(f"{path} was attributed with another index of this model: its segment "
                                     f"{s['segment_id']} ({s.get('path')} at {s.get('start_s')} s) is not {where}'s; "
                                     "give the index it was attributed with")
        track = index.segments[int(s["segment_id"])].track_id
        if track in unplayable:
            continue
        try:
            players.append(SegmentAudio(int(s["segment_id"]), segment_audio(index, int(s["segment_id"]))))
        except AudioError as exc:
            unplayable.add(track)
            log.warning("%s (the report has no player for its segments)", exc)
    return players


def _label(path: Path, page: Path) -> str:
    """The clip's name as seen from the page: relative to the page's folder when it lies below it."""
    try:
        return path.resolve().relative_to(page.resolve().parent).as_posix()
    except ValueError:
        return os.fspath(path)


def clip_reports(paths: Sequence[Path], *, page: Path, index: Path | None = None,
                 segment_players: int | None = None) -> list[ClipReport]:
    """One :class:`ClipReport` per attributed audio file; with ``index``, players for its top segments too
    (the first ``segment_players`` of them, or all)."""
    idx = Index(index) if index is not None else None
    unplayable: set[int] = set()
    clips = []
    for path in audio_files(paths):
        result, _ = read_credits(path)
        data, sr = audio_io.load(path)
        segments: list[SegmentAudio] = []
        if idx is not None:
            fingerprint = str((result.get("model") or {}).get("fingerprint", ""))
            if fingerprint != idx.meta.fingerprint:
                raise IndexMismatchError(f"{path} was attributed with model {fingerprint[:12] or '(unknown)'}, but {index} "
                                         f"is the index of model {idx.meta.fingerprint[:12]}; give the index it was attributed with")
            segments = _players(idx, path, index, (result.get("segments") or [])[:segment_players], unplayable)
        clips.append(ClipReport(result, data.mean(axis=0), sr, segments,
                                segment_sample_rate=idx.meta.sample_rate if idx is not None else None,
                                label=_label(path, page)))
    return clips


def build_report(paths: Sequence[Path], out: Path, *, index: Path | None = None,
                 title: str = "tda-plugin attribution report", top: int = 10,
                 summary: Sequence[tuple[str, str]] = (), audio_dir: Path | None = None,
                 segment_players: int | None = None) -> Path:
    """Write the report of the attributed files ``paths`` (files or folders) to ``out``; ``segment_players``
    caps the players per clip for its top segments (None: one per segment its result lists)."""
    out = Path(out)
    clips = clip_reports(paths, page=out, index=index, segment_players=segment_players)
    return write_html_report(out, clips, title=title, top=top, summary=summary, audio_dir=audio_dir)
