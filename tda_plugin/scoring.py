"""Batched per-segment losses under fixed draws: the baseline cache and the exact scores.

τ_i = L(z_i, θ') − L(z_i, θ0), each averaged over the same D draws (DESIGN.md, steps 3 and 6).
Batches hold whole segments (all their draws), so results do not depend on batch size or order
beyond float rounding.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from .progress import Advance
from .randomness import make_draws

if TYPE_CHECKING:
    from .adapter import Conditioning, ModelAdapter


def segments_per_batch(batch_size: int, draws: int) -> int:
    """``batch_size`` counts segment-draws (one forward row each)."""
    return max(1, batch_size // draws)


@torch.no_grad()
def losses(adapter: "ModelAdapter", encoded: torch.Tensor, conditioning: Sequence["Conditioning"],
           streams: Sequence[str], *, seed: int, draws: int, batch_size: int = 64,
           advance: Advance | None = None) -> torch.Tensor:
    """Loss of every segment under every draw: [N, D] float32 on CPU."""
    n = encoded.shape[0]
    step = segments_per_batch(batch_size, draws)
    out = torch.empty((n, draws), dtype=torch.float32)
    for i in range(0, n, step):
        j = min(n, i + step)
        cond = adapter.condition(list(conditioning[i:j]))
        out[i:j] = adapter.loss(encoded[i:j], cond, make_draws(seed, streams[i:j], draws)).float().cpu()
        if advance:
            advance(j - i)
    return out
