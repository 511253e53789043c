"""Per-segment gradients of the training loss, with the per-draw losses of the same forward pass.

The index build needs, for every segment i, the gradient g_i = ∇θ L(z_i, θ0) of its loss averaged over
its D draws (for the Fisher, the sensitivities and the gradient sketch) and its per-draw losses
L(z_i, θ0; j) (the baseline cache). One forward and one backward per segment give both (docs/method.md,
sections 4, 5 and 9), where the reference build (:func:`reference_chunks`, over
:func:`tda_plugin.fisher.segment_gradients`) takes a separate forward for the baseline.

Two formulations of the same numbers (equal to float rounding; each deterministic on its own):

* per segment (``GradientPlan.batch == 1``): one autograd call per segment, all its draws in one forward.
  On CPU the work is compute bound and this is the faster one (docs/performance.md);
* batched (``batch > 1``): ``torch.func.vmap(grad(...))`` over ``batch`` segments. The adapter's own
  ``loss`` runs unchanged inside the transform, once per segment, so any ModelAdapter works: its draws
  are generated outside the transform and each segment is handed its own rows, and its conditioning is
  built per segment and stacked. An adapter whose loss the transform cannot run (data-dependent control
  flow, saved-tensor hooks) falls back to the per-segment loop, with a warning.

Activation checkpointing (stable-audio-tools' ContinuousTransformer always checkpoints its blocks)
recomputes every block's forward during the backward, and torch.func cannot run it at all. Adapters
that expose an ``activation_checkpointing`` switch get it turned off here when memory allows
(:func:`plan_for`), which is exact: checkpointing changes what is stored, not what is computed.
"""
from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch.utils._pytree import tree_flatten, tree_map

from .fisher import gradients_for, segment_gradients
from .progress import Advance
from .randomness import Draws, make_draws

if TYPE_CHECKING:
    from .adapter import Conditioning, ModelAdapter

log = logging.getLogger(__name__)

#: fraction of free device memory a batched gradient pass may plan to use
MEMORY_FRACTION = 0.6
#: most segments per batched call (past this, kernels are large enough that batching gains nothing)
MAX_BATCH = 64
#: adapters whose loss torch.func could not run (or ran wrongly): one segment at a time from then on
_UNBATCHABLE: "weakref.WeakSet[Any]" = weakref.WeakSet()
#: adapters whose batched gradients were checked against the per-segment loop once
_CHECKED: "weakref.WeakSet[Any]" = weakref.WeakSet()
#: a batched gradient further than this (relative, over all parameters) from the loop's is wrong, not rounding
CHECK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class GradientPlan:
    """How per-segment gradients are computed; every plan gives the same numbers to float rounding."""

    #: segments per autograd call: 1 is the per-segment loop, more is vmap(grad) over that many
    batch: int = 1
    #: keep the adapter's activation checkpointing (recompute each block in the backward)
    recompute: bool = False


@dataclass
class GradientChunk:
    """Consecutive segments' per-draw losses [b, D] (float32, CPU) and gradients, one [b, *shape] per parameter."""

    losses: torch.Tensor
    grads: list[torch.Tensor]


@contextlib.contextmanager
def checkpointing(adapter: "ModelAdapter", enabled: bool) -> Iterator[None]:
    """The adapter's activation checkpointing set to ``enabled`` inside the block (if it has the switch)."""
    if not hasattr(adapter, "activation_checkpointing"):
        yield
        return
    before = adapter.activation_checkpointing
    adapter.activation_checkpointing = enabled
    try:
        yield
    finally:
        adapter.activation_checkpointing = before


def plan_for(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
             conditioning: "Conditioning", stream: str, *, seed: int, draws: int) -> GradientPlan:
    """The plan for this adapter and device.

    CPU: the per-segment loop without recomputation (measured fastest; memory is one segment's
    activations). CUDA: one probe segment without recomputation measures the peak memory per segment;
    as many segments as fit in ``MEMORY_FRACTION`` of the free memory are batched, and if not even one
    fits, the adapter's checkpointing stays on. Not measured on a GPU yet (docs/performance.md).
    """
    dev = adapter.device
    if dev.type != "cuda":
        return GradientPlan(1, False)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    try:
        next(passes(adapter, params, encoded[:1], [conditioning], [stream], seed=seed, draws=draws,
                    plan=GradientPlan(1, False)))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return GradientPlan(1, True)
    per_segment = max(1, torch.cuda.max_memory_allocated(dev) - before)
    free, _ = torch.cuda.mem_get_info(dev)
    fit = int(MEMORY_FRACTION * free // per_segment)
    return GradientPlan(max(1, min(MAX_BATCH, fit)), fit < 1)


def passes(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
           conditioning: Sequence["Conditioning"], streams: Sequence[str], *, seed: int, draws: int,
           plan: GradientPlan = GradientPlan(), advance: Advance | None = None) -> Iterator[GradientChunk]:
    """Losses and gradients of consecutive chunks of ``plan.batch`` segments, in order.

    Segment i's loss is the adapter's loss of ``encoded[i]`` under ``conditioning[i]`` and the draws of
    ``streams[i]`` (all ``draws`` of them), its gradient that of the mean over the draws, with respect to
    ``params`` (the model stays frozen otherwise). Chunks start at segment 0 whatever the caller, so a
    unit of work (a shard, a Fisher chunk) always groups its segments the same way.
    """
    n = encoded.shape[0]
    names = _names(adapter, params)
    with gradients_for(params), checkpointing(adapter, plan.recompute):
        for i in range(0, n, plan.batch):
            j = min(n, i + plan.batch)
            chunk = None
            if j - i > 1 and adapter not in _UNBATCHABLE:
                chunk = _vmapped(adapter, names, params, encoded[i:j], conditioning[i:j], streams[i:j], seed, draws)
                if chunk is not None and adapter not in _CHECKED:
                    chunk = _checked(adapter, params, chunk, encoded[i:i + 1], conditioning[i], streams[i], seed, draws)
            if chunk is None:
                chunk = _looped(adapter, params, encoded[i:j], conditioning[i:j], streams[i:j], seed, draws)
            yield chunk
            if advance:
                advance(j - i)


def reference_chunks(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
                     conditioning: Sequence["Conditioning"], streams: Sequence[str], *, seed: int, draws: int,
                     advance: Advance | None = None) -> Iterator[GradientChunk]:
    """:func:`segment_gradients` as one-segment chunks without losses (the reference build scores the
    baseline in a separate forward pass, and keeps the adapter's activation checkpointing)."""
    for grads in segment_gradients(adapter, params, encoded, conditioning, streams, seed=seed, draws=draws,
                                   advance=advance):
        yield GradientChunk(torch.empty(1, 0), [g[None] for g in grads])


def _looped(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
            conditioning: Sequence["Conditioning"], streams: Sequence[str], seed: int, draws: int) -> GradientChunk:
    losses, grads = [], []
    for i in range(encoded.shape[0]):
        # a fresh copy: every segment is computed on an identically aligned buffer, so the same segment gives
        # the same bits whichever tensor it was read from (the Fisher sample and its shard)
        x = encoded[i:i + 1].clone()
        per_draw = adapter.loss(x, adapter.condition([conditioning[i]]), make_draws(seed, [streams[i]], draws))
        grads.append(torch.autograd.grad(per_draw.mean(), params))
        losses.append(per_draw.detach().float().cpu())
    return GradientChunk(torch.cat(losses), [torch.stack(gs) for gs in zip(*grads)])


def _checked(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter], chunk: GradientChunk,
             first: torch.Tensor, conditioning: "Conditioning", stream: str, seed: int, draws: int) -> GradientChunk | None:
    """The chunk if its first segment's gradient matches the per-segment loop's (checked once per adapter).

    torch.func either refuses a model it cannot transform or transforms it right, for every adapter tested;
    one segment's comparison guards an index against a model that would be transformed wrongly."""
    loop = _looped(adapter, params, first, [conditioning], [stream], seed, draws)
    diff = sum(float((a[0] - b[0]).double().pow(2).sum()) for a, b in zip(chunk.grads, loop.grads))
    norm = sum(float(b[0].double().pow(2).sum()) for b in loop.grads)
    _CHECKED.add(adapter)
    if diff <= CHECK_TOLERANCE ** 2 * max(norm, 1e-300):
        return chunk
    log.warning("%s: batched per-segment gradients differ from the per-segment loop's (relative %.1e); computing "
                "them one segment at a time", adapter.name, (diff / max(norm, 1e-300)) ** 0.5)
    _UNBATCHABLE.add(adapter)
    return None


class _LossOf(torch.nn.Module):
    """The adapter's loss as a module whose only child is the adapter's model, for ``functional_call``."""

    def __init__(self, adapter: "ModelAdapter") -> None:
        super().__init__()
        self.model = adapter.module
        self.adapter = adapter

    def forward(self, encoded: torch.Tensor, cond: Any, draws: Draws) -> torch.Tensor:
        return self.adapter.loss(encoded, cond, draws)


@dataclass(frozen=True)
class _DrawsOfOne(Draws):
    """Inside vmap: one segment's rows of draws generated for the whole batch (``index`` is batched)."""

    batch: Draws | None = None
    index: torch.Tensor | None = None

    def _generate(self, shape: Sequence[int], kind: str) -> torch.Tensor:
        rows = self.batch._generate(shape, kind)  # type: ignore[union-attr]
        return rows.index_select(0, self.index.reshape(1))  # type: ignore[union-attr]


def _vmapped(adapter: "ModelAdapter", names: list[str], params: Sequence[torch.nn.Parameter], encoded: torch.Tensor,
             conditioning: Sequence["Conditioning"], streams: Sequence[str], seed: int, draws: int) -> GradientChunk | None:
    """vmap(grad) over the chunk; None when this chunk cannot be batched (the caller loops instead)."""
    from torch.func import functional_call, grad, vmap

    conds = [adapter.condition([c]) for c in conditioning]
    flat = [tree_flatten(c) for c in conds]
    if any(spec != flat[0][1] for _, spec in flat) or not all(
            torch.is_tensor(a) and a.shape == b.shape for leaves, _ in flat for a, b in zip(leaves, flat[0][0])):
        return None  # per-segment conditioning of different structure or shape cannot be stacked
    stacked = tree_map(lambda *xs: torch.stack(xs), *conds)
    whole = make_draws(seed, streams, draws)
    module = _LossOf(adapter)
    weights = {f"model.{n}": p.detach() for n, p in zip(names, params)}

    def one(w: dict[str, torch.Tensor], x: torch.Tensor, cond: Any, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mine = _DrawsOfOne(seed, whole.streams[:1], whole.quantiles, whole.indices, batch=whole, index=index)
        per_draw = functional_call(module, w, (x[None], cond, mine))
        return per_draw.mean(), per_draw.detach()

    try:
        grads, per_draw = vmap(grad(one, has_aux=True), in_dims=(None, 0, 0, 0), randomness="same")(
            weights, encoded.to(adapter.device), stacked, torch.arange(encoded.shape[0]))
    except (RuntimeError, NotImplementedError) as exc:
        log.warning("%s: per-segment gradients cannot be batched with torch.func (%s); computing them one "
                    "segment at a time", adapter.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        _UNBATCHABLE.add(adapter)
        return None
    return GradientChunk(per_draw.reshape(encoded.shape[0], -1).float().cpu(), [grads[f"model.{n}"] for n in names])


def _names(adapter: "ModelAdapter", params: Sequence[torch.nn.Parameter]) -> list[str]:
    by_id = {id(p): n for n, p in adapter.module.named_parameters()}
    return [by_id[id(p)] for p in params]
