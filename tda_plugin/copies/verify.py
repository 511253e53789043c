"""Verification: align a query piece's peaks with a catalogue region's peaks over transpositions, tempo ratios
and offsets, and say how surprising the best alignment is.

A hypothesis (s, r, o) maps a query peak at (frame t, bin b) to the catalogue's (o + r·t, b − s): the query is
the catalogue transposed up by s semitones and played r times as fast, its frame 0 at catalogue frame o.
For each hypothesis, M counts the query peaks that land on a catalogue peak (± ``TOLERANCE`` frames). If the
two had nothing in common, M would be about E = n·d (n query peaks in range, d the density of the widened
catalogue peaks under the window), so the score is how far M lies in the Poisson tail of E, in standard
deviations (:func:`surprise`), maximised over the hypotheses searched. A transposed or re-timed copy lines up
at one hypothesis; unrelated music of the same key and tempo does not line up peak for peak. Scores of
consecutive pieces that continue the same alignment add up (:func:`combined`), so a longer copy is surer.

The decision threshold :data:`Z_MIN` was set on audio that is not in the catalogue (bench/near_copies.py,
docs/near-copies.md): 2 of 2 060 such clips reach it (0.1 %), no group of them more than 0.4 %. The pooled 1 % point,
8.0, would let single groups reach 1.5-8 %, so the threshold keeps a margin above it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import fingerprint as fp

#: transpositions searched, in semitones (query = catalogue + shift)
SHIFTS = np.arange(-6, 7)
#: tempo ratios searched (query speed / catalogue speed): quarter-tone steps of speed, 0.71 to 1.41, which
#: takes in a tape-speed change of ±5 semitones (0.75-1.33) and a time stretch of ±8 %
RATIOS = 2.0 ** (np.arange(-12, 13) / 24.0)
#: a query peak matches a catalogue peak this many frames away (23 ms each)
TOLERANCE = 1
#: the ratio is fitted to peak pairs up to this many frames from the alignment's line, when they span this many
FIT_REACH = 3
FIT_SPAN = 50
#: the decision threshold on the score (see the module docstring)
Z_MIN = 9.5


@dataclass(frozen=True)
class Alignment:
    """The best hypothesis for one query piece against one catalogue region."""

    #: how surprising the matches are, in standard deviations (:func:`surprise`; the decision statistic)
    score: float
    #: query = catalogue transposed by this many semitones
    shift: int
    #: query tempo / catalogue tempo
    ratio: float
    #: catalogue frame (absolute, in the track) of the query piece's first frame
    offset: int
    #: catalogue frames the piece spans (its length times the ratio)
    length: int
    matches: int
    expected: float
    #: query peaks that fell inside the transposed spectrum
    peaks: int

    @property
    def similarity(self) -> float:
        """The share of the query piece's peaks found on the catalogue's (0-1)."""
        return self.matches / self.peaks if self.peaks else 0.0


def widened(cf: np.ndarray, cb: np.ndarray, start: int, length: int) -> np.ndarray:
    """A binary map [BINS, length] of catalogue peaks at frames start.. (absolute), each widened by TOLERANCE."""
    grid = np.zeros((fp.BINS, length + 2 * TOLERANCE), dtype=np.float32)
    inside = (cf >= start) & (cf < start + length)
    for d in range(2 * TOLERANCE + 1):
        grid[cb[inside], cf[inside] - start + d] = 1.0
    return grid[:, TOLERANCE:TOLERANCE + length]


def align(qf: np.ndarray, qb: np.ndarray, q_frames: int, cf: np.ndarray, cb: np.ndarray, start: int, stop: int,
          shifts: np.ndarray = SHIFTS, ratios: np.ndarray = RATIOS) -> Alignment | None:
    """The best alignment of a query piece (peaks ``qf``, ``qb`` relative to its start; ``q_frames`` long) with the
    catalogue peaks ``cf``, ``cb`` (absolute frames) between frames ``start`` and ``stop``, over ``shifts`` and
    ``ratios`` (the search passes those near its voted hypothesis), the ratio then refined between the grid's
    steps and fitted to the matched peaks; None without peaks."""
    coarse = _best(qf, qb, q_frames, cf, cb, start, stop, ratios, shifts)
    if coarse is None:
        return None
    fine = coarse.ratio * 2.0 ** (np.arange(-3, 4) / 96.0)  # eighth-tone steps of speed around the best
    best = _best(qf, qb, q_frames, cf, cb, start, stop, fine, np.array([coarse.shift]))
    return None if best is None else replace(best, ratio=fitted_ratio(qf, qb, cf, cb, best))


def fitted_ratio(qf: np.ndarray, qb: np.ndarray, cf: np.ndarray, cb: np.ndarray, a: Alignment) -> float:
    """The tempo ratio of the matched peaks themselves: the least-squares slope of catalogue frame against query
    frame over the pairs near the alignment's line, fitted twice (the grid's ratio when they span too little)."""
    by_bin = {int(b): cf[cb == b] for b in np.unique(qb - a.shift)}
    slope, intercept = a.ratio, float(a.offset)
    for _ in range(2):
        pairs = []
        for t, b in zip(qf, qb - a.shift):
            mapped = intercept + slope * t
            near = by_bin[int(b)][np.abs(by_bin[int(b)] - mapped) <= FIT_REACH]
            if len(near):
                pairs.append((t, near[np.argmin(np.abs(near - mapped))]))
        if len(pairs) < 3:
            return a.ratio
        q, c = np.array(pairs, dtype=float).T
        if q.max() - q.min() < FIT_SPAN:  # too short a stretch to pin a slope better than the grid's
            return a.ratio
        slope, intercept = (float(v) for v in np.polyfit(q, c, 1))
    return slope if abs(math.log2(slope / a.ratio)) <= 1 / 24 else a.ratio


def _best(qf: np.ndarray, qb: np.ndarray, q_frames: int, cf: np.ndarray, cb: np.ndarray, start: int, stop: int,
          ratios: np.ndarray, shifts: np.ndarray) -> Alignment | None:
    if len(qf) == 0 or stop <= start:
        return None
    best: Alignment | None = None
    for r in ratios:
        span = max(1, int(round(q_frames * r)))
        room = max(0, stop - start - span) + 1            # offsets at which the piece lies inside the region
        grid = widened(cf, cb, start, room + span)
        cover = np.concatenate([[0.0], np.cumsum(grid.sum(axis=0))])
        density = (cover[span:span + room] - cover[:room]) / (fp.BINS * span)   # [room]
        t = np.minimum(np.round(qf * r).astype(np.int64), span - 1)
        offsets = np.arange(room)
        for s in shifts:
            rows = qb - s
            ok = (rows >= 0) & (rows < fp.BINS)
            n = int(ok.sum())
            if n == 0:
                continue
            hits = grid[rows[ok][:, None], t[ok][:, None] + offsets[None, :]].sum(axis=0)
            expected = np.maximum(n * density, 1e-6)
            z = surprise(hits, expected)
            o = int(np.argmax(z))
            if best is None or z[o] > best.score:
                best = Alignment(float(z[o]), int(s), float(r), start + o, span, int(hits[o]), float(expected[o]), n)
    return best


def surprise(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """How many standard deviations a Poisson count ``m`` of mean ``e`` lies above it: the signed root of the
    likelihood-ratio statistic, 2·(m·ln(m/e) − (m − e)), which follows the Poisson tail where the Wald form
    (m − e)/√e would call three matches against an expected 0.05 a 13-sigma event."""
    m = np.asarray(m, dtype=np.float64)
    term = np.where(m > 0, m * np.log(np.maximum(m, 1e-12) / e), 0.0)
    return np.sign(m - e) * np.sqrt(np.maximum(0.0, 2.0 * (term - (m - e))))


def continues(a: Alignment, b: Alignment, gap: int) -> bool:
    """Whether ``b`` (a piece starting ``gap`` query frames after ``a``'s) continues ``a``'s alignment: the same
    transposition, a neighbouring ratio, and a catalogue position that moved on as the ratio says."""
    near = abs(math.log2(b.ratio / a.ratio)) <= 1.5 / 24
    drift = abs(b.offset - (a.offset + gap * (a.ratio + b.ratio) / 2))
    return a.shift == b.shift and near and drift <= 2 + 0.05 * gap


def combined(pieces: list[Alignment]) -> float:
    """The score of consecutive pieces taken as one alignment: their matches and expectations added."""
    return float(surprise(np.array(sum(p.matches for p in pieces)), np.array(sum(p.expected for p in pieces))))
