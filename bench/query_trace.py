"""One exhaustive pass per query, replayed under any setting at any catalogue size (bench/query_scaling.py).

:func:`exhaustive_trace` keeps, per query, every segment's per-draw loss changes and the prefilter's
ranking of the whole catalogue; from it :func:`staged_top` replays any candidate count, shortlist and
first-pass draw count (tda_plugin/shortlist.py) on any sub-catalogue without scoring again, so one
exhaustive pass per query measures the recall of every setting at every catalogue size.
tests/test_shortlist.py checks that a replay reports what attribution reports.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Collection, Sequence

import numpy as np
import torch

from tda_plugin.attributor import Attributor
from tda_plugin.index import vectors
from tda_plugin.recall import Query
from tda_plugin.settings import AttributeSettings
from tda_plugin.shortlist import first_pass_draws


@dataclass
class QueryTrace:
    """One query's exhaustive per-draw loss changes and prefilter ranking over a whole index."""

    name: str
    #: segment ids, in the order the rows below hold them
    ids: list[int]
    #: L(z_i, θ') − L(z_i, θ0) per draw, [N, D]
    change: np.ndarray
    #: the "self" normalisation s_i per segment (1 under normalize="none")
    sensitivity: np.ndarray
    #: every segment id, best first, by the index's prefilter (inner product with the query's vector)
    ranking: list[int]
    #: seconds: encode + unlearning step + the query's prefilter vector ("fixed"), then the exhaustive
    #: scoring of the first m rows for every m in ``marks`` (measured, cumulative, same run)
    seconds: dict[str, float] = field(default_factory=dict)

    def exact(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The exact score of the rows (all of them by default): mean change over all draws / s_i."""
        rows = np.arange(len(self.ids)) if rows is None else rows
        return self.change[rows].mean(axis=1) / self.sensitivity[rows]


def exhaustive_trace(att: Attributor, query: Query, *, settings: AttributeSettings = AttributeSettings(candidates="all"),
                     order: Sequence[int] | None = None, marks: Sequence[int] = ()) -> QueryTrace:
    """Score every segment (in ``order``, default by id) on every draw, timing the prefixes in ``marks``."""
    un = settings.unlearn
    ids = list(order) if order is not None else sorted(att.index.segments)
    t0 = time.perf_counter()
    eq = att.encode_query(query.audio, query.sample_rate, query.prompt, un.mask_silence, name=query.name)
    names, delta, _, _ = att.forget(eq, un)
    vector = att.query_vector(eq)[0]
    seconds = {"fixed": time.perf_counter() - t0}
    batch = settings.batch_size or 64
    bounds = sorted({m for m in marks if 0 < m < len(ids)} | {len(ids)})
    parts, start, t1 = [], 0, time.perf_counter()
    for m in bounds:
        parts.append(att.losses_after(ids[start:m], names, delta, batch, settings.precision))
        seconds[f"scoring_{m}"] = time.perf_counter() - t1
        start = m
    change = (torch.cat(parts) - att.index.baseline_rows(ids)).numpy()
    sens = att.index.baseline_rows(ids, f"sensitivity.{un.subset}").numpy() if un.normalize == "self" else np.ones(len(ids))
    ranking = [int(i) for i in vectors.search(att.index.vectors(), vector, len(att.index.segments))]
    return QueryTrace(query.name, ids, change, sens.astype(np.float64), ranking, seconds)


def staged_top(trace: QueryTrace, members: Collection[int], *, candidates: int, shortlist: int | None,
               shortlist_draws: int, k: int = 10) -> list[int]:
    """The top-k an attribution restricted to the segments ``members`` would report under these settings.

    The prefilter's first ``candidates`` members, a first pass over ``shortlist_draws`` draws keeping the best
    ``shortlist`` of them (None: all), and the exact score over all draws among those (tda_plugin/shortlist.py).
    """
    row = {sid: j for j, sid in enumerate(trace.ids)}
    cands = np.array([row[i] for i in (i for i in trace.ranking if i in members)][:candidates])
    draws = trace.change.shape[1]
    first = first_pass_draws(draws, shortlist_draws)
    if shortlist is not None and shortlist < len(cands) and len(first) < draws:
        partial = trace.change[cands][:, first].mean(axis=1) / trace.sensitivity[cands]
        cands = cands[_best(partial, [trace.ids[j] for j in cands], shortlist)]
    top = _best(trace.exact(cands), [trace.ids[j] for j in cands], k)
    return [trace.ids[cands[j]] for j in top]


def exhaustive_top(trace: QueryTrace, members: Collection[int], k: int = 10) -> list[int]:
    """The exact top-k among ``members`` (what ``--candidates all`` reports)."""
    rows = np.array([j for j, sid in enumerate(trace.ids) if sid in members])
    return [trace.ids[rows[j]] for j in _best(trace.exact(rows), [trace.ids[j] for j in rows], k)]


def _best(score: np.ndarray, ids: Sequence[int], k: int) -> list[int]:
    """Positions of the k best scores, ties by id (the order attribution reports)."""
    return sorted(range(len(ids)), key=lambda j: (-float(score[j]), ids[j]))[:k]
