"""Diagonal empirical Fisher, per-segment sensitivities and sketches, from per-segment gradients.

F = mean_i (∇θ L(z_i, θ0))², with L(z_i) the per-segment loss averaged over its draws, on the
parameters unlearning may touch (docs/method.md, section 5). Per-segment gradients (not batch gradients)
make it the empirical Fisher rather than the squared mean gradient.

The maths here consumes chunks of per-segment gradients (:class:`tda_plugin.gradients.GradientChunk`)
from either producer in :mod:`tda_plugin.gradients`: ``passes`` (one forward and backward per segment that
also yields the baseline losses) or ``reference_chunks``, :func:`segment_gradients` (the original
per-segment loop) as chunks, kept as the reference the index build is checked and timed against
(``build_index(..., reference=True)``).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import torch

from .progress import Advance
from .randomness import make_draws

if TYPE_CHECKING:
    from .adapter import Conditioning, ModelAdapter
    from .gradients import GradientChunk
    from .sketch import GradientSketch


def named_parameters(adapter: "ModelAdapter", names: Sequence[str]) -> list[torch.nn.Parameter]:
    params = dict(adapter.module.named_parameters())
    return [params[n] for n in names]


def gradient_names(adapter: "ModelAdapter") -> list[str]:
    """Every parameter of any subset, in a fixed order: one gradient pass serves the Fisher and every subset."""
    return sorted({n for ns in adapter.parameter_groups().values() for n in ns})


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
    """∇θ of each segment's own loss (averaged over its draws), one segment at a time: the reference loop."""
    with gradients_for(params):
        for i in range(encoded.shape[0]):
            cond = adapter.condition([conditioning[i]])
            loss = adapter.loss(encoded[i:i + 1], cond, make_draws(seed, [streams[i]], draws)).mean()
            yield torch.autograd.grad(loss, params)
            if advance:
                advance(1)


def fisher_sums(chunks: Iterable["GradientChunk"], names: Sequence[str], fisher_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Σ_i g_i² over the chunks' segments for ``fisher_names`` (gradients given in ``names`` order), on CPU."""
    position = {n: k for k, n in enumerate(names)}
    acc: dict[str, torch.Tensor] = {}
    for chunk in chunks:
        for n in fisher_names:
            g = chunk.grads[position[n]]
            for row in g:  # one segment at a time, in order: the same sum whatever the chunk size
                term = row.float().pow(2)
                acc[n] = term if n not in acc else acc[n].add_(term)
    return {n: t.cpu() for n, t in acc.items()}


def group_damping(fisher: dict[str, torch.Tensor], names: Sequence[str], damping: float) -> float:
    """λ of one parameter subset: ``damping`` times the mean Fisher diagonal over the subset."""
    total = sum(float(fisher[n].double().sum()) for n in names)
    count = sum(fisher[n].numel() for n in names)
    mean = total / max(1, count)
    return damping * mean if mean > 0 else 1e-12


def statistics(chunks: Iterable["GradientChunk"], names: Sequence[str], groups: dict[str, list[str]],
               fisher: dict[str, torch.Tensor], *, damping: float, sketch: "GradientSketch | None" = None) -> dict[str, torch.Tensor]:
    """Per-segment rows from the chunks' gradients (in ``names`` order) and losses.

    * ``<subset>``: s_i = sqrt(g_iᵀ (F + λI)^-1 g_i) for every parameter subset. To first order,
      unlearning segment i itself would raise its own loss by (α/N)·s_i²; dividing τ_i by s_i removes
      the "hub" segments whose loss rises under any perturbation (relative influence, Barshan et al.
      2020), which is what measured best on the demo (docs/method.md);
    * ``sketch``: each segment's gradient sketch (with ``sketch``), [n, sketch.dim];
    * ``baseline``: the per-draw losses [n, D], when the chunks carry them.
    """
    position = {n: k for k, n in enumerate(names)}
    lam = {g: group_damping(fisher, ns, damping) for g, ns in groups.items()}
    sens: dict[str, list[torch.Tensor]] = {g: [] for g in groups}
    sketches, losses = [], []
    dev: torch.device | None = None
    pre: dict[tuple[str, str], torch.Tensor] = {}
    for chunk in chunks:
        if dev is None:
            dev = chunk.grads[0].device
            pre = {(g, n): fisher[n].to(dev) + lam[g] for g, ns in groups.items() for n in ns}
        b = chunk.grads[0].shape[0]
        for g, ns in groups.items():
            acc = torch.zeros(b, dtype=torch.float64, device=dev)
            for n in ns:
                acc += (chunk.grads[position[n]].float().pow(2) / pre[(g, n)]).reshape(b, -1).sum(dim=1).double()
            sens[g].append(acc.cpu())
        if sketch is not None:
            sketches.append(sketch.of_gradients({n: chunk.grads[position[n]] for n in sketch.names}))
        if chunk.losses.numel():
            losses.append(chunk.losses)
    out = {g: torch.cat(v).sqrt().float() for g, v in sens.items()}
    if sketch is not None:
        out["sketch"] = torch.cat(sketches)
    if losses:
        out["baseline"] = torch.cat(losses)
    return out
