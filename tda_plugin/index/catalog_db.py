"""catalog.sqlite: tracks, segments, build progress and failures of one index.

Track files are stored relative to the index where they lie inside its parent folder (index/paths.py)
and resolved on reading, so an index folder moved together with its catalogue stays whole.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..catalog import Track
from .paths import portable, resolve

SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    track_id INTEGER PRIMARY KEY, path TEXT NOT NULL, resolved TEXT NOT NULL, title TEXT, artist TEXT,
    license TEXT, caption TEXT, duration_s REAL);
CREATE TABLE IF NOT EXISTS segments (
    segment_id INTEGER PRIMARY KEY, track_id INTEGER NOT NULL REFERENCES tracks(track_id),
    seg_index INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, shard INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS segments_by_shard ON segments(shard);
CREATE TABLE IF NOT EXISTS failures (path TEXT PRIMARY KEY, error TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS progress (stage TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True)
class SegmentRow:
    segment_id: int
    track_id: int
    seg_index: int
    start_s: float
    end_s: float
    shard: int


@dataclass(frozen=True)
class TrackRow:
    track_id: int
    path: str
    resolved: str
    title: str
    artist: str
    license: str
    caption: str | None
    duration_s: float


class CatalogDB:
    """Thin typed access to catalog.sqlite; every write is one transaction."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """``read_only``: for readers of a finished index, which must never change the file (its checksum is recorded)."""
        self.path = Path(path)
        if read_only:
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # "file is not a database" here, not later
        else:
            self.conn = sqlite3.connect(str(self.path))
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- writes -------------------------------------------------------------------------------
    def add_tracks_and_segments(self, tracks: Iterable[tuple[Track, float]], segments: Iterable[SegmentRow],
                                failures: Iterable[tuple[str, str]]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT INTO tracks VALUES (?,?,?,?,?,?,?,?)",
                [(t.track_id, t.path, portable(t.resolved, self.path.parent), t.title, t.artist, t.license, t.caption, dur) for t, dur in tracks])
            self.conn.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?)",
                                  [(s.segment_id, s.track_id, s.seg_index, s.start_s, s.end_s, s.shard) for s in segments])
            self.conn.executemany("INSERT OR REPLACE INTO failures VALUES (?,?)", list(failures))
            self.conn.execute("INSERT OR REPLACE INTO progress VALUES ('catalog', 1)")

    # -- reads --------------------------------------------------------------------------------
    def is_done(self, stage: str) -> bool:
        row = self.conn.execute("SELECT done FROM progress WHERE stage = ?", (stage,)).fetchone()
        return bool(row and row[0])

    def segments(self, shard: int | None = None) -> list[SegmentRow]:
        q, args = "SELECT * FROM segments", ()
        if shard is not None:
            q, args = q + " WHERE shard = ?", (shard,)
        return [SegmentRow(*r) for r in self.conn.execute(q + " ORDER BY segment_id", args)]

    def segments_by_id(self, ids: Iterable[int]) -> dict[int, SegmentRow]:
        ids = list(ids)
        out: dict[int, SegmentRow] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = f"SELECT * FROM segments WHERE segment_id IN ({','.join('?' * len(chunk))})"
            out.update({r[0]: SegmentRow(*r) for r in self.conn.execute(q, chunk)})
        return out

    def tracks(self) -> dict[int, TrackRow]:
        rows = self.conn.execute("SELECT * FROM tracks ORDER BY track_id")
        return {r[0]: TrackRow(r[0], r[1], str(resolve(r[2], self.path.parent)), *r[3:]) for r in rows}

    def shards(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT shard FROM segments ORDER BY shard")]

    def failures(self) -> list[tuple[str, str]]:
        return list(self.conn.execute("SELECT path, error FROM failures ORDER BY path"))

    def counts(self) -> dict[str, int]:
        one = lambda q: self.conn.execute(q).fetchone()[0]  # noqa: E731
        return {"tracks": one("SELECT COUNT(DISTINCT track_id) FROM segments"),
                "segments": one("SELECT COUNT(*) FROM segments"),
                "artists": one("SELECT COUNT(DISTINCT artist) FROM tracks WHERE track_id IN (SELECT track_id FROM segments)"),
                "failures": one("SELECT COUNT(*) FROM failures")}

