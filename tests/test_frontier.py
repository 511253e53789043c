"""bench/frontier.py's rule on planted accuracies: the cheapest method not significantly below the best."""
from __future__ import annotations

import numpy as np

from bench.frontier import choose, stored_bytes

SHAPES = {"draws": 64, "p": 1_000_000}


def _table(costs: dict[str, float]) -> list[dict]:
    return [{"method": m, "rows": {"100": c}} for m, c in costs.items()]


def test_the_cheapest_point_not_significantly_below_the_best_is_chosen() -> None:
    rng = np.random.default_rng(0)
    best = rng.normal(0.6, 0.05, 24)
    metrics = {"demo": {"lds": {"unlearning": list(best),
                                "close": list(best + np.linspace(-0.03, 0.028, 24)),  # a little below, not significantly
                                "poor": list(best - 0.3 + np.linspace(-0.01, 0.01, 24))}}}  # clearly below
    choice = choose(_table({"unlearning": 5000.0, "close": 400.0, "poor": 10.0}), metrics, 100)
    assert choice["method"] == "close"
    assert choice["rejected_cheaper"]["poor"] == ["demo lds: below unlearning (p = 1.2e-07)"]


def test_a_method_below_the_best_on_any_metric_is_rejected_and_none_may_qualify() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, 24)
    metrics = {"demo": {"lds": {"a": list(base), "b": list(base - 0.2)},
                        "artist_top": {"a": list(base - 0.3), "b": list(base)}}}
    choice = choose(_table({"a": 10.0, "b": 5.0}), metrics, 100)
    assert choice["method"] is None
    assert set(choice["rejected_cheaper"]) == {"a", "b"}
    narrowed = {c: {m: v for m, v in by.items() if m == "lds"} for c, by in metrics.items()}  # --choose-on lds
    assert choose(_table({"a": 10.0, "b": 5.0}), narrowed, 100)["method"] == "a"


def test_what_a_query_reads_per_segment() -> None:
    assert stored_bytes("unlearning", SHAPES) == 4 * 65
    assert stored_bytes("trak:2048", SHAPES) == 4 * 2048
    assert stored_bytes("trak:exact", SHAPES) == stored_bytes("ekfac", SHAPES) == 4_000_000
    assert stored_bytes("similar:mfcc_chroma", SHAPES) == 0.0 and stored_bytes("mystery", SHAPES) is None
