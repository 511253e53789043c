"""A result document shaped exactly like ``AttributionResult.to_dict()``, for tests of the sinks alone."""
from __future__ import annotations

from typing import Any


def result_doc(prompt: str = "low hum", artists: tuple[str, ...] = ("Ärtist 0", "Artist 1"), path: str | None = None) -> dict[str, Any]:
    credits = [{"rank": k + 1, "track_id": k, "path": f"audio/t{k}.wav", "title": f"Track {k}", "artist": artists[k % len(artists)],
                "license": "CC-BY-4.0", "score": 1.0 / (k + 1), "share": s} for k, s in enumerate((0.5, 0.3, 0.2))]
    by_artist: dict[str, float] = {}
    for c in credits:
        by_artist[c["artist"]] = by_artist.get(c["artist"], 0.0) + c["share"]
    return {"query": {"path": path, "prompt": prompt, "duration_s": 1.0, "seconds_start": 0.0, "seconds_total": 1.0},
            "model": {"adapter": "stable-audio", "fingerprint": "f" * 64},
            "method": {"mode": "newton", "alpha": 1e-7, "subset": "blocks", "draws": 4, "unlearn_draws": 2},
            "segments": [], "credits": credits,
            "artists": [{"artist": a, "share": s} for a, s in by_artist.items()], "vetoes": []}
