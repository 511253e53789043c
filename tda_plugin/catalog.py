"""Read a catalogue: DIR/tracks.csv with path, title, artist, license and an optional caption.

This is the format bench/fetch_real_music.py writes. Paths are relative to DIR or absolute.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import CatalogError

REQUIRED = ("path", "title", "artist", "license")
CAPTION_COLUMNS = ("caption", "prompt")


@dataclass(frozen=True)
class Track:
    track_id: int
    path: str          # as the catalogue gave it
    resolved: Path     # where to read it
    title: str
    artist: str
    license: str
    caption: str | None


def hash_tracks(h: Any, tracks: Iterable[Track], label: Callable[[Track], str] = lambda t: t.path) -> Any:
    """Feed ``h`` (a hashlib object) each track's label and audio bytes, in catalogue order, and return it: what a
    model trained on the catalogue is a function of, so that a changed file or another catalogue gets another hash."""
    for t in tracks:
        h.update(label(t).encode())
        with open(t.resolved, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h


def catalog_csv(corpus: Path) -> Path:
    corpus = Path(corpus)
    return corpus / "tracks.csv" if corpus.is_dir() else corpus


def read_catalog(corpus: Path) -> list[Track]:
    csv_path = catalog_csv(corpus)
    if not csv_path.is_file():
        raise CatalogError(f"{csv_path}: no tracks.csv (columns: {', '.join(REQUIRED)}[, caption])")
    root = csv_path.parent.resolve()
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise CatalogError(f"{csv_path}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})")
        caption_col = next((c for c in CAPTION_COLUMNS if c in columns), None)
        tracks = []
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("path"):
                continue
            p = Path(row["path"])
            caption = row.get(caption_col) if caption_col else None
            tracks.append(Track(len(tracks), row["path"], p if p.is_absolute() else root / p,
                                row["title"], row["artist"], row["license"], caption or None))
    if not tracks:
        raise CatalogError(f"{csv_path}: the catalogue is empty")
    return tracks
