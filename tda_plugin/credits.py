"""From segment scores to credits: tracks and artists with shares (DESIGN.md, step 8).

Track score = sum of its segments' scores among the top segments; shares are normalised over the
positive mass of those top segments, so a share says how much of the attributed influence went where.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from .index.catalog_db import SegmentRow, TrackRow


def build_credits(ranked: Sequence[tuple[int, float]], segments: dict[int, SegmentRow], tracks: dict[int, TrackRow],
                  top: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``ranked``: (segment_id, score) best first. Returns the segments, credits and artists sections."""
    top_segments = list(ranked[:top])
    seg_out = []
    for rank, (sid, score) in enumerate(top_segments, 1):
        s, t = segments[sid], tracks[segments[sid].track_id]
        seg_out.append({"rank": rank, "segment_id": sid, "track_id": t.track_id, "path": t.path, "title": t.title,
                        "artist": t.artist, "start_s": round(s.start_s, 6), "end_s": round(s.end_s, 6),
                        "score": float(score)})
    per_track: dict[int, float] = defaultdict(float)
    positive: dict[int, float] = defaultdict(float)
    for sid, score in top_segments:
        tid = segments[sid].track_id
        per_track[tid] += score
        positive[tid] += max(score, 0.0)
    mass = sum(positive.values())
    order = sorted(per_track, key=lambda tid: (-per_track[tid], tid))
    credits = []
    for rank, tid in enumerate(order, 1):
        t = tracks[tid]
        credits.append({"rank": rank, "track_id": tid, "path": t.path, "title": t.title, "artist": t.artist,
                        "license": t.license, "score": float(per_track[tid]),
                        "share": positive[tid] / mass if mass > 0 else 0.0})
    by_artist: dict[str, float] = defaultdict(float)
    for c in credits:
        by_artist[c["artist"]] += c["share"]
    artists = [{"artist": a, "share": s} for a, s in sorted(by_artist.items(), key=lambda kv: (-kv[1], kv[0]))]
    return seg_out, credits, artists
