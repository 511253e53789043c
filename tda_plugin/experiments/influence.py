"""The field's gradient methods beside unlearning: TRAK / D-TRAK and (EK-)FAC influence functions.

Both answer a query with one gradient of its loss and a product with features stored for the catalogue, where
unlearning scores every candidate with forward passes after a step. Their gradients are taken exactly where
unlearning's are: the adapter's own training loss, each segment at its index draws (its cached baseline's draws),
the query at its unlearning draws under its prompt, over the same parameter subset (``blocks``).

* **TRAK / D-TRAK** (Park et al. 2023; Zheng et al., ICLR 2024, for diffusion): features φ_i = Pᵀg_i from a random
  projection P (``traker``'s own block-wise projector, Rademacher, k columns), scores

      τ(q, i) = φ_qᵀ (ΦᵀΦ + λI)⁻¹ φ_i,   λ = damping · tr(ΦᵀΦ) / min(N, k),

  computed in the N×N form (ΦΦᵀ + λI)⁻¹Φφ_q (the same numbers; N is small beside k). D-TRAK's finding that a
  diffusion model's gradient should be that of its training objective at fixed noise and timesteps is what the
  adapter's loss at the index's draws already is. ``trak:exact`` uses P = I (the limit k → ∞, no projection noise).
  traker's ``TRAKer`` itself is not used: it computes gradients by ``torch.func`` over a classifier's
  ``model(x)`` and output function, while these models' loss is the toolkit's objective under fixed draws;
  its projector is the part that carries over.
* **EK-FAC / K-FAC influence** (Grosse et al. 2023; Mlodozeniec et al., ICLR 2025, for diffusion), through
  ``kronfluence``: τ(q, i) = g_qᵀ (G + λI)⁻¹ g_i with G the (eigenvalue-corrected) Kronecker-factored
  Gauss-Newton of the training loss over the subset's linear layers (the empirical Fisher: the objective's own
  targets), λ kronfluence's default (0.1 × the mean eigenvalue). The model the analyzer wraps is a copy, so the
  attributor's own model is never touched.

A higher score says the segment helps the query more (removing it should raise the query's loss), as for every
method of :mod:`.methods`. Each method records what it spent in ``Context.costs``: the catalogue's features once
(``build_s``, per segment) and each query (``query_s``), so the ground truths can set accuracy against cost.
"""
from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import torch

from ..fisher import named_parameters, segment_gradients
from ..gradients import checkpointing
from ..index.builder import segment_conditioning
from ..progress import task
from ..randomness import make_draws, segment_stream
from ..settings import UnlearnSettings
from ..unlearn import query_gradient
from .context import Context
from .retraining import Query

#: the parameters both methods differentiate: unlearning's default subset, so all three see the same weights
SUBSET = UnlearnSettings.subset
#: the query's loss: unlearning's own draws and timesteps
QUERY_LOSS = UnlearnSettings()
#: the projection sizes the issue of record asks for (TRAK's paper uses 2 048-20 480 on image models)
TRAK_DIMS = (2048, 8192, 32768)
TRAK_DAMPING = 0.1
#: the extra that brings traker and kronfluence
EXTRA = "pip install 'tda-plugin[eval]'"


def _ids(ctx: Context) -> list[int]:
    return sorted(ctx.att.index.segments)


def _names(ctx: Context) -> list[str]:
    return ctx.att.adapter.parameter_groups()[SUBSET]


def _cost(ctx: Context, method: str, **seconds: float) -> None:
    row = ctx.costs.setdefault(method, {"segments": len(ctx.att.index.segments)})
    for key, value in seconds.items():
        row[key] = round(row.get(key, 0.0) + value, 3)


def training_gradients(ctx: Context) -> torch.Tensor:
    """[N, p] flattened gradients of every segment's loss at its index draws (segment-id order), once per context."""
    if "training_gradients" not in ctx.memo:
        att, ids = ctx.att, _ids(ctx)
        s = att.index.meta.settings
        segs = [att.index.segments[i] for i in ids]
        conds = [segment_conditioning(att.index.tracks[g.track_id], g) for g in segs]
        rows = []
        started = time.process_time()
        with task("segment gradients", len(ids)) as advance, checkpointing(att.adapter, False):
            for grad in segment_gradients(att.adapter, named_parameters(att.adapter, _names(ctx)),
                                          att.index.gather(ids, "latents"), conds, [segment_stream(i) for i in ids],
                                          seed=s["seed"], draws=s["draws"], advance=advance):
                rows.append(torch.cat([g.detach().float().flatten().cpu() for g in grad]))
        ctx.memo["training_gradients"] = torch.stack(rows)
        ctx.memo["training_gradients_s"] = time.process_time() - started
    return ctx.memo["training_gradients"]


def query_gradients(ctx: Context, queries: Sequence[Query]) -> tuple[torch.Tensor, float]:
    """[Q, p] gradients of each query's loss (its unlearning draws, silence masked), and the CPU seconds they took."""
    att, names = ctx.att, _names(ctx)
    params = named_parameters(att.adapter, names)
    rows, started = [], time.process_time()
    for q in queries:
        if "query_gradient" not in q.memo:
            assert q.encoded is not None
            draws = att.query_draws(q.encoded, QUERY_LOSS)
            grads = query_gradient(att.adapter, params, q.encoded.encoded, att.adapter.condition(q.encoded.conditioning),
                                   draws, q.encoded.mask if QUERY_LOSS.mask_silence else None)
            q.memo["query_gradient"] = torch.cat([g.flatten().cpu() for g in grads])
        rows.append(q.memo["query_gradient"])
    return torch.stack(rows), time.process_time() - started


# -- TRAK -------------------------------------------------------------------------------------------------------
def kernel_scores(features: torch.Tensor, queries: torch.Tensor, damping: float) -> torch.Tensor:
    """[Q, N] TRAK scores φ_qᵀ(ΦᵀΦ + λI)⁻¹φ_i of ``queries`` [Q, k] against ``features`` Φ [N, k], in float64;
    λ = ``damping`` · tr(ΦᵀΦ) / min(N, k) (relative to the mean non-zero eigenvalue, so it means the same at every k)."""
    phi, phq = features.double(), queries.double()
    n, k = phi.shape
    gram = phi @ phi.T
    lam = damping * float(torch.trace(gram)) / min(n, k)
    # Φ(ΦᵀΦ + λI)⁻¹ = (ΦΦᵀ + λI)⁻¹Φ: an N×N solve instead of a k×k one
    return torch.linalg.solve(gram + lam * torch.eye(n, dtype=gram.dtype), phi @ phq.T).T


def projector(dim: int, k: int, seed: int) -> Any:
    """traker's block-wise Rademacher projector on the CPU (its CUDA one needs ``fast_jl`` and a GPU)."""
    from trak.projectors import BasicProjector, ProjectionType

    return BasicProjector(grad_dim=dim, proj_dim=k, seed=seed, proj_type=ProjectionType.rademacher,
                          device=torch.device("cpu"), block_size=min(k, 256))


def trak(k: int | None, damping: float = TRAK_DAMPING) -> Any:
    """A method: TRAK scores with a k-column projection (``None``: unprojected)."""
    name = trak_name(k, damping)

    def score(ctx: Context, queries: Sequence[Query]) -> list[dict[int, float]]:
        train = training_gradients(ctx)
        grads, query_s = query_gradients(ctx, queries)
        key = ("trak_features", k)
        started = time.process_time()
        if k is None:
            features, projected = train, grads
        else:  # one pass of the projector (which generates its matrix block by block) for catalogue and queries
            proj = projector(train.shape[1], k, int(ctx.att.index.meta.settings["seed"]))
            if key not in ctx.memo:
                both = proj.project(torch.cat([train, grads]), model_id=0)
                ctx.memo[key], projected = both[:len(train)], both[len(train):]
            else:
                projected = proj.project(grads, model_id=0)
            features = ctx.memo[key]
        project_s = time.process_time() - started
        started = time.process_time()
        out = kernel_scores(features, projected, damping)
        _cost(ctx, name, build_s=ctx.memo["training_gradients_s"], query_s=query_s + project_s + time.process_time() - started,
              queries=len(queries))
        return [dict(zip(_ids(ctx), row.tolist())) for row in out]

    return score


def trak_name(k: int | None, damping: float = TRAK_DAMPING) -> str:
    base = "trak:exact" if k is None else f"trak:{k}"
    return base if damping == TRAK_DAMPING else f"{base}:{damping:g}"


# -- EK-FAC / K-FAC through kronfluence -------------------------------------------------------------------
def _segment_batch(ctx: Context, ids: Sequence[int]) -> tuple[torch.Tensor, Any, Any]:
    att = ctx.att
    s = att.index.meta.settings
    segs = [att.index.segments[i] for i in ids]
    cond = att.adapter.condition([segment_conditioning(att.index.tracks[g.track_id], g) for g in segs])
    return att.index.gather(list(ids), "latents"), cond, make_draws(s["seed"], [segment_stream(i) for i in ids], s["draws"])


class _Task:
    """kronfluence's Task over an adapter: a batch is a tensor of positions (segments or queries), the training
    loss the adapter's objective at the segments' index draws, the measurement the query's loss. The adapter runs
    every (example, draw) as a row of one forward pass, so kronfluence's per-row gradients are summed back into
    per-example ones (``post_process_per_sample_gradient``)."""

    enable_post_process_per_sample_gradient = True

    def __init__(self, ctx: Context, adapter: Any, queries: Sequence[Query], tracked: list[str]) -> None:
        self.ctx, self.adapter, self.queries, self.tracked = ctx, adapter, queries, tracked
        self.ids = _ids(ctx)
        self.examples = 1

    def compute_train_loss(self, batch: torch.Tensor, model: torch.nn.Module, sample: bool = False) -> torch.Tensor:
        encoded, cond, draws = _segment_batch(self.ctx, [self.ids[int(j)] for j in batch])
        self.examples = len(batch)
        return self.adapter.loss(encoded, cond, draws).mean(dim=1).sum()

    def compute_measurement(self, batch: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        """The batch's query losses in one forward pass (their windows stacked; each query's loss its mean over its
        windows and draws), so that each tracked layer runs once and its rows sum back into per-query gradients."""
        encoded = [self.queries[int(j)].encoded for j in batch]
        assert all(e is not None for e in encoded)
        windows = [e.encoded.shape[0] for e in encoded]
        if len(set(windows)) != 1:
            raise ValueError("queries of one kronfluence batch need the same number of windows")
        draws = self.ctx.att.query_draws(encoded[0], QUERY_LOSS)  # the same streams and draws for every query
        stacked = replace(draws, streams=draws.streams * len(encoded))
        masks = [e.mask for e in encoded]
        mask = torch.cat(masks) if QUERY_LOSS.mask_silence and all(m is not None for m in masks) else None
        loss = self.adapter.loss(torch.cat([e.encoded for e in encoded]),
                                 self.adapter.condition([c for e in encoded for c in e.conditioning]), stacked, mask)
        self.examples = len(batch)
        return loss.reshape(len(batch), -1).mean(dim=1).sum()

    def get_influence_tracked_modules(self) -> list[str]:
        return self.tracked

    def get_attention_mask(self, batch: Any) -> None:
        return None

    def post_process_per_sample_gradient(self, module_name: str, gradient: torch.Tensor) -> torch.Tensor:
        return gradient.reshape(self.examples, -1, *gradient.shape[1:]).sum(dim=1)


class _Positions(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> int:
        return j


def tracked_modules(module: torch.nn.Module, names: Sequence[str]) -> list[str]:
    """The linear layers whose weights are in the subset ``names`` (what a Kronecker factorisation covers)."""
    wanted = set(names)
    return [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear) and f"{n}.weight" in wanted]


def model_copy(adapter: Any) -> Any:
    """The adapter with its own copy of every network it holds (one memo, so shared submodules stay shared)."""
    clone, memo = copy.copy(adapter), {}
    for key, value in vars(adapter).items():
        if isinstance(value, torch.nn.Module):
            setattr(clone, key, copy.deepcopy(value, memo))
    return clone


def kronfluence_scores(ctx: Context, queries: Sequence[Query], strategy: str, *, batch: int = 2) -> np.ndarray:
    """[Q, N] influence scores by ``kronfluence`` with ``strategy`` ("ekfac", "kfac", "diagonal" or "identity")."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    att = ctx.att
    adapter = model_copy(att.adapter)  # prepare_model wraps the linear layers in place
    tracked = tracked_modules(adapter.module, _names(ctx))
    task_ = type("AdapterTask", (_Task, Task), {})(ctx, adapter, queries, tracked)
    model = prepare_model(adapter.module, task_)
    params = [p for n, p in model.named_parameters() if any(n.startswith(t + ".") for t in tracked)]
    n = len(ctx.att.index.segments)
    with tempfile.TemporaryDirectory() as tmp, checkpointing(adapter, False):
        for p in params:
            p.requires_grad_(True)
        analyzer = Analyzer(analysis_name="tda", model=model, task=task_, cpu=True, disable_tqdm=True, output_dir=tmp)
        factor_args = FactorArguments(strategy=strategy, use_empirical_fisher=True, has_shared_parameters=False)
        started = time.process_time()
        analyzer.fit_all_factors(factors_name=strategy, dataset=_Positions(n), per_device_batch_size=batch,
                                 factor_args=factor_args)
        build_s = time.process_time() - started
        started = time.process_time()
        # every query in one batch of equally long ones: one pass over the catalogue serves them all
        same = len({q.encoded.encoded.shape for q in queries if q.encoded is not None}) == 1
        analyzer.compute_pairwise_scores(scores_name="q", factors_name=strategy, query_dataset=_Positions(len(queries)),
                                         train_dataset=_Positions(n),
                                         per_device_query_batch_size=len(queries) if same else 1,
                                         per_device_train_batch_size=batch,
                                         score_args=ScoreArguments(compute_per_module_scores=False))
        scores = analyzer.load_pairwise_scores("q")["all_modules"].double().numpy()
        pairwise_s = time.process_time() - started
    # the pairwise pass recomputes every segment's gradient (TRAK would store them: the build's price); the query's
    # own share is its gradient and a product with the preconditioned catalogue
    _cost(ctx, strategy, build_s=build_s, pairwise_s=pairwise_s, queries=len(queries))
    return scores


def influence(strategy: str) -> Any:
    def score(ctx: Context, queries: Sequence[Query]) -> list[dict[int, float]]:
        return [dict(zip(_ids(ctx), row.tolist())) for row in kronfluence_scores(ctx, queries, strategy)]

    return score


def needs_library(module: str) -> Any:
    """The availability of a method that needs ``module`` (named with the extra that installs it)."""
    def available(ctx: Context) -> str | None:
        try:
            __import__(module)
        except ImportError:
            return f"needs {module} ({EXTRA})"
        return None if SUBSET in ctx.att.adapter.parameter_groups() else f"the model has no {SUBSET!r} parameters"

    return available
