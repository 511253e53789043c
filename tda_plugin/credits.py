"""From segment scores to credits: tracks and artists with shares (docs/method.md, section 10).

One definition serves order, score and share: a track's credit T_k gathers the *positive* scores of its
segments among the top segments, either their sum ("sum") or their largest ("max"). A segment whose
score is not positive was not made worse by forgetting the query, so it earns nothing (and takes
nothing away from its track's other segments). Credits are ordered by T_k, shares are T_k / Σ T, so the
order of credits is the order of their shares, and a track with nothing positive is not credited at all.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal, Sequence

from .index.catalog_db import SegmentRow, TrackRow


#: how a track's credit gathers its top segments' positive scores
TrackCredit = Literal["sum", "max"]
TRACK_CREDITS: tuple[TrackCredit, ...] = ("max", "sum")


def build_credits(ranked: Sequence[tuple[int, float]], segments: dict[int, SegmentRow], tracks: dict[int, TrackRow],
                  top: int, track_credit: TrackCredit = "max") -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``ranked``: (segment_id, score) best first. Returns the segments, credits and artists sections."""
    top_segments = list(ranked[:top])
    seg_out = []
    for rank, (sid, score) in enumerate(top_segments, 1):
        s, t = segments[sid], tracks[segments[sid].track_id]
        seg_out.append({"rank": rank, "segment_id": sid, "track_id": t.track_id, "path": t.path, "title": t.title,
                        "artist": t.artist, "start_s": round(s.start_s, 6), "end_s": round(s.end_s, 6),
                        "score": float(score)})
    positive: dict[int, float] = defaultdict(float)
    for sid, score in top_segments:
        if score > 0:
            tid = segments[sid].track_id
            positive[tid] = positive[tid] + float(score) if track_credit == "sum" else max(positive[tid], float(score))
    mass = sum(positive.values())
    credits = []
    for rank, tid in enumerate(sorted(positive, key=lambda tid: (-positive[tid], tid)), 1):
        t = tracks[tid]
        credits.append({"rank": rank, "track_id": tid, "path": t.path, "title": t.title, "artist": t.artist,
                        "license": t.license, "score": positive[tid], "share": positive[tid] / mass})
    # an artist's credit is the sum of its tracks', added in track-id order (as tda_plugin/stability.py adds them), so
    # that equal credits tie exactly and both break the tie by name
    by_artist: dict[str, float] = defaultdict(float)
    for tid in sorted(positive):
        by_artist[tracks[tid].artist] += positive[tid]
    artists = [{"artist": a, "share": v / mass} for a, v in sorted(by_artist.items(), key=lambda kv: (-kv[1], kv[0]))]
    return seg_out, credits, artists
