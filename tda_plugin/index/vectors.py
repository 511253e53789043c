"""vectors.faiss: the prefilter's inner-product index over normalised segment embeddings.

An exact flat index (IndexFlatIP) is used below ``IVF_THRESHOLD`` vectors; larger catalogues use
IVF with a flat quantiser so search time grows sub-linearly. Ids are segment ids.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ..atomic import write_with

IVF_THRESHOLD = 100_000


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    vecs = normalise(vectors)
    dim = vecs.shape[1]
    if len(vecs) < IVF_THRESHOLD:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        lists = int(4 * np.sqrt(len(vecs)))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vecs)
        ivf.nprobe = max(1, lists // 16)
        index = faiss.IndexIDMap2(ivf)
    index.add_with_ids(vecs, ids.astype(np.int64))
    return index


def save(index: faiss.Index, path: Path) -> None:
    write_with(path, lambda tmp: faiss.write_index(index, str(tmp)))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def search(index: faiss.Index, query: np.ndarray, k: int) -> np.ndarray:
    """Segment ids of the ``k`` nearest vectors to the (single) query, best first."""
    _, ids = index.search(normalise(query.reshape(1, -1)), min(k, index.ntotal))
    return ids[0][ids[0] >= 0]
