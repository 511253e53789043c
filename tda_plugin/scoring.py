"""Batched per-segment losses under fixed draws: the baseline cache and the exact scores.

τ_i = L(z_i, θ') − L(z_i, θ0), each averaged over the same D draws (docs/method.md, sections 4 and 8).
Batches hold whole segments (all their draws), so results do not depend on batch size or order
beyond float rounding.

On CUDA the inner loop keeps every batch's losses on the device and copies them back once at the
end (no host-device synchronisation per batch); ``precision="bf16"`` runs the model under bf16
autocast with the losses reduced in fp32 (the adapter's loss casts the output to fp32). The
toolkit's attention already uses ``F.scaled_dot_product_attention`` when flash-attn is absent.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal, Sequence

import torch

from .adapter import loss_draws
from .progress import Advance
from .randomness import make_draws

if TYPE_CHECKING:
    from .adapter import Conditioning, ModelAdapter

Precision = Literal["fp32", "bf16"]
#: fraction of free device memory an automatically sized batch may use
MEMORY_FRACTION = 0.7


def segments_per_batch(batch_size: int, draws: int) -> int:
    """``batch_size`` counts segment-draws (one forward row each)."""
    return max(1, batch_size // draws)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def losses(adapter: "ModelAdapter", encoded: torch.Tensor, conditioning: Sequence["Conditioning"],
           streams: Sequence[str], *, seed: int, draws: int, batch_size: int = 64,
           advance: Advance | None = None, precision: Precision = "fp32",
           masks: torch.Tensor | None = None, subset: Sequence[int] | None = None) -> torch.Tensor:
    """Loss of every segment under every draw: [N, D] float32 on CPU; ``masks`` [N, frames] keeps frames.

    ``subset``: only those of the ``draws`` draws, [N, len(subset)], each the same number it is in the full set.
    An adapter whose loss ignores its draws (``draw_free``) runs one row per segment, repeated to the width."""
    n = encoded.shape[0]
    width = draws if subset is None else len(subset)
    free = loss_draws(adapter, width) < width  # not for one draw of a drawn loss: it must stay the draw asked for
    step = segments_per_batch(batch_size, 1 if free else width)
    parts = []
    with autocast(adapter.device, precision):
        for i in range(0, n, step):
            j = min(n, i + step)
            cond = adapter.condition(list(conditioning[i:j]))
            mask = None if masks is None else masks[i:j].to(adapter.device)
            d = make_draws(seed, streams[i:j], 1) if free else make_draws(seed, streams[i:j], draws, subset)
            parts.append(adapter.loss(encoded[i:j], cond, d, mask).float().expand(-1, width))
            if advance:
                advance(j - i)
    return torch.cat(parts).cpu() if parts else torch.empty((0, width), dtype=torch.float32)


def auto_batch_size(adapter: "ModelAdapter", encoded: torch.Tensor, conditioning: Sequence["Conditioning"],
                    streams: Sequence[str], *, seed: int, draws: int, precision: Precision = "fp32",
                    fallback: int = 64) -> int:
    """Segment-draws per forward pass that fit in ``MEMORY_FRACTION`` of the free device memory.

    Measured, not guessed: one probe batch of one segment records the peak memory per forward row.
    On CPU (no free-memory query) it returns ``fallback``.
    """
    dev = adapter.device
    if dev.type != "cuda":
        return fallback
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    losses(adapter, encoded[:1], conditioning[:1], streams[:1], seed=seed, draws=draws, batch_size=draws,
           precision=precision)
    per_row = max(1, (torch.cuda.max_memory_allocated(dev) - before) // draws)
    free, _ = torch.cuda.mem_get_info(dev)
    rows = int(MEMORY_FRACTION * free // per_row)
    return max(draws, rows - rows % draws)
