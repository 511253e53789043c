"""Embeddings of every training segment (and of queries) under each registered embedder.

The experiments compare unlearning scores with embedding similarity (the paper's CLAP_topk,
test-to-train comparison, prefilter recall), so they need every embedder a user has installed,
not only the one the index was built with. Vectors are L2-normalised: inner product = cosine.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..index import vectors
from ..index.builder import segment_conditioning
from ..randomness import query_stream, segment_stream
from ..registry import embedders

if TYPE_CHECKING:
    from ..attributor import Attributor, EncodedQuery

BATCH = 16


def embedder_names() -> list[str]:
    return sorted(embedders())


def segment_embeddings(att: "Attributor", name: str, ids: list[int] | None = None) -> np.ndarray:
    """[N, E] normalised embeddings of ``ids`` (default: all segments, in id order)."""
    spec = embedders()[name]
    index = att.index
    ids = sorted(index.segments) if ids is None else ids
    seed = index.meta.settings["seed"]
    out = []
    for i in range(0, len(ids), BATCH):
        chunk = ids[i:i + BATCH]
        latents = index.gather(chunk, "latents")
        conds = [segment_conditioning(index.tracks[index.segments[s].track_id], index.segments[s]) for s in chunk]
        with torch.no_grad():
            out.append(spec.embed(att.adapter, latents, att.adapter.condition(conds), [segment_stream(s) for s in chunk],
                                  seed).float().cpu().numpy())
    return vectors.normalise(np.concatenate(out))


def query_embedding(att: "Attributor", name: str, query: "EncodedQuery") -> np.ndarray:
    """[E] normalised embedding of a query: the mean of its windows' normalised embeddings (as the prefilter does)."""
    spec = embedders()[name]
    streams = [query_stream(w) for w in range(len(query.conditioning))]
    with torch.no_grad():
        emb = spec.embed(att.adapter, query.encoded, att.adapter.condition(query.conditioning), streams,
                         att.index.meta.settings["seed"]).float().cpu().numpy()
    return vectors.normalise(vectors.normalise(emb).mean(axis=0, keepdims=True))[0]
