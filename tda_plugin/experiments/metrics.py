"""Rank and agreement metrics over score vectors {segment id: score}, and the statistics of the ground-truth
experiments (the linear datamodeling score, bootstrap intervals, paired tests).

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



def linear_datamodeling_score(scores: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> float:
    """LDS of one query (Ilyas et al. 2022; Park et al. 2023): Spearman correlation, over the subset models j,
    between the attribution's predicted effect Σ_{i∈S_j} score_i and the query's negative loss −L_j.

    ``scores`` [N]: a higher score means segment i helps the query (training with it lowers the query's loss);
    ``masks`` [M, N]: 1 where segment i was in subset j; ``losses`` [M]: the query's loss under model j.
    nan when either side is constant (nothing to rank)."""
    predicted = np.asarray(masks, dtype=np.float64) @ np.asarray(scores, dtype=np.float64)
    target = -np.asarray(losses, dtype=np.float64)
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(target) == 0:
        return float("nan")
    return float(stats.spearmanr(predicted, target).statistic)


def mean_interval(values: Sequence[float], confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean of ``values`` (nan left out) with its percentile-bootstrap interval (scipy.stats.bootstrap,
    10 000 resamples); the interval is nan with fewer than two values."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    out = {"mean": float(x.mean()) if len(x) else float("nan"), "low": float("nan"), "high": float("nan"), "n": int(len(x))}
    if len(x) >= 2 and np.ptp(x) > 0:
        ci = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=10_000, method="percentile",
                             random_state=np.random.default_rng(seed)).confidence_interval
        out.update(low=float(ci.low), high=float(ci.high))
    elif len(x) >= 2:  # every value equal: the interval is that value
        out.update(low=float(x[0]), high=float(x[0]))
    return out


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Is ``a`` larger than ``b``, pair by pair? Wilcoxon signed-rank (scipy.stats.wilcoxon): the one-sided p
    (alternative a > b) and the two-sided p, with the mean difference a − b and its bootstrap interval.
    p is nan with fewer than two pairs or when every difference is zero."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    out = {f"diff_{k}": v for k, v in mean_interval(d).items()}
    out.update(p_greater=float("nan"), p_two_sided=float("nan"), wins=float(np.mean(d > 0)) if len(d) else float("nan"))
    if len(d) >= 2 and np.any(d != 0):
        out["p_greater"] = float(stats.wilcoxon(d, alternative="greater").pvalue)
        out["p_two_sided"] = float(stats.wilcoxon(d).pvalue)
    return out
