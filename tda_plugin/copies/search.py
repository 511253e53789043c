"""Query side of the near-copy channel: which catalogue tracks does a clip copy, and how.

1. The clip's peaks and triplets (:mod:`.fingerprint`), once; the clip is cut into pieces of about ``PIECE_S`` s.
2. Search: every triplet is looked up in ``copies.faiss`` (one FAISS range search for the whole clip, each query
   triplet compared only with the catalogue's triplets of the same intervals). Each match proposes a track, a
   transposition (anchor bin against anchor bin), a tempo ratio (long gap against long gap) and where the
   piece starts in the track; matches vote, per piece, for these hypotheses.
3. Verify: each piece's ``TOP_TRACKS`` best-voted tracks are aligned peak by peak (:mod:`.verify`) near their
   hypothesis. Consecutive pieces that continue one alignment make one span.
4. A track is a near copy when its best span scores at least ``verify.Z_MIN``.

Not a credit: the result names the track and how it was changed (transposition, tempo, where), beside the
credits and independent of the model. An index built before fingerprints existed has none: the search then
says so once and returns nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..index.store import Index
from . import build
from . import fingerprint as fp
from . import verify

log = logging.getLogger(__name__)

#: length of the pieces a clip is verified in (a clip shorter than two is one piece)
PIECE_S = 2.0
#: tracks verified per piece (those with the most votes for one hypothesis)
TOP_TRACKS = 8
#: a track needs this many votes for one hypothesis to be verified at all
MIN_VOTES = 2
#: vote bins: the tempo ratio in twelfths of an octave of speed, the piece's place in the track in frames
RATIO_STEPS = 12
OFFSET_FRAMES = 8
#: verification looks this far (frames) around the voted place, and at ratios within RATIO_REACH grid steps
PLACE_REACH = 22
RATIO_REACH = 3
NO_FINGERPRINTS = "this index has no fingerprints; rebuild it (rerun `tda index build`) to search for near copies"


@dataclass(frozen=True)
class Match:
    """One piece of the query (frames ``start``-``stop``) aligned with one track."""

    piece: int
    start: int
    stop: int
    alignment: verify.Alignment


class CopySearch:
    """The near-copy search of one opened index (its FAISS index and shards are read once, on first use)."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._faiss: Any = None
        self._shards: dict[int, dict[str, np.ndarray]] = {}
        size = max(index.segments) + 1
        self._track_of = np.full(size, -1, dtype=np.int64)
        self._start_of = np.zeros(size, dtype=np.int64)
        self._segments_of: dict[int, list[int]] = {}
        for s in sorted(index.segments.values(), key=lambda s: s.segment_id):
            self._track_of[s.segment_id] = s.track_id
            self._start_of[s.segment_id] = fp.frames(s.start_s)
            self._segments_of.setdefault(s.track_id, []).append(s.segment_id)
        self.note = self._missing()

    def _missing(self) -> str | None:
        """Why this index cannot be searched for near copies (None: it can)."""
        recorded = self.index.meta.files
        shards = sorted({s.shard for s in self.index.segments.values()})
        names = [build.VECTORS] + [build.shard_file(k) for k in shards]
        if any(n not in recorded for n in names) if recorded else not all((self.index.root / n).is_file() for n in names):
            return NO_FINGERPRINTS
        found = build.version_of(self.index.root / build.shard_file(shards[0]))
        if found != fp.VERSION:
            return (f"this index's fingerprints are of another version ({found}); rerun `tda index build` to "
                    "rebuild them and search for near copies")
        return None

    def settings(self) -> dict[str, Any]:
        """What the search ran with (recorded in each result's method)."""
        if self.note:
            return {"searched": False, "note": self.note}
        return {"searched": True, "fingerprint": fp.VERSION, "threshold": verify.Z_MIN, "piece_s": PIECE_S,
                "top_tracks": TOP_TRACKS}

    # -- reading the index ----------------------------------------------------------------------
    def _vectors(self) -> Any:
        if self._faiss is None:
            from ..index import vectors

            self._faiss = self.index.read(build.VECTORS, vectors.load)
            self._faiss.nprobe = 1  # a triplet's own cell holds every triplet of its intervals
        return self._faiss

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._shards:
            from safetensors.numpy import load_file

            self._shards[k] = self.index.read(build.shard_file(k), lambda p: load_file(str(p)))
        return self._shards[k]

    def _peaks(self, track_id: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The catalogue peaks (frames, bins) of a track between frames ``start`` and ``stop``."""
        segments = self.index.segments
        wanted = [sid for sid in self._segments_of[track_id]
                  if fp.frames(segments[sid].end_s) > start and fp.frames(segments[sid].start_s) < stop]
        frames, bins = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for k in sorted({segments[sid].shard for sid in wanted}):
            shard = self._shard(k)
            keep = np.isin(shard["peak_segments"], wanted) & (shard["peak_frames"] >= start) & (shard["peak_frames"] < stop)
            frames.append(shard["peak_frames"][keep].astype(np.int64))
            bins.append(shard["peak_bins"][keep].astype(np.int64))
        return np.concatenate(frames), np.concatenate(bins)

    # -- the search -----------------------------------------------------------------------------
    def find(self, audio: np.ndarray, sample_rate: int) -> list[dict[str, Any]]:
        """The near copies in a clip [channels, samples] (or [samples]): one entry per copied track, surest first."""
        return [c for c in self.scored(audio, sample_rate) if c["score"] >= verify.Z_MIN]

    def scored(self, audio: np.ndarray, sample_rate: int) -> list[dict[str, Any]]:
        """Every verified candidate track with its best span, whatever its score, surest first (:meth:`find` keeps
        those at the threshold; the bench calibrates the threshold on these)."""
        if self.note:
            return []
        f, b, n_frames = fp.analyse(audio, sample_rate)
        entries = [self._entry(track_id, *best_span(found)) for track_id, found in self.matches(f, b, n_frames).items()]
        return sorted(entries, key=lambda c: (-c["score"], c["track_id"]))

    def matches(self, f: np.ndarray, b: np.ndarray, n_frames: int) -> dict[int, list[Match]]:
        """Each voted track's best alignment with each piece of the query (peaks ``f``, ``b``; ``n_frames`` long)."""
        count = max(1, int(n_frames / fp.frames(PIECE_S)))
        bounds = np.array([round(i * n_frames / count) for i in range(count + 1)])
        votes = self._votes(fp.triplets(f, b, fp.QUERY_FAN), bounds)
        found: dict[int, list[Match]] = {}
        for p in range(count):
            inside = (f >= bounds[p]) & (f < bounds[p + 1])
            qf, qb, length = f[inside] - bounds[p], b[inside], int(bounds[p + 1] - bounds[p])
            for track, shift, ratio, place in votes.get(p, []):
                lo = max(0, place - PLACE_REACH)
                hi = min(fp.frames(self.index.tracks[track].duration_s), int(place + length * ratio) + PLACE_REACH)
                cf, cb = self._peaks(track, lo, hi)
                ratios = verify.RATIOS[np.abs(np.log2(verify.RATIOS / ratio)) <= (RATIO_REACH + 0.5) / 24]
                a = verify.align(qf, qb, length, cf, cb, lo, hi, np.array([shift]), ratios)
                if a is not None:
                    found.setdefault(track, []).append(Match(p, int(bounds[p]), int(bounds[p + 1]), a))
        return found

    def _votes(self, q: fp.Triplets, bounds: np.ndarray) -> dict[int, list[tuple[int, int, float, int]]]:
        """Per piece, the (track, shift, ratio, place) hypotheses of its TOP_TRACKS best-voted tracks."""
        if len(q) == 0:
            return {}
        lims, _, ids = self._vectors().range_search(q.vectors(), 1.0)
        rows = np.repeat(np.arange(len(q)), np.diff(lims).astype(np.int64))
        segment, frame, cbin, cgap = build.unpack(ids)
        ratio = cgap / q.gap[rows]  # catalogue gap over query gap: how much faster the query plays
        shift = q.bin[rows] - cbin
        ok = (np.abs(shift) <= verify.SHIFTS.max()) & (ratio >= verify.RATIOS[0] / 1.05) & (ratio <= verify.RATIOS[-1] * 1.05)
        rows, segment, frame, ratio, shift = rows[ok], segment[ok], frame[ok], ratio[ok], shift[ok]
        piece = np.searchsorted(bounds, q.frame[rows], side="right") - 1
        place = self._start_of[segment] + frame - ratio * (q.frame[rows] - bounds[piece])  # the piece's start, in the track
        track = self._track_of[segment]
        key = np.stack([piece, track, shift, np.round(RATIO_STEPS * np.log2(ratio)), np.round(place / OFFSET_FRAMES)], axis=1)
        uniq, inverse, counts = np.unique(key.astype(np.int64), axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        out: dict[int, list[tuple[int, int, float, int]]] = {}
        for p in np.unique(uniq[:, 0]):
            best: dict[int, int] = {}  # track -> its best bin
            for i in np.flatnonzero((uniq[:, 0] == p) & (counts >= MIN_VOTES)):
                t = int(uniq[i, 1])
                if t not in best or counts[i] > counts[best[t]]:
                    best[t] = i
            for t, i in sorted(best.items(), key=lambda kv: -counts[kv[1]])[:TOP_TRACKS]:
                hits = inverse == i
                out.setdefault(int(p), []).append((t, int(uniq[i, 2]), float(np.median(ratio[hits])),
                                                   int(round(float(np.median(place[hits]))))))
        return out

    def _entry(self, track_id: int, span: list[Match], score: float) -> dict[str, Any]:
        t = self.index.tracks[track_id]
        first, last = span[0].alignment, span[-1].alignment
        return {"track_id": track_id, "path": t.path, "title": t.title, "artist": t.artist, "license": t.license,
                "start_s": round(first.offset / fp.FPS, 3), "end_s": round((last.offset + last.length) / fp.FPS, 3),
                "query_start_s": round(span[0].start / fp.FPS, 3), "query_end_s": round(span[-1].stop / fp.FPS, 3),
                "transposition_semitones": first.shift, "tempo_ratio": round(_span_ratio(span), 3),
                "similarity": round(sum(m.alignment.matches for m in span) / max(1, sum(m.alignment.peaks for m in span)), 3),
                "score": round(score, 2)}


def best_span(matches: list[Match]) -> tuple[list[Match], float]:
    """The run of consecutive pieces that continue one alignment with the highest combined score."""
    matches = sorted(matches, key=lambda m: m.piece)
    best: tuple[list[Match], float] = ([matches[0]], matches[0].alignment.score)
    run = [matches[0]]
    for m in matches[1:]:
        prev = run[-1]
        if m.piece == prev.piece + 1 and verify.continues(prev.alignment, m.alignment, m.start - prev.start):
            run.append(m)
        else:
            run = [m]
        for candidate in (run, [m]):
            score = verify.combined([x.alignment for x in candidate])
            if score > best[1]:
                best = (list(candidate), score)
    return best


def _span_ratio(span: list[Match]) -> float:
    """The tempo ratio of a span: the slope of catalogue against query position over its pieces (the piece's own
    fitted ratio for one piece)."""
    if len(span) < 2:
        return span[0].alignment.ratio
    q = np.array([m.start for m in span], dtype=float)
    c = np.array([m.alignment.offset for m in span], dtype=float)
    return float(np.polyfit(q, c, 1)[0])
