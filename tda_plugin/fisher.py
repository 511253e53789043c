"""Diagonal empirical Fisher of the training loss over a sample of training segments.

F = mean_i (∇θ L(z_i, θ0))², with L(z_i) the per-segment loss averaged over its draws, on the
parameters unlearning may touch (DESIGN.md, step 4). Per-segment gradients (not batch gradients)
make it the empirical Fisher rather than the squared mean gradient.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from .progress import Advance
from .randomness import make_draws

if TYPE_CHECKING:
    from .adapter import Conditioning, ModelAdapter
    from .sketch import GradientSketch


def named_parameters(adapter: "ModelAdapter", names: Sequence[str]) -> list[torch.nn.Parameter]:
    params = dict(adapter.module.named_parameters())
    return [params[n] for n in names]


@contextlib.contextmanager
def gradients_for(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Enable gradients for just these parameters (the model stays frozen otherwise)."""
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def segment_gradients(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
                      conditioning: Sequence["Conditioning"], streams: Sequence[str], *, seed: int, draws: int,
                      advance: Advance | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """∇θ of each segment's own loss (averaged over its draws), one segment at a time."""
    with gradients_for(params):
        for i in range(encoded.shape[0]):
            cond = adapter.condition([conditioning[i]])
            loss = adapter.loss(encoded[i:i + 1], cond, make_draws(seed, [streams[i]], draws)).mean()
            yield torch.autograd.grad(loss, params)
            if advance:
                advance(1)


def diagonal_fisher(adapter: "ModelAdapter", encoded: torch.Tensor, conditioning: Sequence["Conditioning"],
                    streams: Sequence[str], names: Sequence[str], *, seed: int, draws: int,
                    advance: Advance | None = None) -> dict[str, torch.Tensor]:
    params = named_parameters(adapter, names)
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    for grads in segment_gradients(adapter, params, encoded, conditioning, streams, seed=seed, draws=draws, advance=advance):
        for a, g in zip(acc, grads):
            a.add_(g.float().pow(2))
    n = max(1, encoded.shape[0])
    return {name: (a / n).cpu() for name, a in zip(names, acc)}


def group_damping(fisher: dict[str, torch.Tensor], names: Sequence[str], damping: float) -> float:
    """λ of one parameter subset: ``damping`` times the mean Fisher diagonal over the subset."""
    total = sum(float(fisher[n].double().sum()) for n in names)
    count = sum(fisher[n].numel() for n in names)
    mean = total / max(1, count)
    return damping * mean if mean > 0 else 1e-12


def sensitivities(adapter: "ModelAdapter", encoded: torch.Tensor, conditioning: Sequence["Conditioning"],
                  streams: Sequence[str], groups: dict[str, list[str]], fisher: dict[str, torch.Tensor], *,
                  damping: float, seed: int, draws: int, advance: Advance | None = None,
                  sketch: "GradientSketch | None" = None) -> dict[str, torch.Tensor]:
    """s_i = sqrt(g_iᵀ (F + λI)^-1 g_i) per segment and parameter subset.

    To first order, unlearning segment i itself would raise its own loss by (α/N)·s_i²; dividing
    τ_i by s_i removes the "hub" segments whose loss rises under any perturbation (relative
    influence, Barshan et al. 2020), which is what measured best on the demo (docs/method.md).
    With ``sketch``, the same gradients also give each segment's gradient sketch (key "sketch",
    [n, sketch.dim]): one backward pass per segment serves both.
    """
    names = sorted({n for ns in groups.values() for n in ns})
    params = named_parameters(adapter, names)
    lam = {g: group_damping(fisher, ns, damping) for g, ns in groups.items()}
    out = {g: torch.zeros(encoded.shape[0], dtype=torch.float64) for g in groups}
    sketches = torch.zeros(encoded.shape[0], sketch.dim) if sketch is not None else None
    dev = params[0].device
    fdev = {n: fisher[n].to(dev) for n in names}
    gradients = segment_gradients(adapter, params, encoded, conditioning, streams, seed=seed, draws=draws, advance=advance)
    for i, grad in enumerate(gradients):
        grads = dict(zip(names, grad))
        for g, ns in groups.items():
            out[g][i] = sum(float((grads[n].float().pow(2) / (fdev[n] + lam[g])).sum()) for n in ns)
        if sketches is not None:
            sketches[i] = sketch.of_gradient({n: grads[n] for n in sketch.names})
    result = {g: v.sqrt().float() for g, v in out.items()}
    if sketches is not None:
        result["sketch"] = sketches
    return result
