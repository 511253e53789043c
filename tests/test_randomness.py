"""Common random numbers: draws depend on (seed, stream, draw) only."""
from __future__ import annotations

import torch

from tda_plugin.randomness import make_draws, stratified_quantiles


def test_noise_is_a_function_of_stream_not_position() -> None:
    a = make_draws(7, ["segment/1", "segment/2", "segment/3"], 4).normal((3, 5))
    b = make_draws(7, ["segment/3", "segment/1"], 4).normal((3, 5))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1])


def test_seed_changes_noise_and_quantiles() -> None:
    assert not torch.equal(make_draws(0, ["s"], 2).normal((4,)), make_draws(1, ["s"], 2).normal((4,)))
    assert not torch.equal(stratified_quantiles(0, 8), stratified_quantiles(1, 8))


def test_quantiles_are_stratified() -> None:
    u = stratified_quantiles(3, 16)
    strata = (u * 16).floor().long()
    assert torch.equal(strata, torch.arange(16))


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    make_draws(0, ["x", "y"], 3).normal((10,))
    assert torch.equal(torch.rand(3), expected)


def test_draws_within_a_quantile_range_keep_their_noise_and_strata() -> None:
    full = make_draws(3, ["query/window/0"], 8)
    upper = full.within(0.5, 1.0)
    assert full.within(0.0, 1.0) is full
    assert torch.equal(upper.normal((4,)), full.normal((4,)))  # the same noise, other timesteps
    assert torch.equal(((upper.quantiles - 0.5) * 16).floor().long(), torch.arange(8))  # one per stratum of [0.5, 1]
