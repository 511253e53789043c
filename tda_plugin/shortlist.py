"""Exact scores for a fixed number of candidates, in two passes over the index's cached draws.

The score is τ_i = mean_j [L(z_i, θ'; j) − L(z_i, θ0; j)] over the index's D draws, whose baseline
L(z_i, θ0; j) is cached per draw. Any subset of the draws can be scored on its own with exactly the noise
and timesteps it has in the full set (``make_draws(..., subset=...)``), so:

1. every prefilter candidate is scored on ``shortlist_draws`` of the D draws, spread over the timestep
   strata (paired with the cached baseline, so the shared noise cancels in each difference);
2. the best ``shortlist`` by that partial score (normalised like the final one) get the other draws;
   their τ is then the mean over all D draws: the number the exhaustive path computes, to float rounding.

A query costs M·d/D + K·(D − d)/D segment-scorings (M candidates, K shortlisted, d first-pass draws)
instead of M, and the answer's scores stay exact: the first pass only decides which candidates reach the
top. docs/performance.md measures how often it keeps the exhaustive top-10.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

from .settings import AttributeSettings


@dataclass
class Scored:
    """The fully scored segments (ids, mean loss change τ, final score, per-draw changes) and the first pass's
    partial scores."""

    ids: list[int]
    tau: torch.Tensor
    score: torch.Tensor
    #: [len(ids), D] the loss changes draw by draw, whose mean is ``tau`` (what :mod:`.stability` resamples)
    change: torch.Tensor
    #: partial score of every candidate of the first pass (empty when every candidate was fully scored)
    first_pass: dict[int, float] = field(default_factory=dict)


def first_pass_draws(total: int, count: int) -> list[int]:
    """``count`` of ``total`` draw numbers, one from the middle of each of ``count`` equal runs of strata."""
    count = max(1, min(total, count))
    return sorted({int((k + 0.5) * total / count) for k in range(count)})


def exhaustive(settings: AttributeSettings, candidates: int, draws: int) -> bool:
    """Whether :func:`scores` scores all ``candidates`` on all ``draws`` draws (``"all"``, no shortlist, a shortlist
    as long as the candidates, or an index of no more draws than the first pass) rather than in two passes."""
    k = settings.shortlist
    first = first_pass_draws(draws, settings.shortlist_draws)
    return settings.candidates == "all" or k is None or k >= candidates or len(first) >= draws


def score_rows(settings: AttributeSettings, segments: int, draws: int) -> int:
    """Forward rows (segment × draw) that :func:`scores` runs for an index of ``segments`` segments and ``draws``
    draws: what a query's scoring costs, for estimates and cost models."""
    m = settings.candidate_count(segments)
    if exhaustive(settings, m, draws):
        return m * draws
    first = len(first_pass_draws(draws, settings.shortlist_draws))
    return m * first + int(settings.shortlist) * (draws - first)


def top_ids(ids: Sequence[int], score: torch.Tensor, k: int) -> list[int]:
    """The k best ids by score, ties by id (the order attribution reports)."""
    order = sorted(range(len(ids)), key=lambda j: (-float(score[j]), ids[j]))
    return [ids[j] for j in order[:k]]


class LossChanges(Protocol):
    """L(z_i, θ') − L(z_i, θ0) of segments ``ids`` on the index's draws ``draws`` (None: all of them), [len(ids), D']."""

    def __call__(self, ids: list[int], draws: list[int] | None, /) -> torch.Tensor: ...


class Normalise(Protocol):
    """The final score of segments ``ids`` from their mean loss changes ``tau``."""

    def __call__(self, ids: list[int], tau: torch.Tensor, /) -> torch.Tensor: ...


def scores(ids: list[int], draws: int, settings: AttributeSettings, change: LossChanges, normalise: Normalise) -> Scored:
    """τ and score of the best candidates: all of ``ids`` without a shortlist, else the two passes above, over an
    index of ``draws`` draws. ``change`` and ``normalise`` are the caller's scoring (the attributor's, for one
    query's step and one conditioning of the segments): this module only decides which draws of which segments
    are scored."""
    if exhaustive(settings, len(ids), draws):
        whole = change(ids, None)
        tau = whole.mean(dim=1)
        return Scored(list(ids), tau, normalise(ids, tau), whole)
    k = int(settings.shortlist)
    first = first_pass_draws(draws, settings.shortlist_draws)
    rest = [j for j in range(draws) if j not in first]
    early = change(ids, first)
    partial = normalise(ids, early.mean(dim=1))
    keep = top_ids(ids, partial, k)
    row = {sid: j for j, sid in enumerate(ids)}
    whole = torch.empty(len(keep), draws)
    whole[:, first] = early[[row[i] for i in keep]]
    whole[:, rest] = change(keep, rest)
    tau = whole.mean(dim=1)
    return Scored(keep, tau, normalise(keep, tau), whole, dict(zip(ids, partial.tolist())))
