"""The near copies of an attribution result, for people: a Rich table for the terminal, rows for the HTML report,
lines for audio tags. Like :mod:`tda_plugin.report`, this reads the result's JSON only (``result["copies"]``), so
stored results render without a model or an index."""
from __future__ import annotations

from typing import Any, Mapping

from rich.table import Table
from rich.text import Text


def how(copy: Mapping[str, Any]) -> str:
    """How the clip changed the track: "+2 semitones, 1.05x as fast", or "unchanged in key and tempo"."""
    parts = []
    if copy["transposition_semitones"]:
        parts.append(f"{copy['transposition_semitones']:+d} semitone" + ("" if abs(copy["transposition_semitones"]) == 1 else "s"))
    if abs(float(copy["tempo_ratio"]) - 1.0) >= 0.01:
        parts.append(f"{float(copy['tempo_ratio']):.2f}x as fast")
    return ", ".join(parts) or "same key and tempo"


def spans(copy: Mapping[str, Any]) -> str:
    """Where: "clip 0.0-2.0 s = track 12.3-14.4 s"."""
    return (f"clip {float(copy['query_start_s']):.1f}–{float(copy['query_end_s']):.1f} s = "
            f"track {float(copy['start_s']):.1f}–{float(copy['end_s']):.1f} s")


def copies_table(result: Mapping[str, Any]) -> Table | None:
    """The clip's near copies, surest first; None when it has none."""
    copies = list(result.get("copies") or [])
    if not copies:
        return None
    query = result.get("query") or {}
    table = Table(title=Text(f"{query.get('path') or 'query'}: near copies of catalogue tracks", style="bold"),
                  title_justify="left", caption="not credits: the clip copies these tracks' audio, changed as shown")
    table.add_column("artist", style="cyan")
    table.add_column("title")
    table.add_column("licence", style="magenta")
    table.add_column("how")
    table.add_column("where")
    table.add_column("score", justify="right")
    for c in copies:
        table.add_row(Text(str(c["artist"])), Text(str(c["title"])), Text(str(c.get("license") or "")), how(c), spans(c),
                      f"{float(c['score']):.1f}")
    return table


def copy_rows(result: Mapping[str, Any]) -> list[dict[str, str]]:
    """The near copies as the HTML report lists them (strings; the template escapes them)."""
    return [{"artist": str(c["artist"]), "title": str(c["title"]), "license": str(c.get("license") or ""),
             "path": str(c.get("path") or ""), "how": how(c), "where": spans(c), "score": f"{float(c['score']):.1f}",
             "similarity": f"{100 * float(c['similarity']):.0f} %"} for c in result.get("copies") or []]


def tag_lines(result: Mapping[str, Any]) -> list[str]:
    """``near copy: Artist - Title (licence), +2 semitones, clip 0.0-2.0 s = track 12.3-14.4 s`` per copy."""
    return [f"near copy: {c['artist']} - {c['title']} ({c.get('license') or ''}), {how(c)}, {spans(c)}"
            for c in result.get("copies") or []]
