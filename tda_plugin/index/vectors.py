"""vectors.faiss: the prefilter's inner-product index over normalised segment embeddings.

The kind is chosen from the number of vectors (``kind_for``):
* below ``FLAT_LIMIT``: exact ``IndexFlatIP`` (search is a matrix product; exact is affordable);
* from ``FLAT_LIMIT`` on: ``IndexIVFPQ`` (inner product, nlist = 4·√N lists, 8 bits per code,
  one byte per ``PQ_DIMS_PER_BYTE`` dimensions), so memory per vector is a few dozen bytes and search
  time grows sub-linearly. It is trained on a strided sample of all vectors and filled shard by shard,
  so building it streams. At query time enough lists are probed to hold several times the requested
  candidates (``nprobe_for``), which keeps the prefilter's recall when M is a percentage of N.
Ids are segment ids.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import faiss
import numpy as np

from ..atomic import write_with

FLAT_LIMIT = 100_000
#: vectors sampled to train the IVF-PQ quantisers
TRAIN_SAMPLE = 65_536
PQ_DIMS_PER_BYTE = 8
#: probe lists holding this many times the requested candidates
PROBE_FACTOR = 4

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kind_for(n: int) -> str:
    return "flat" if n < FLAT_LIMIT else "ivfpq"


def _pq_bytes(dim: int) -> int:
    """Largest divisor of ``dim`` not above dim / PQ_DIMS_PER_BYTE (FAISS needs dim % m == 0)."""
    target = max(1, dim // PQ_DIMS_PER_BYTE)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def _empty(n: int, dim: int) -> faiss.Index:
    if kind_for(n) == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    nlist = int(4 * math.sqrt(n))
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, _pq_bytes(dim), 8, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIDMap2(ivf)


def build(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """An index of vectors held in memory."""
    return build_streaming(len(vectors), vectors.shape[1], lambda: [(vectors, ids)])


def build_streaming(n: int, dim: int, chunks: Chunks) -> faiss.Index:
    """An index of ``n`` vectors read chunk by chunk (``chunks()`` is iterated once, twice for IVF-PQ).

    Peak memory is one chunk plus the index itself (the codes, for IVF-PQ), not the N×E matrix.
    """
    index = _empty(n, dim)
    if kind_for(n) != "flat":
        stride = max(1, math.ceil(n / TRAIN_SAMPLE))
        sample, seen = [], 0
        for vecs, _ in chunks():  # every stride-th vector in catalogue order: deterministic, spread out
            take = (np.arange(seen, seen + len(vecs)) % stride) == 0
            sample.append(normalise(vecs[take]))
            seen += len(vecs)
        faiss.downcast_index(index.index).train(np.concatenate(sample))
    for vecs, ids in chunks():
        index.add_with_ids(normalise(vecs), np.asarray(ids, dtype=np.int64))
    return index


def describe(index: faiss.Index) -> str:
    """What kind of index this is, for reports: "flat" or "ivfpq(nlist=…, m=…)"."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIVFPQ):
        return f"ivfpq(nlist={inner.nlist}, m={inner.pq.M})"
    return "flat"


def nprobe_for(index: faiss.Index, k: int) -> int:
    inner = faiss.downcast_index(index.index)
    per_list = max(1.0, index.ntotal / inner.nlist)
    return int(min(inner.nlist, max(16, math.ceil(PROBE_FACTOR * k / per_list))))


def save(index: faiss.Index, path: Path) -> None:
    write_with(path, lambda tmp: faiss.write_index(index, str(tmp)))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def search(index: faiss.Index, query: np.ndarray, k: int) -> np.ndarray:
    """Segment ids of the ``k`` nearest vectors to the (single) query, best first."""
    k = min(k, index.ntotal)
    if describe(index) != "flat":
        faiss.downcast_index(index.index).nprobe = nprobe_for(index, k)
    _, ids = index.search(normalise(query.reshape(1, -1)), k)
    return ids[0][ids[0] >= 0]
