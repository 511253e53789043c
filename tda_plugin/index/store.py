"""An index on disk, read side: index.json, catalog.sqlite, shards, baseline, Fisher, vectors.

Layout (docs/index-format.md): ``index.json`` · ``catalog.sqlite`` · ``shards/shard-NNNNN.safetensors``
(latents, segment ids, baseline losses, embeddings of one shard) · ``baseline.safetensors`` ·
``fisher.safetensors`` · ``vectors.faiss``.

Opening an index checks what is cheap to check (every file the build recorded exists with its recorded
size); every file it then reads is first checked against the sha256 the build recorded, and any failure
to read a file, now or later, becomes one :class:`IndexDamagedError` naming the file. ``tda index
verify`` checks every file.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError

from .. import audio as audio_io
from ..errors import AudioError, IndexDamagedError, IndexIncompleteError, IndexMismatchError, TdaError
from ..settings import IndexSettings
from .catalog_db import CatalogDB, TrackRow
from .paths import resolve

SCHEMA_VERSION = 1

#: every path an index owns (``--overwrite`` removes these and nothing else)
INDEX_FILES = ("index.json", "catalog.sqlite", "shards", "baseline.safetensors", "fisher.safetensors", "vectors.faiss",
               "vectors.unconditional.faiss", "copies.faiss")
#: suffix of every per-segment tensor cached under the model's null conditioning (unconditional mode)
UNCONDITIONAL = ".unconditional"


def conditioned(key: str, conditioning: str) -> str:
    """The name of a per-segment tensor (or file stem) for one conditioning: "losses" -> "losses.unconditional"."""
    return key + UNCONDITIONAL if conditioning == "unconditional" else key


def vectors_name(conditioning: str = "prompt") -> str:
    return conditioned("vectors", conditioning) + ".faiss"

T = TypeVar("T")


@dataclass
class IndexMeta:
    """index.json: everything that produced the index, so reuse can be checked field by field."""

    adapter: str
    fingerprint: str
    #: checkpoint, model config and corpus: relative to the index when inside its parent folder (index/paths.py)
    checkpoint: str
    model_config: str | None
    sample_rate: int
    channels: int
    segment_samples: int
    settings: dict[str, Any]
    corpus: str
    #: sha256 of tracks.csv: an edited catalogue is a different index
    corpus_hash: str = ""
    complete: bool = False
    encoded_shape: list[int] = field(default_factory=list)
    schema: int = SCHEMA_VERSION
    #: the index directory (absolute) when it was built: relative paths fall back to it if the index moved alone
    origin: str = ""
    #: every file of the finished index but index.json: {relative path: {"bytes": n, "sha256": hex}}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def segment_seconds(self) -> float:
        return self.segment_samples / self.sample_rate

    @property
    def index_settings(self) -> IndexSettings:
        return IndexSettings(**self.settings)

    def identity(self, root: Path | None = None) -> dict[str, Any]:
        """The fields that must agree for a build to resume (or an index to be reused). With the index's ``root``
        the corpus is compared as the place it names, so a relative and an absolute spelling of it agree."""
        corpus = str(resolve(self.corpus, root, self.origin or None)) if root is not None else self.corpus
        return {"schema": self.schema, "adapter": self.adapter, "fingerprint": self.fingerprint,
                "segment_samples": self.segment_samples, "settings": self.settings, "corpus": corpus,
                "corpus_hash": self.corpus_hash}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_meta(root: Path) -> IndexMeta:
    path = Path(root) / "index.json"
    if Path(root).is_file():
        raise TdaError(f"{root}: is a file; an index is a directory (the --out of `tda index build`)")
    if not path.is_file():
        raise TdaError(f"{root}: not a tda index (no index.json)")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(root, "index.json", f"not readable JSON ({exc})") from None
    if data.get("schema") != SCHEMA_VERSION:
        raise IndexMismatchError(f"{root}: index schema {data.get('schema')} is not {SCHEMA_VERSION}; rebuild it")
    known = {f.name for f in fields(IndexMeta)}
    try:
        return IndexMeta(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise damaged(root, "index.json", f"incomplete ({exc})") from None


def shard_name(shard: int) -> str:
    return f"shards/shard-{shard:05d}.safetensors"


def sensitivity_name(shard: int) -> str:
    return f"shards/sens-{shard:05d}.safetensors"


def damaged(root: Path, name: str, why: str) -> IndexDamagedError:
    """``name`` inside the index at ``root`` is ``why``; the error's ``file`` and ``why`` keep the parts."""
    exc = IndexDamagedError(f"{Path(root) / name} is {why}; `tda index verify {root}` says how to repair it")
    exc.file, exc.why = name, why  # type: ignore[attr-defined]
    return exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def report_order(name: str) -> tuple[int, str]:
    """Damage is reported catalogue first (everything depends on it), then shards, Fisher, the rest."""
    rank = {"catalog.sqlite": 0, "shards/": 1, "fisher.safetensors": 2, "baseline.safetensors": 3, "vectors.faiss": 4,
            "vectors.unconditional.faiss": 4}
    return rank.get(name, 1), name


def size_problem(root: Path, name: str, entry: dict[str, Any]) -> str | None:
    """Why a recorded file is not as the build left it, judged by a stat (missing, other size), or None."""
    path = Path(root) / name
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    return None if size == entry["bytes"] else f"{size} bytes, not the {entry['bytes']} it had when built (truncated or replaced)"


def check_sizes(root: Path, meta: IndexMeta) -> None:
    """Every file the build recorded exists with its recorded size (a stat per file: cheap on every open)."""
    if any(n.startswith("shards/") for n in meta.files) and not (Path(root) / "shards").is_dir():
        raise damaged(root, "shards/", "missing (the whole folder)")
    for name in sorted(meta.files, key=report_order):
        why = size_problem(root, name, meta.files[name])
        if why:
            raise damaged(root, name, why)


def track_audio(track: TrackRow, sample_rate: int, channels: int) -> np.ndarray:
    """A catalogue track read again after the index read it, conformed to ``sample_rate`` and ``channels``.

    The index keeps no catalogue audio, only where each segment lies in its track: a file since deleted, damaged
    or replaced would put other music at those times. Gone or undecodable, or not as long as when the index read
    it, the track is refused with one line (:class:`AudioError`). A file replaced by another of the same length
    is not detected (the index records no checksum of catalogue audio).
    """
    data, rate = audio_io.load(Path(track.resolved))
    seconds = data.shape[1] / rate
    if abs(seconds - track.duration_s) > 1e-6:
        raise AudioError(f"{track.resolved}: {seconds:.2f} s long, not the {track.duration_s:.2f} s it was when the "
                         "index read it; the catalogue changed since: restore the file, or build a new index of the catalogue as it is")
    return audio_io.conform(data, rate, sample_rate, channels)[0]


class Index:
    """Read access to a finished index; shards load lazily and stay cached."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        if not self.meta.complete:
            raise IndexIncompleteError(f"{root}: the index build has not finished; rerun `tda index build` to resume it")
        check_sizes(self.root, self.meta)
        self._verified: set[str] = set()
        self.catalog = self._read("catalog.sqlite", lambda p: CatalogDB(p, read_only=True))
        self._shards: dict[int, dict[str, torch.Tensor]] = {}
        self._vectors: dict[str, Any] = {}
        self.segments = self._read("catalog.sqlite", lambda _: {s.segment_id: s for s in self.catalog.segments()})
        self.tracks = self._read("catalog.sqlite", lambda _: self.catalog.tracks())
        self.baseline = self._tensors("baseline.safetensors")
        self._check_fingerprint("baseline.safetensors")
        self._row = {int(sid): i for i, sid in enumerate(self.baseline["segment_ids"].tolist())}
        if set(self._row) != set(self.segments):
            raise damaged(self.root, "baseline.safetensors", f"out of step with catalog.sqlite ({len(self._row)} rows "
                                                              f"for {len(self.segments)} segments)")
        self._position: dict[int, int] = {}
        counts: dict[int, int] = {}
        for s in self.segments.values():  # shards hold their segments in id order
            self._position[s.segment_id] = counts.get(s.shard, 0)
            counts[s.shard] = counts.get(s.shard, 0) + 1

    def _read(self, name: str, reader: Callable[[Path], T]) -> T:
        """``reader(path)`` of a file that matches its recorded checksum; any failure to read it reported as
        that file being damaged. Hashing costs less than reading the file, which the reader does anyway."""
        path = self.root / name
        if not path.is_file():
            raise damaged(self.root, name, "missing")
        entry = self.meta.files.get(name)
        if entry is not None and name not in self._verified:
            if sha256(path) != entry["sha256"]:
                raise damaged(self.root, name, "not what the build wrote (checksum differs)")
            self._verified.add(name)
        try:
            return reader(path)
        except TdaError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError, sqlite3.Error, SafetensorError) as exc:  # FAISS, SQLite, ...
            raise damaged(self.root, name, f"unreadable ({' '.join(str(exc).split())[:200]})") from None

    def read(self, name: str, reader: Callable[[Path], T]) -> T:
        """:meth:`_read` for readers of the index's files outside this module (the near-copy search)."""
        return self._read(name, reader)

    def _tensors(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return self._read(name, lambda p: load_file(str(p)))

    def _check_fingerprint(self, name: str) -> None:
        """Derived files carry the fingerprint of the model that produced them; a stray file is refused."""
        from safetensors import safe_open

        def fingerprint(path: Path) -> str | None:
            with safe_open(str(path), "pt") as fh:
                return (fh.metadata() or {}).get("fingerprint")

        found = self._read(name, fingerprint)
        if found != self.meta.fingerprint:
            raise IndexMismatchError(f"{self.root / name} was produced by another model ({str(found)[:12]}) than "
                                     f"this index's ({self.meta.fingerprint[:12]}); rebuild the index")

    def check_model(self, fingerprint: str, adapter: str) -> None:
        if adapter != self.meta.adapter or fingerprint != self.meta.fingerprint:
            raise IndexMismatchError(
                f"{self.root} was built for another model ({self.meta.adapter} {self.meta.fingerprint[:12]}) "
                f"than the one loaded ({adapter} {fingerprint[:12]}); rebuild the index for this model")

    def segment_audio(self, segment_id: int, channels: int | None = None) -> np.ndarray:
        """One training segment [channels, samples] as the build cut it, read from its catalogue file (see
        :func:`track_audio`), at the index's sample rate with ``channels`` (default: the model's)."""
        meta, seg = self.meta, self.segments[segment_id]
        data = track_audio(self.tracks[seg.track_id], meta.sample_rate, channels or meta.channels)
        start = int(round(seg.start_s * meta.sample_rate))
        return data[:, start:start + meta.segment_samples]

    def path(self, stored: str) -> Path:
        """A path recorded in index.json, resolved for where the index is now (index/paths.py)."""
        return resolve(stored, self.root, self.meta.origin or None)

    @property
    def checkpoint(self) -> Path:
        return self.path(self.meta.checkpoint)

    @property
    def model_config(self) -> Path | None:
        return self.path(self.meta.model_config) if self.meta.model_config else None

    def shard(self, k: int) -> dict[str, torch.Tensor]:
        if k not in self._shards:
            self._shards[k] = self._tensors(shard_name(k))
        return self._shards[k]

    @property
    def has_unconditional(self) -> bool:
        """Whether the build cached losses under the null conditioning (``IndexSettings.unconditional``)."""
        return conditioned("losses", "unconditional") in self.baseline

    def baseline_rows(self, ids: list[int], key: str = "losses") -> torch.Tensor:
        """Rows of baseline.safetensors: "losses" [n, D] or "sensitivity.<subset>" [n] (each with an
        ".unconditional" twin when the index has unconditional baselines)."""
        if key not in self.baseline:
            raise TdaError(f"{self.root} has no {key!r} baselines: rebuild it with this version of tda-plugin "
                           "(unconditional baselines need an adapter that supports the null conditioning)")
        return self.baseline[key][torch.tensor([self._row[i] for i in ids], dtype=torch.long)]

    def gather(self, ids: list[int], key: str) -> torch.Tensor:
        """Rows of a shard tensor ("latents", "embeddings") for the given segment ids, in that order."""
        return torch.stack([self.shard(self.segments[sid].shard)[key][self._position[sid]] for sid in ids])

    def fisher(self) -> dict[str, torch.Tensor]:
        self._check_fingerprint("fisher.safetensors")
        return self._tensors("fisher.safetensors")

    def vectors(self, conditioning: str = "prompt") -> Any:
        """The FAISS index of the segments' prefilter vectors under ``conditioning``, read once per opened index."""
        if conditioning not in self._vectors:
            from . import vectors

            name = vectors_name(conditioning)
            if not (self.root / name).is_file():
                raise TdaError(f"{self.root} has no {conditioning} prefilter vectors; rebuild it with this version "
                               "of tda-plugin, or score every candidate (--candidates all)")
            self._vectors[conditioning] = self._read(name, vectors.load)
        return self._vectors[conditioning]

    def info(self) -> dict[str, Any]:
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        integrity = (f"{len(self.meta.files)} files present with their built sizes; `tda index verify` checks their "
                     "checksums") if self.meta.files else "no checksums recorded (built before tda-plugin recorded them)"
        return {"path": str(self.root), "adapter": self.meta.adapter, "fingerprint": self.meta.fingerprint,
                "checkpoint": str(self.checkpoint), "model_config": str(self.model_config) if self.model_config else None,
                "sample_rate": self.meta.sample_rate, "channels": self.meta.channels,
                "segment_seconds": self.meta.segment_seconds, **self.catalog.counts(),
                "draws": self.meta.settings["draws"], "seed": self.meta.settings["seed"],
                "fisher_segments": self.meta.settings["fisher_segments"],
                "embedder": self.meta.settings["embedder"], "size_bytes": size,
                "failed_paths": [p for p, _ in self.catalog.failures()], "integrity": integrity}
