"""Rank and agreement metrics over score vectors {segment id: score}.

Ties are broken by segment id everywhere (as the attributor does), so a metric never depends on
dict order.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import stats

Scores = Mapping[int, float]


def ordered(scores: Scores) -> list[int]:
    """Segment ids, best first."""
    return sorted(scores, key=lambda k: (-scores[k], k))


def rank_of(scores: Scores, target: int) -> int:
    """1-based rank of ``target`` (1 = ranked first)."""
    return ordered(scores).index(target) + 1


def topk_overlap(a: Scores, b: Scores, k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k."""
    return len(set(ordered(a)[:k]) & set(ordered(b)[:k])) / k


def _aligned(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray]:
    ids = sorted(set(a) & set(b))
    return np.array([a[i] for i in ids], dtype=np.float64), np.array([b[i] for i in ids], dtype=np.float64)


def correlations(a: Scores, b: Scores) -> dict[str, float]:
    """Pearson, Spearman and Kendall (tau-b) correlation over the segments both score."""
    x, y = _aligned(a, b)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "kendall": float("nan")}
    return {"pearson": float(stats.pearsonr(x, y).statistic), "spearman": float(stats.spearmanr(x, y).statistic),
            "kendall": float(stats.kendalltau(x, y).statistic)}


def concentration(scores: Scores, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Share of the positive score mass held by the top-k segments (as credit shares are computed)."""
    pos = np.clip(np.array([scores[i] for i in ordered(scores)], dtype=np.float64), 0, None)
    mass = pos.sum()
    return {f"top{k}_share": float(pos[:k].sum() / mass) if mass > 0 else 0.0 for k in ks}

