"""An index on disk, read side: index.json, catalog.sqlite, shards, baseline, Fisher, vectors.

Layout (docs/index-format.md): ``index.json`` · ``catalog.sqlite`` · ``shards/shard-NNNNN.safetensors``
(latents, segment ids, baseline losses, embeddings of one shard) · ``baseline.safetensors`` ·
``fisher.safetensors`` · ``vectors.faiss``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..errors import IndexIncompleteError, IndexMismatchError, TdaError
from ..settings import IndexSettings
from .catalog_db import CatalogDB

SCHEMA_VERSION = 1

#: every path an index owns (``--overwrite`` removes these and nothing else)
INDEX_FILES = ("index.json", "catalog.sqlite", "shards", "baseline.safetensors", "fisher.safetensors", "vectors.faiss",
               "vectors.unconditional.faiss")
#: suffix of every per-segment tensor cached under the model's null conditioning (unconditional mode)
UNCONDITIONAL = ".unconditional"


def conditioned(key: str, conditioning: str) -> str:
    """The name of a per-segment tensor (or file stem) for one conditioning: "losses" -> "losses.unconditional"."""
    return key + UNCONDITIONAL if conditioning == "unconditional" else key


def vectors_name(conditioning: str = "prompt") -> str:
    return conditioned("vectors", conditioning) + ".faiss"


@dataclass
class IndexMeta:
    """index.json: everything that produced the index, so reuse can be checked field by field."""

    adapter: str
    fingerprint: str
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

    @property
    def segment_seconds(self) -> float:
        return self.segment_samples / self.sample_rate

    @property
    def index_settings(self) -> IndexSettings:
        return IndexSettings(**self.settings)

    def identity(self) -> dict[str, Any]:
        """The fields that must agree for a build to resume (or an index to be reused)."""
        return {"schema": self.schema, "adapter": self.adapter, "fingerprint": self.fingerprint,
                "segment_samples": self.segment_samples, "settings": self.settings, "corpus": self.corpus,
                "corpus_hash": self.corpus_hash}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_meta(root: Path) -> IndexMeta:
    path = Path(root) / "index.json"
    if not path.is_file():
        raise TdaError(f"{root}: not a tda index (no index.json)")
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA_VERSION:
        raise IndexMismatchError(f"{root}: index schema {data.get('schema')} is not {SCHEMA_VERSION}; rebuild it")
    return IndexMeta(**data)


def shard_name(shard: int) -> str:
    return f"shards/shard-{shard:05d}.safetensors"


def sensitivity_name(shard: int) -> str:
    return f"shards/sens-{shard:05d}.safetensors"


class Index:
    """Read access to a finished index; shards load lazily and stay cached."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        if not self.meta.complete:
            raise IndexIncompleteError(f"{root}: the index build has not finished; rerun `tda index build` to resume it")
        self.catalog = CatalogDB(self.root / "catalog.sqlite")
        self._shards: dict[int, dict[str, torch.Tensor]] = {}
        self._vectors: dict[str, Any] = {}
        self.segments = {s.segment_id: s for s in self.catalog.segments()}
        self.tracks = self.catalog.tracks()
        self.baseline = load_file(str(self.root / "baseline.safetensors"))
        self._check_fingerprint("baseline.safetensors")
        self._row = {int(sid): i for i, sid in enumerate(self.baseline["segment_ids"].tolist())}
        self._position: dict[int, int] = {}
        counts: dict[int, int] = {}
        for s in self.segments.values():  # shards hold their segments in id order
            self._position[s.segment_id] = counts.get(s.shard, 0)
            counts[s.shard] = counts.get(s.shard, 0) + 1

    def _check_fingerprint(self, name: str) -> None:
        """Derived files carry the fingerprint of the model that produced them; a stray file is refused."""
        from safetensors import safe_open

        with safe_open(str(self.root / name), "pt") as fh:
            found = (fh.metadata() or {}).get("fingerprint")
        if found != self.meta.fingerprint:
            raise IndexMismatchError(f"{self.root / name} was produced by another model ({str(found)[:12]}) than "
                                     f"this index's ({self.meta.fingerprint[:12]}); rebuild the index")

    def check_model(self, fingerprint: str, adapter: str) -> None:
        if adapter != self.meta.adapter or fingerprint != self.meta.fingerprint:
            raise IndexMismatchError(
                f"{self.root} was built for another model ({self.meta.adapter} {self.meta.fingerprint[:12]}) "
                f"than the one loaded ({adapter} {fingerprint[:12]}); rebuild the index for this model")

    def shard(self, k: int) -> dict[str, torch.Tensor]:
        if k not in self._shards:
            self._shards[k] = load_file(str(self.root / shard_name(k)))
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
        return load_file(str(self.root / "fisher.safetensors"))

    def vectors(self, conditioning: str = "prompt") -> Any:
        """The FAISS index of the segments' prefilter vectors under ``conditioning``, read once per opened index."""
        if conditioning not in self._vectors:
            from . import vectors

            path = self.root / vectors_name(conditioning)
            if not path.is_file():
                raise TdaError(f"{self.root} has no {conditioning} prefilter vectors; rebuild it with this version "
                               "of tda-plugin, or score every candidate (--candidates all)")
            self._vectors[conditioning] = vectors.load(path)
        return self._vectors[conditioning]

    def info(self) -> dict[str, Any]:
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return {"path": str(self.root), "adapter": self.meta.adapter, "fingerprint": self.meta.fingerprint,
                "checkpoint": self.meta.checkpoint, "model_config": self.meta.model_config,
                "sample_rate": self.meta.sample_rate, "channels": self.meta.channels,
                "segment_seconds": self.meta.segment_seconds, **self.catalog.counts(),
                "draws": self.meta.settings["draws"], "seed": self.meta.settings["seed"],
                "fisher_segments": self.meta.settings["fisher_segments"],
                "embedder": self.meta.settings["embedder"], "size_bytes": size,
                "failed_paths": [p for p, _ in self.catalog.failures()]}

