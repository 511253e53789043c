"""A memorisation guard: veto releasing a clip whose top credit has more than ``$TDA_MAX_SHARE`` of it.

Unset, the guard only observes (it never vetoes).
"""
from __future__ import annotations

import os
from typing import Any

from tda_plugin import hookimpl


@hookimpl
def tda_after_attribution(result: dict[str, Any]) -> str | None:
    """Veto clips whose top credit's share exceeds $TDA_MAX_SHARE (a memorisation guard)."""
    limit = os.environ.get("TDA_MAX_SHARE")
    credits = result["credits"]
    if limit is None or not credits or credits[0]["share"] <= float(limit):
        return None
    top = credits[0]
    return f"memorisation guard: {top['title']!r} by {top['artist']} has {top['share']:.0%} of the credit (limit {float(limit):.0%})"
