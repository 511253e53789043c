"""How much of the exact answer a prefilter keeps: recall of the exhaustive top-k inside the top M.

For each query the exact scores of *every* segment are computed (``--candidates all``), then each
embedder ranks the whole catalogue by cosine similarity (exactly, not through FAISS, so the
embedder is measured rather than the index), and

    recall@k(M) = |exhaustive top-k ∩ prefilter top-M| / k

is averaged over queries, for every k and every M = ⌈f·N⌉. The gradient sketch needs each
query's unlearning step and every segment's gradient, so all queries are unlearned first and one
per-segment gradient pass then serves every query and every sketch size; the same pass gives the
unprojected first-order score ``first_order`` (the limit of the sketch as its size grows), which
separates the first-order error from the projection error.

Replaying candidate counts and shortlists on sub-catalogues from one exhaustive pass per query is
bench/query_trace.py's (bench/query_scaling.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .attributor import Attributor, EncodedQuery
from .embedders import uses_gradients
from .fisher import group_damping, named_parameters
from .gradients import passes
from .index.builder import segment_conditioning
from .progress import task
from .randomness import segment_stream
from .registry import get_embedder_spec
from .settings import AttributeSettings
from .sketch import SKETCH_DIM
from .sketch import for_model as sketch_for_model

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)
KS = (10, 100)
#: name of the unprojected first-order ranking g_iᵀΔ / s_i reported beside the sketches
FIRST_ORDER = "first_order"


@dataclass(frozen=True)
class Query:
    """One query clip: audio [channels, samples] or [samples], its rate and the prompt it was made with."""

    name: str
    audio: np.ndarray
    sample_rate: int
    prompt: str | None = None


@dataclass
class RecallTable:
    """recall[embedder][k][fraction] = mean over queries; ``per_query`` keeps every value."""

    n: int
    queries: list[str]
    ks: list[int]
    fractions: list[float]
    recall: dict[str, dict[int, dict[float, float]]] = field(default_factory=dict)
    per_query: dict[str, dict[int, dict[float, list[float]]]] = field(default_factory=dict)
    #: per query: the exhaustive top max(ks) ids, and each embedder's first max-M ids (recall at any
    #: other k <= max(ks), M <= max-M can be recomputed from these)
    exact_top: list[list[int]] = field(default_factory=list)
    rankings: dict[str, list[list[int]]] = field(default_factory=dict)

    def m(self, fraction: float) -> int:
        return max(1, math.ceil(fraction * self.n))

    def to_dict(self) -> dict[str, Any]:
        return {"segments": self.n, "queries": self.queries, "ks": self.ks, "fractions": self.fractions,
                "m": {str(f): self.m(f) for f in self.fractions},
                "recall": {e: {str(k): {str(f): v for f, v in byf.items()} for k, byf in byk.items()}
                           for e, byk in self.recall.items()},
                "per_query": {e: {str(k): {str(f): v for f, v in byf.items()} for k, byf in byk.items()}
                              for e, byk in self.per_query.items()},
                "exact_top": self.exact_top, "rankings": self.rankings}


def top_k(scores: Mapping[int, float], k: int) -> list[int]:
    """The k best ids, ties by id (the order attribution reports)."""
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def recall_at(exact: Mapping[int, float], ranking: Sequence[int], k: int, m: int) -> float:
    """Fraction of the exact top-k found in the first m ids of ``ranking``."""
    best = top_k(exact, k)
    return len(set(best) & set(ranking[:m])) / len(best)


def rank_by_cosine(vectors: np.ndarray, ids: Sequence[int], query: np.ndarray) -> list[int]:
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sim = v @ (query / max(float(np.linalg.norm(query)), 1e-12))
    order = sorted(range(len(ids)), key=lambda j: (-float(sim[j]), ids[j]))
    return [ids[j] for j in order]


def _gradient_rankings(att: Attributor, ids: list[int], steps: list[dict[str, torch.Tensor]], dims: Sequence[int],
                       batch_note: str = "gradients") -> dict[str, list[list[int]]]:
    """One per-segment gradient pass: rankings by each sketch size and by the exact first-order score."""
    meta = att.index.meta
    seed, draws = meta.settings["seed"], meta.settings["draws"]
    names = att.adapter.parameter_groups()["blocks"]
    lam = group_damping(att.fisher, names, float(meta.settings.get("damping", 0.1)))
    sketches = {d: sketch_for_model(att.adapter.module, names, att.fisher, lam, seed=seed, dim=d) for d in dims}
    queries = {d: [s.of_step(step) for step in steps] for d, s in sketches.items()}
    seg_sk = {d: np.zeros((len(ids), d), np.float32) for d in dims}
    first = np.zeros((len(ids), len(steps)))
    dev = att.adapter.device
    root = {n: (att.fisher[n].float() + lam).sqrt().to(dev) for n in names}
    params = named_parameters(att.adapter, names)
    with task(batch_note, len(ids)) as advance:
        for j, sid in enumerate(ids):  # one segment at a time: memory of one gradient
            seg = att.index.segments[sid]
            cond = [segment_conditioning(att.index.tracks[seg.track_id], seg)]
            (chunk,) = passes(att.adapter, params, att.index.gather([sid], "latents"), cond, [segment_stream(sid)],
                              seed=seed, draws=draws)
            g = {n: t[0] for n, t in zip(names, chunk.grads)}
            u_norm = math.sqrt(sum(float((g[n].float() / root[n]).pow(2).sum()) for n in names))
            for q, step in enumerate(steps):
                first[j, q] = sum(float((g[n].float() * step[n].to(dev)).sum()) for n in step) / max(u_norm, 1e-30)
            for d, s in sketches.items():
                seg_sk[d][j] = s.of_gradient(g).numpy()
            advance(1)
    out = {FIRST_ORDER: [[ids[j] for j in sorted(range(len(ids)), key=lambda j: (-first[j, q], ids[j]))]
                         for q in range(len(steps))]}
    for d in dims:
        key = "gradient_sketch" if d == SKETCH_DIM else f"gradient_sketch@{d}"
        out[key] = [rank_by_cosine(seg_sk[d], ids, queries[d][q].numpy()) for q in range(len(steps))]
    return out


def segment_vectors(att: Attributor, embedder: str, batch: int = 16) -> np.ndarray:
    """Every segment's vector under a (non-gradient) embedder, rows in segment-id order."""
    spec = get_embedder_spec(embedder)
    seed = att.index.meta.settings["seed"]
    ids = sorted(att.index.segments)
    rows = []
    with task(f"embedding ({embedder})", len(ids)) as advance:
        for i in range(0, len(ids), batch):
            chunk = ids[i:i + batch]
            segs = [att.index.segments[s] for s in chunk]
            cond = att.adapter.condition([segment_conditioning(att.index.tracks[s.track_id], s) for s in segs])
            rows.append(spec.embed(att.adapter, att.index.gather(chunk, "latents"), cond,
                                   [segment_stream(s) for s in chunk], seed).float().numpy())
            advance(len(chunk))
    return np.concatenate(rows)


def evaluate_prefilter(att: Attributor, queries: Sequence[Query], embedders: Sequence[str], *,
                       ks: Sequence[int] = KS, fractions: Sequence[float] = FRACTIONS,
                       settings: AttributeSettings = AttributeSettings(candidates="all"),
                       sketch_dims: Sequence[int] = (SKETCH_DIM,)) -> RecallTable:
    """Recall of the exhaustive top-k inside each embedder's top M, over ``queries`` (see module doc).

    ``embedders`` are registered names; "gradient_sketch" is measured at every size in ``sketch_dims``
    (named "gradient_sketch@<dim>" except the default size) together with ``first_order``.
    """
    ids = sorted(att.index.segments)
    un = settings.unlearn
    exact: list[dict[int, float]] = []
    encoded: list[EncodedQuery] = []
    with task("exhaustive scores", len(queries)) as advance:
        for q in queries:
            eq = att.encode_query(q.audio, q.sample_rate, q.prompt, un.mask_silence, name=q.name)
            names, delta, _, _ = att.forget(eq, un)
            _, score = att.exact_scores(ids, names, delta, un, settings.batch_size)
            exact.append(dict(zip(ids, score.tolist())))
            encoded.append(eq)
            advance(1)
    rankings: dict[str, list[list[int]]] = {}
    if any(uses_gradients(get_embedder_spec(e)) for e in embedders):
        rankings.update(_gradient_rankings(att, ids, [eq.step or {} for eq in encoded], sketch_dims))
    for e in embedders:
        if uses_gradients(get_embedder_spec(e)):
            continue
        vecs = segment_vectors(att, e)
        rankings[e] = [rank_by_cosine(vecs, ids, att.query_vector(eq, e)[0]) for eq in encoded]
    table = RecallTable(len(ids), [q.name for q in queries], list(ks), list(fractions))
    table.exact_top = [top_k(ex, max(ks)) for ex in exact]
    table.rankings = {e: [r[:table.m(max(fractions))] for r in per_q] for e, per_q in rankings.items()}
    for e, per_q in rankings.items():
        table.per_query[e] = {k: {f: [recall_at(ex, r, k, table.m(f)) for ex, r in zip(exact, per_q)]
                                  for f in fractions} for k in ks}
        table.recall[e] = {k: {f: float(np.mean(v)) for f, v in byf.items()} for k, byf in table.per_query[e].items()}
    return table
