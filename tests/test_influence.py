"""The field's gradient methods (tda_plugin/experiments/influence.py) on known answers: TRAK's kernel against its
closed form, traker's projection against the unprojected kernel, and kronfluence run through the adapter against
gradient products computed here from the adapter's own per-segment gradients."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from .conftest import SEGMENT, SR
from tda_plugin.attributor import Attributor
from tda_plugin.experiments import influence
from tda_plugin.experiments.context import Context
from tda_plugin.experiments.retraining import Query, encode


@pytest.mark.parametrize("n, k", [(12, 40), (40, 12)])
def test_trak_kernel_is_the_damped_closed_form(n: int, k: int) -> None:
    rng = np.random.default_rng(0)
    phi, phq = torch.tensor(rng.normal(size=(n, k))), torch.tensor(rng.normal(size=(3, k)))
    lam = 0.1 * float((phi ** 2).sum()) / min(n, k)
    direct = phq @ torch.linalg.inv(phi.T @ phi + lam * torch.eye(k, dtype=phi.dtype)) @ phi.T  # the k×k form
    assert torch.allclose(influence.kernel_scores(phi, phq, 0.1), direct, rtol=1e-8, atol=1e-10)
    # the damping is relative: scaling every gradient leaves the scores' ranking and ratios alone
    assert torch.allclose(influence.kernel_scores(7 * phi, 7 * phq, 0.1), influence.kernel_scores(phi, phq, 0.1))


def test_traker_projection_approaches_the_unprojected_kernel() -> None:
    rng = np.random.default_rng(1)
    basis = torch.tensor(rng.normal(size=(6, 3000)), dtype=torch.float32)  # gradients with structure, as real ones
    grads = torch.tensor(rng.normal(size=(30, 6)), dtype=torch.float32) @ basis + 0.3 * torch.randn(30, 3000)
    exact = influence.kernel_scores(grads[:24], grads[24:], 0.1).numpy()
    proj = influence.projector(3000, 2048, seed=0)
    both = proj.project(grads, model_id=0)
    sketched = influence.kernel_scores(both[:24], both[24:], 0.1).numpy()
    for row_exact, row_sketch in zip(exact, sketched):
        assert np.corrcoef(row_exact, row_sketch)[0, 1] > 0.95


@pytest.fixture(scope="module")
def context_and_queries(tiny_index: Path, tiny_catalogue: Path) -> tuple[Context, list[Query]]:
    att = Attributor.from_index(tiny_index)
    queries = []
    for name, prompt in (("t1", "high beep"), ("t2", "low hum")):
        audio, _ = sf.read(tiny_catalogue / "audio" / f"{name}.wav", dtype="float32")
        queries.append(encode(att, Query(name, "held-out", audio[None, :SEGMENT], SR, prompt)))
    return Context(att, {}), queries


def _tracked_gradients(ctx: Context, queries: list[Query]) -> tuple[torch.Tensor, torch.Tensor]:
    """The catalogue's and the query's gradients over the subset's linear layers (weights and biases): what
    kronfluence tracks, computed here without it."""
    names = influence._names(ctx)
    params = dict(ctx.att.adapter.module.named_parameters())
    tracked = {f"{t}.{w}" for t in influence.tracked_modules(ctx.att.adapter.module, names) for w in ("weight", "bias")}
    keep = torch.cat([torch.full((params[n].numel(),), n in tracked) for n in names])
    grads, _ = influence.query_gradients(ctx, queries)
    return influence.training_gradients(ctx)[:, keep].double(), grads[:, keep].double()


def test_kronfluence_through_the_adapter_scores_the_adapters_own_gradients(
        context_and_queries: tuple[Context, list[Query]]) -> None:
    ctx, queries = context_and_queries
    train, q = _tracked_gradients(ctx, queries)
    # identity: the plain gradient product g_qᵀg_i, exactly (per-row gradients summed back into per-segment and,
    # both queries in one batch, per-query ones)
    plain = influence.kronfluence_scores(ctx, queries, "identity")
    assert plain.shape == (2, train.shape[0]) and np.allclose(plain, (q @ train.T).numpy(), rtol=1e-4)
    # EK-FAC runs on the same plumbing, records its cost, and leaves the attributor's own model untouched
    before = {n: p.clone() for n, p in ctx.att.adapter.module.named_parameters()}
    ekfac = influence.kronfluence_scores(ctx, queries, "ekfac")
    assert ekfac.shape == (2, train.shape[0]) and np.isfinite(ekfac).all()
    assert all(torch.equal(p, before[n]) for n, p in ctx.att.adapter.module.named_parameters())
    assert all(type(m).__name__ != "TrackedLinear" for m in ctx.att.adapter.module.modules())
    assert ctx.costs["ekfac"]["build_s"] > 0 and ctx.costs["ekfac"]["queries"] == 2
