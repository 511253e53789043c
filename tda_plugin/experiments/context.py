"""What every experiment starts from: all embedders' segment embeddings, covering targets, a header."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..attributor import Attributor
from ..progress import task
from .embeddings import embedder_names, segment_embeddings
from .outputs import machine
from .targets import covering_targets


@dataclass
class Context:
    att: Attributor
    #: embedder name -> [N, E] normalised embeddings in segment-id order
    embeddings: dict[str, np.ndarray]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, att: Attributor) -> "Context":
        names = embedder_names()
        embeddings = {}
        with task("embedding the catalogue", len(names)) as advance:
            for name in names:
                embeddings[name] = segment_embeddings(att, name)
                advance(1)
        return cls(att, embeddings)

    def targets(self, count: int) -> list[int]:
        """Covering targets by k-means over the index's own embedder."""
        ids = sorted(self.att.index.segments)
        return covering_targets(self.embeddings[self.att.index.meta.settings["embedder"]], ids, count,
                                seed=self.att.index.meta.settings["seed"])

    def header(self, experiment: str) -> dict[str, Any]:
        meta = self.att.index.meta
        return {"experiment": experiment, "index": str(self.att.index.root), "adapter": meta.adapter,
                "fingerprint": meta.fingerprint, "segments": len(self.att.index.segments),
                "tracks": len(self.att.index.tracks), "index_settings": meta.settings, "embedders": sorted(self.embeddings),
                "machine": machine(), "wall_s": round(time.monotonic() - self.started, 1)}
