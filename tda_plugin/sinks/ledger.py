"""The credits ledger: an append-only SQLite table, one row per (generated file, credited track).

Each row keeps the model fingerprint and the method's hyperparameters (JSON), so "what did artist A
get credited for, by which model, under which settings?" is one query (``tda credits list/export``).
Append-only is enforced by triggers that abort any UPDATE or DELETE. Concurrent writers are safe:
WAL journal, a busy timeout, and one ``BEGIN IMMEDIATE`` transaction per attribution, so two processes
attributing at once both land all their rows.

A clip's near copies (tda_plugin/copies) go to a second append-only table, ``copies``, one row per copied
track under the same ``attribution_id``; a ledger written before it existed gains the table when next opened.

Location: ``--ledger PATH`` / ``SinkOptions(ledger=...)``, else ``$TDA_LEDGER``, else
``$XDG_DATA_HOME/tda-plugin/credits.sqlite`` (``~/.local/share/tda-plugin/credits.sqlite``).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..errors import TdaError
from ..hookspecs import hookimpl
from .base import Receipt, SinkOptions, SinkSpec

NAME = "ledger"
SCHEMA_VERSION = 2
#: seconds a writer waits for another writer's transaction before giving up
BUSY_TIMEOUT_S = 60.0

COLUMNS = ("id", "attribution_id", "created_at", "generated", "prompt", "adapter", "model_fingerprint", "method",
           "rank", "track_id", "title", "artist", "license", "track_path", "score", "share")
#: the columns of the ``copies`` table after its id, attribution_id, created_at and generated
COPY_COLUMNS = ("track_id", "title", "artist", "license", "track_path", "start_s", "end_s", "query_start_s",
                "query_end_s", "transposition_semitones", "tempo_ratio", "similarity", "score")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS credits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    attribution_id TEXT NOT NULL,       -- one per attributed clip: groups its rows
    created_at TEXT NOT NULL,           -- UTC, ISO 8601
    generated TEXT,                     -- the generated audio file (absolute), NULL if never saved
    prompt TEXT,
    adapter TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    method TEXT NOT NULL,               -- JSON: every hyperparameter of the attribution
    rank INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    title TEXT, artist TEXT, license TEXT, track_path TEXT,
    score REAL NOT NULL,
    share REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS credits_by_artist ON credits(artist, created_at);
CREATE INDEX IF NOT EXISTS credits_by_time ON credits(created_at);
CREATE TRIGGER IF NOT EXISTS credits_no_update BEFORE UPDATE ON credits
    BEGIN SELECT RAISE(ABORT, 'the credits ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS credits_no_delete BEFORE DELETE ON credits
    BEGIN SELECT RAISE(ABORT, 'the credits ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS copies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    attribution_id TEXT NOT NULL,       -- the clip's rows in credits carry the same id
    created_at TEXT NOT NULL,
    generated TEXT,
    track_id INTEGER NOT NULL,
    title TEXT, artist TEXT, license TEXT, track_path TEXT,
    start_s REAL NOT NULL, end_s REAL NOT NULL,               -- the copied span, in the track
    query_start_s REAL NOT NULL, query_end_s REAL NOT NULL,   -- where it is in the generated clip
    transposition_semitones INTEGER NOT NULL, tempo_ratio REAL NOT NULL,
    similarity REAL NOT NULL, score REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS copies_by_artist ON copies(artist, created_at);
CREATE TRIGGER IF NOT EXISTS copies_no_update BEFORE UPDATE ON copies
    BEGIN SELECT RAISE(ABORT, 'the credits ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS copies_no_delete BEFORE DELETE ON copies
    BEGIN SELECT RAISE(ABORT, 'the credits ledger is append-only'); END;
PRAGMA user_version = {SCHEMA_VERSION};
"""


def default_ledger_path() -> Path:
    if os.environ.get("TDA_LEDGER"):
        return Path(os.environ["TDA_LEDGER"])
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "tda-plugin" / "credits.sqlite"


@dataclass(frozen=True)
class LedgerRow:
    id: int
    attribution_id: str
    created_at: str
    generated: str | None
    prompt: str | None
    adapter: str
    model_fingerprint: str
    method: str
    rank: int
    track_id: int
    title: str | None
    artist: str | None
    license: str | None
    track_path: str | None
    score: float
    share: float

    def to_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in COLUMNS}
        d["method"] = json.loads(self.method)
        return d


def _since(value: str) -> str:
    """``2026-11-26`` or a full ISO time -> the UTC ISO string rows compare against."""
    try:
        when = datetime.fromisoformat(value) if "T" in value or " " in value else \
            datetime.combine(date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise TdaError(f"--since {value!r} is not a date (YYYY-MM-DD) or ISO time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


class Ledger:
    """One open ledger file, created with its schema on first use unless ``create`` is False (readers:
    listing a ledger that does not exist says so instead of leaving an empty database behind)."""

    def __init__(self, path: Path | None = None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        if not create and not self.path.is_file():
            raise TdaError(f"{self.path}: no credits ledger here (nothing has written one yet: "
                           "`tda attribute --sink ledger` and `tda demo` do; --ledger or $TDA_LEDGER names another)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db = self._open()
                return
            except sqlite3.OperationalError as exc:
                # two processes creating the same new file: switching it to WAL is not covered by the busy
                # timeout, so the loser retries (the schema is idempotent)
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise TdaError(f"{self.path}: cannot open the credits ledger ({exc})") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise TdaError(f"{self.path}: cannot open the credits ledger ({exc})") from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # new file, or one without copies
                db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> "_Immediate":
        return _Immediate(self._db)

    def append(self, result: dict[str, Any], generated: Path | None) -> int:
        """Append one row per credit of ``result`` (and one per near copy, to ``copies``) in one transaction; returns
        the number of rows."""
        model, method, query = result.get("model", {}), result.get("method", {}), result.get("query", {})
        aid = uuid.uuid4().hex
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        where = str(Path(generated).resolve()) if generated is not None else None
        rows = [(aid, now, where, query.get("prompt"), model.get("adapter", ""), model.get("fingerprint", ""),
                 json.dumps(method, sort_keys=True), c["rank"], c["track_id"], c.get("title"), c.get("artist"),
                 c.get("license"), c.get("path"), float(c["score"]), float(c["share"]))
                for c in result.get("credits") or []]
        copies = [(aid, now, where, c["track_id"], c.get("title"), c.get("artist"), c.get("license"), c.get("path"),
                   *(c[k] for k in COPY_COLUMNS[5:])) for c in result.get("copies") or []]
        names = ("attribution_id", "created_at", "generated", *COPY_COLUMNS)
        with self._transaction():
            self._db.executemany(f"INSERT INTO credits ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})",
                                 rows)
            self._db.executemany(f"INSERT INTO copies ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", copies)
        return len(rows) + len(copies)

    def rows(self, *, artist: str | None = None, since: str | None = None) -> Iterator[LedgerRow]:
        """Rows oldest first, optionally of one artist and from a date/time on (``since``: ISO date or time)."""
        where, args = [], []
        if artist is not None:
            where.append("artist = ?")
            args.append(artist)
        if since is not None:
            where.append("created_at >= ?")
            args.append(_since(since))
        sql = f"SELECT {', '.join(COLUMNS)} FROM credits" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        for row in self._db.execute(sql, args):
            yield LedgerRow(*row)


class _Immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error): takes the write lock up front, so two
    writers queue on the busy timeout instead of failing with a lock upgrade deadlock."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def write(result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt:
    with Ledger(options.ledger) as ledger:
        n = ledger.append(result, audio_path)
        return Receipt(NAME, f"{ledger.path} ({n} row(s))")


@hookimpl
def tda_credit_sinks() -> list[SinkSpec]:
    return [SinkSpec(NAME, "append-only SQLite ledger, one row per credited track ($TDA_LEDGER)", write)]
