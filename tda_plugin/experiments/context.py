"""What every experiment starts from: all embedders' segment embeddings, covering targets, a header."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..attributor import Attributor
from ..progress import task
from .embeddings import segment_embeddings, similarity_embedders
from .outputs import machine
from .targets import covering_targets


@dataclass
class Context:
    att: Attributor
    #: embedder name -> [N, E] normalised embeddings in segment-id order
    embeddings: dict[str, np.ndarray]
    started: float = field(default_factory=time.monotonic)
    #: work that several methods share across queries (e.g. the catalogue's gradients)
    memo: dict[Any, Any] = field(default_factory=dict)
    #: method name -> what it spent (CPU seconds of its catalogue features and of its queries), for the JSON
    costs: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def open(cls, att: Attributor, names: Sequence[str] | None = None) -> "Context":
        """Embed the catalogue under ``names`` (default: every similarity embedder)."""
        names = similarity_embedders() if names is None else list(names)
        embeddings = {}
        with task("embedding the catalogue", len(names)) as advance:
            for name in names:
                embeddings[name] = segment_embeddings(att, name)
                advance(1)
        return cls(att, embeddings)

    def targets(self, count: int) -> list[int]:
        """Covering targets by k-means over the model's own pooled activations (the index's embedder when it is
        a similarity embedder), so they spread over what the model tells apart."""
        own = self.att.index.meta.settings["embedder"]
        name = own if own in similarity_embedders() else "activations"
        if name not in self.embeddings:
            self.embeddings[name] = segment_embeddings(self.att, name)
        return covering_targets(self.embeddings[name], sorted(self.att.index.segments), count,
                                seed=self.att.index.meta.settings["seed"])

    def header(self, experiment: str) -> dict[str, Any]:
        meta = self.att.index.meta
        return {"experiment": experiment, "index": str(self.att.index.root), "adapter": meta.adapter,
                "fingerprint": meta.fingerprint, "segments": len(self.att.index.segments),
                "tracks": len(self.att.index.tracks), "index_settings": meta.settings, "embedders": sorted(self.embeddings),
                "machine": machine(), "wall_s": round(time.monotonic() - self.started, 1)}
