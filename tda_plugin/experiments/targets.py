"""Choosing self-influence targets that cover the catalogue: k-means over segment embeddings.

Choi et al. chose 40 training tracks spread over the catalogue; here each of N k-means centroids
(FAISS, fixed seed) picks its nearest segment not already picked, so the targets span the
catalogue's styles rather than its most common one.
"""
from __future__ import annotations

import faiss
import numpy as np

from ..errors import TdaError


def covering_targets(embeddings: np.ndarray, ids: list[int], count: int, seed: int = 0) -> list[int]:
    """``count`` segment ids, one per k-means cluster of the (normalised) ``embeddings`` rows."""
    if not 1 <= count <= len(ids):
        raise TdaError(f"--targets must be between 1 and the number of segments ({len(ids)})")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], count, niter=25, seed=seed, spherical=True, verbose=False,
                       min_points_per_centroid=1)
    km.train(x)
    sims = km.centroids @ x.T
    picked: list[int] = []
    for c in range(count):
        for j in np.argsort(-sims[c], kind="stable"):
            if ids[j] not in picked:
                picked.append(ids[j])
                break
    return sorted(picked)
