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
from typing import TYPE_CHECKING, Sequence

import torch

from .index.store import conditioned
from .settings import AttributeSettings, UnlearnSettings

if TYPE_CHECKING:
    from .attributor import Attributor


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


def scores(att: "Attributor", ids: list[int], names: list[str], delta: list[torch.Tensor], un: UnlearnSettings,
           settings: AttributeSettings, conditioning: str = "prompt") -> Scored:
    """τ and score of the best candidates: all of ``ids`` without a shortlist, else the two passes above; the
    segments conditioned as ``conditioning`` says (their prompts, or the null branch)."""
    batch = settings.batch_size or att._auto_batch(ids, settings.precision)
    draws = int(att.index.meta.settings["draws"])
    if exhaustive(settings, len(ids), draws):
        return att.scored(ids, names, delta, un, batch, settings.precision, conditioning)
    k = int(settings.shortlist)
    first = first_pass_draws(draws, settings.shortlist_draws)
    rest = [j for j in range(draws) if j not in first]
    def change(of: list[int], subset: list[int]) -> torch.Tensor:
        after = att.losses_after(of, names, delta, batch, settings.precision, conditioning, draws=subset)
        return after - _baseline(att, of, subset, names, delta, batch, settings, conditioning)

    early = change(ids, first)
    partial = att.normalised(ids, early.mean(dim=1), un, conditioning)
    keep = top_ids(ids, partial, k)
    row = {sid: j for j, sid in enumerate(ids)}
    whole = torch.empty(len(keep), draws)
    whole[:, first] = early[[row[i] for i in keep]]
    whole[:, rest] = change(keep, rest)
    tau = whole.mean(dim=1)
    return Scored(keep, tau, att.normalised(keep, tau, un, conditioning), whole, dict(zip(ids, partial.tolist())))


def _baseline(att: "Attributor", ids: list[int], draws: list[int], names: list[str], delta: list[torch.Tensor],
              batch: int, settings: AttributeSettings, conditioning: str) -> torch.Tensor:
    """L(z_i, θ0) on these draws: the cached rows in fp32; recomputed (paired) in bf16, as exact_scores does."""
    if settings.precision == "fp32":
        return att.index.baseline_rows(ids, conditioned("losses", conditioning))[:, draws]
    return att.losses_after(ids, names, [torch.zeros_like(d) for d in delta], batch, settings.precision, conditioning,
                            draws=draws)
