"""Common random numbers: the draws of every loss are a pure function of (seed, stream, draw).

A *stream* names what is being scored ("segment/42", "query/window/3"). Noise never depends on
batch position, batch size, device or global RNG state, so any subset of segments can be scored in any
order, on any rank, and reproduce the baseline exactly. Timestep quantiles are shared by all streams
and stratified over (0, 1) so that a few draws cover the whole noise schedule.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Sequence

import torch


def stream_seed(seed: int, stream: str, draw: int) -> int:
    """A 63-bit generator seed for one (seed, stream, draw); stable across Python and torch versions."""
    digest = hashlib.blake2b(f"{seed}|{stream}|{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def stratified_quantiles(seed: int, draws: int) -> torch.Tensor:
    """``draws`` quantiles u_j in ((j + r_j) / D), one per stratum of (0, 1), shared by all streams."""
    gen = torch.Generator().manual_seed(stream_seed(seed, "timesteps", draws))
    offsets = torch.rand(draws, generator=gen, dtype=torch.float64)
    u = (torch.arange(draws, dtype=torch.float64) + offsets) / draws
    return u.clamp(1e-4, 1 - 1e-4).to(torch.float32)


@dataclass(frozen=True)
class Draws:
    """The fixed randomness of one batch: shared quantiles plus per-stream generators.

    Adapters turn ``quantiles`` into timesteps with their own sampler, and ask for noise through
    :meth:`normal` / :meth:`uniform`, which draw each (stream, draw) from its own seeded generator.
    """

    seed: int
    streams: tuple[str, ...]
    quantiles: torch.Tensor  # [D]
    #: which draws of the full set these are (None: all of them, 0..D-1): a subset reproduces exactly
    #: the noise and timesteps those draws have in the full set, so cached per-draw baselines still pair
    indices: tuple[int, ...] | None = None

    @property
    def count(self) -> int:
        return int(self.quantiles.numel())

    def _generate(self, shape: Sequence[int], kind: str) -> torch.Tensor:
        out = torch.empty((len(self.streams), self.count, *shape), dtype=torch.float32)
        draws = self.indices if self.indices is not None else range(self.count)
        for i, stream in enumerate(self.streams):
            for j, draw in enumerate(draws):
                gen = torch.Generator().manual_seed(stream_seed(self.seed, f"{stream}/{kind}", draw))
                if kind == "normal":
                    out[i, j] = torch.randn(tuple(shape), generator=gen)
                else:
                    out[i, j] = torch.rand(tuple(shape), generator=gen)
        return out

    def within(self, lo: float, hi: float) -> "Draws":
        """The same draws with their quantiles mapped into [lo, hi] (still one per stratum): the loss under
        only part of the timestep distribution. Noise is unchanged; (0, 1) returns the draws themselves."""
        if (lo, hi) == (0.0, 1.0):
            return self
        return replace(self, quantiles=(lo + (hi - lo) * self.quantiles).to(torch.float32))

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """Standard normal noise of shape [B, D, *shape] (on CPU; move it to the model's device)."""
        return self._generate(shape, "normal")

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform [0, 1) numbers of shape [B, D, *shape], e.g. for token masks of masked models."""
        return self._generate(shape, "uniform")


def make_draws(seed: int, streams: Sequence[str], draws: int, subset: Sequence[int] | None = None) -> Draws:
    """The ``draws`` draws of each stream, or only those numbered in ``subset`` (same numbers as in the full set)."""
    quantiles = stratified_quantiles(seed, draws)
    if subset is None:
        return Draws(seed=seed, streams=tuple(streams), quantiles=quantiles)
    picked = tuple(int(j) for j in subset)
    return Draws(seed=seed, streams=tuple(streams), quantiles=quantiles[list(picked)], indices=picked)


def segment_stream(segment_id: int) -> str:
    return f"segment/{segment_id}"


def query_stream(window: int) -> str:
    return f"query/window/{window}"
