"""Similarity embeddings of every training segment (and of queries) under each registered embedder.

The experiments compare unlearning scores with embedding similarity (the paper's CLAP_topk,
test-to-train comparison, retraining without the most similar data), so they use every embedder a
user has installed that embeds a segment on its own, not only the index's. Gradient sketches are
left out: they approximate the unlearning score itself (their recall is `tda eval prefilter`'s job).
Vectors are L2-normalised, so inner product = cosine.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..embedders import uses_gradients
from ..index import vectors
from ..recall import segment_vectors
from ..registry import embedders

if TYPE_CHECKING:
    from ..attributor import Attributor, EncodedQuery


def similarity_embedders() -> list[str]:
    return sorted(name for name, spec in embedders().items() if not uses_gradients(spec))


def segment_embeddings(att: "Attributor", name: str) -> np.ndarray:
    """[N, E] normalised embeddings of all segments, rows in segment-id order."""
    return vectors.normalise(segment_vectors(att, name))


def query_embedding(att: "Attributor", name: str, query: "EncodedQuery") -> np.ndarray:
    """[E] normalised embedding of a query (its windows' normalised embeddings averaged, as the prefilter does)."""
    return vectors.normalise(att.query_vector(query, name))[0]
