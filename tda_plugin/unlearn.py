"""Forget the query: a Fisher-preconditioned Newton step, or ascent steps with an EWC penalty.

Newton (docs/method.md, section 7):  Δ = (α/N) (F + λI)^-1 ∇θ L(ẑ, θ0),  λ = damping · mean(F).
Ascent: maximise J(θ) = L(ẑ, θ) − (N / 2α) · ewc · (θ−θ0)ᵀ(F + λI)(θ−θ0) by preconditioned steps
Δ ← Δ + (α/N)(F+λI)^-1 ∇J(θ0+Δ). Its first step is the Newton step; with ewc = 1 each later step
re-takes the Newton step from the gradient at the current point.
Only parameters of the chosen subset move; the change is applied in place and undone exactly.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import torch

from .fisher import gradients_for, group_damping, named_parameters
from .gradients import checkpointing
from .randomness import Draws
from .settings import UnlearnSettings

if TYPE_CHECKING:
    from .adapter import ModelAdapter


def query_gradient(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor, cond: Any,
                   draws: Draws, mask: torch.Tensor | None) -> list[torch.Tensor]:
    """∇θ of the query loss, averaged over its windows and draws, silence/padding masked (without activation
    checkpointing on CPU, where memory is not the constraint and the recomputation costs a forward pass)."""
    with gradients_for(params), checkpointing(adapter, adapter.device.type == "cuda"):
        loss = adapter.loss(encoded, cond, draws, mask).mean()
        return [g.float() for g in torch.autograd.grad(loss, params)]


@contextlib.contextmanager
def applied(params: Sequence[torch.nn.Parameter], delta: Sequence[torch.Tensor]) -> Iterator[None]:
    """Parameters moved by ``delta`` inside the block, restored bit-exactly after."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, d in zip(params, delta):
            p.add_(d.to(p.device, p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def unlearning_delta(adapter: "ModelAdapter", names: Sequence[str], fisher: dict[str, torch.Tensor],
                     encoded: torch.Tensor, cond: Any, draws: Draws, mask: torch.Tensor | None,
                     settings: UnlearnSettings, n_train: int, damping: float) -> tuple[list[torch.Tensor], float, float]:
    """The parameter change that forgets the query, for the parameters ``names`` (same order).

    Also returns the α used (given, or chosen so that the first step has ``settings.relative_step``)
    and the final relative size of the change, rms(Δ)/rms(θ).
    """
    params = named_parameters(adapter, names)
    dev = params[0].device
    lam = group_damping(fisher, names, damping)
    precond = [fisher[n].to(dev) + lam for n in names]
    size = _rms(p.detach() for p in params).clamp_min(1e-30)
    alpha = settings.alpha
    delta = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    for _ in range(settings.steps):
        with applied(params, delta):
            grads = query_gradient(adapter, params, encoded, cond, draws, mask)
        if alpha is None:  # Δ is linear in α: size the first (Newton) step to the target
            unit = _rms(g / (f * n_train) for g, f in zip(grads, precond))
            alpha = float(settings.relative_step * size / unit.clamp_min(1e-30))
        scale = alpha / n_train
        for d, g, f in zip(delta, grads, precond):
            # preconditioned ascent on J: Δ += (α/N) F⁻¹ g − ewc·Δ  (the EWC term's gradient, preconditioned)
            d.mul_(1 - settings.ewc if settings.mode == "ascent" else 0.0).add_(scale * g / f)
    return delta, alpha, float(_rms(delta) / size)


def _rms(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten().double() for t in tensors]).pow(2).mean().sqrt()
