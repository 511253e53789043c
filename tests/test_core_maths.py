"""The core maths of docs/method.md, pinned with answers computed here, independently of the code under test.

On the tiny random DiT index (stable-audio-tools' architecture, 12 segments, 4 draws): per-segment
gradients are taken here with autograd on the model's loss, and from them the Fisher, λ, s_i, the
Newton step Δ, the default α and the first-order loss changes are rebuilt by their formulas and
compared with what the index and the Attributor hold. Plus the credit rules and the settings that
guard the maths (damping, the normalisation floor, what the prefilter ranks by). Each runs in seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tda_plugin import Attributor, AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.audio import load as load_audio
from tda_plugin.cli.app import app
from tda_plugin.credits import build_credits
from tda_plugin.errors import TdaError
from tda_plugin.fisher import named_parameters
from tda_plugin.index import vectors
from tda_plugin.index.builder import fisher_sample, segment_conditioning
from tda_plugin.index.catalog_db import SegmentRow, TrackRow
from tda_plugin.randomness import make_draws, query_stream, segment_stream
from tda_plugin.unlearn import applied

from .conftest import SEGMENT, SR

DAMPING = 0.1  # IndexSettings' default, which tiny_index uses


@pytest.fixture(scope="module")
def att(tiny_index: Path) -> Attributor:
    return Attributor.from_index(tiny_index)


@pytest.fixture(scope="module")
def names(att: Attributor) -> list[str]:
    return att.adapter.parameter_groups()["blocks"]


def flat_grad(att: Attributor, names: list[str], encoded: torch.Tensor, conds: list, draws, mask=None) -> torch.Tensor:
    """∇θ of the mean loss, here with plain autograd (not tda_plugin.fisher / unlearn)."""
    params = named_parameters(att.adapter, names)
    for p in params:
        p.requires_grad_(True)
    try:
        loss = att.adapter.loss(encoded, att.adapter.condition(conds), draws, mask).mean()
        grads = torch.autograd.grad(loss, params)
    finally:
        for p in params:
            p.requires_grad_(False)
    return torch.cat([g.flatten() for g in grads]).double()


@pytest.fixture(scope="module")
def gradients(att: Attributor, names: list[str]) -> torch.Tensor:
    """[N, P] per-segment gradients g_i = ∇θ L(z_i, θ0), L averaged over the segment's index draws."""
    seed, draws = att.index.meta.settings["seed"], att.index.meta.settings["draws"]
    rows = []
    for sid in sorted(att.index.segments):
        seg = att.index.segments[sid]
        rows.append(flat_grad(att, names, att.index.gather([sid], "latents"),
                              [segment_conditioning(att.index.tracks[seg.track_id], seg)],
                              make_draws(seed, [segment_stream(sid)], draws)))
    return torch.stack(rows)


def flat_fisher(att: Attributor, names: list[str]) -> torch.Tensor:
    return torch.cat([att.fisher[n].flatten() for n in names]).double()


@pytest.fixture(scope="module")
def query(att: Attributor, tiny_catalogue: Path):
    data, _ = load_audio(tiny_catalogue / "audio" / "t1.wav")
    return att.encode_query(data[:, :SEGMENT], SR, "high beep")


@pytest.fixture(scope="module")
def step(att: Attributor, query) -> tuple[list[str], list[torch.Tensor], float, float]:
    """The default path: Newton step, α chosen per query from the default relative step."""
    return att.forget(query, UnlearnSettings())


def test_fisher_is_the_mean_of_squared_per_segment_gradients(att, names, gradients) -> None:
    ids = sorted(att.index.segments)
    sample = fisher_sample(ids, att.index.meta.settings["fisher_segments"], att.index.meta.settings["seed"])
    expected = gradients[[ids.index(i) for i in sample]].pow(2).mean(dim=0)
    assert torch.allclose(flat_fisher(att, names), expected, rtol=1e-4, atol=1e-12)
    # the squared *mean* gradient (a batch gradient squared) is a different, smaller thing
    assert float(gradients[[ids.index(i) for i in sample]].mean(dim=0).pow(2).sum()) < 0.9 * float(expected.sum())


def test_damping_and_sensitivities_are_as_documented(att, names, gradients) -> None:
    fisher = flat_fisher(att, names)
    lam = DAMPING * float(fisher.mean())  # λ_S = damping · mean of F over every scalar of the subset
    from tda_plugin.fisher import group_damping

    assert group_damping(att.fisher, names, DAMPING) == pytest.approx(lam, rel=1e-9)
    expected = (gradients.pow(2) / (fisher + lam)).sum(dim=1).sqrt()  # s_i = sqrt(g_iᵀ (F+λI)⁻¹ g_i)
    stored = att.index.baseline_rows(sorted(att.index.segments), "sensitivity.blocks").double()
    assert torch.allclose(stored, expected, rtol=1e-4)


def test_newton_step_and_default_alpha(att, names, query, step) -> None:
    step_names, delta, alpha, relative = step
    assert step_names == names
    fisher = flat_fisher(att, names)
    lam = DAMPING * float(fisher.mean())
    q_draws = make_draws(att.index.meta.settings["seed"] + 1, [query_stream(w) for w in range(len(query.conditioning))],
                         UnlearnSettings().unlearn_draws)
    g_q = flat_grad(att, names, query.encoded, query.conditioning, q_draws, query.mask)
    n = len(att.index.segments)
    expected = (alpha / n) * g_q / (fisher + lam)  # Δ = (α/N)(F+λI)⁻¹ ∇L(ẑ)
    got = torch.cat([d.flatten() for d in delta]).double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-12 * float(expected.abs().max()))
    theta = torch.cat([p.detach().flatten() for p in named_parameters(att.adapter, names)]).double()
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    assert rms(got) / rms(theta) == pytest.approx(UnlearnSettings().relative_step, rel=1e-4)
    assert relative == pytest.approx(UnlearnSettings().relative_step, rel=1e-4)


def test_step_raises_the_query_loss_and_its_negation_lowers_it(att, names, query, step) -> None:
    _, delta, _, _ = step
    params = named_parameters(att.adapter, names)
    q_draws = make_draws(att.index.meta.settings["seed"] + 1, [query_stream(w) for w in range(len(query.conditioning))], 64)

    def query_loss() -> float:
        with torch.no_grad():
            return float(att.adapter.loss(query.encoded, att.adapter.condition(query.conditioning), q_draws, query.mask).mean())

    before = query_loss()
    with applied(params, delta):
        up = query_loss()
    with applied(params, [-d for d in delta]):
        down = query_loss()
    assert down < before < up


def test_loss_changes_are_first_order_g_dot_delta(att, gradients, step) -> None:
    names, delta, _, _ = step
    ids = sorted(att.index.segments)
    tau, score = att.exact_scores(ids, names, delta, UnlearnSettings(), batch_size=64)
    linear = gradients @ torch.cat([d.flatten() for d in delta]).double()  # τ_i ≈ g_iᵀΔ
    assert torch.allclose(tau.double(), linear, rtol=0, atol=0.05 * float(linear.abs().max()))
    assert np.corrcoef(tau.numpy(), linear.numpy())[0, 1] > 0.99
    sens = att.index.baseline_rows(ids, "sensitivity.blocks")
    assert torch.allclose(score, tau / sens)  # s_i = τ_i / s_i under "self"


def test_gradient_sketch_recall_on_a_known_ranking(att, gradients, query, step) -> None:
    """The known answer is the first-order score g_iᵀΔ / s_i from the full gradients; the sketch's own
    inner-product search must keep its top 3 inside its top 6 (of 12)."""
    names, delta, _, _ = step
    ids = sorted(att.index.segments)
    exact = (gradients @ torch.cat([d.flatten() for d in delta]).double()) / gradients.pow(2).div(
        flat_fisher(att, names) + DAMPING * float(flat_fisher(att, names).mean())).sum(dim=1).sqrt()
    best = {ids[k] for k in exact.argsort(descending=True)[:3].tolist()}
    found = set(vectors.search(att.index.vectors(), att.query_vector(query)[0], 6).tolist())
    assert best <= found


# -- credits: one consistent definition ------------------------------------------------------------
def _catalogue(scores: dict[int, tuple[int, float]]) -> tuple[list, dict, dict]:
    """segment id -> (track id, score); artist of track k is "A" for k < 2, else "B"."""
    segments = {sid: SegmentRow(sid, tid, 0, 0.0, 1.0, 0) for sid, (tid, _) in scores.items()}
    tracks = {tid: TrackRow(tid, f"t{tid}.wav", f"t{tid}.wav", f"T{tid}", "A" if tid < 2 else "B", "CC0", None, 1.0)
              for tid in {t for t, _ in scores.values()}}
    ranked = sorted(((sid, s) for sid, (_, s) in scores.items()), key=lambda kv: -kv[1])
    return ranked, segments, tracks


def test_credits_are_in_share_order_and_negative_scores_earn_nothing() -> None:
    # track 0: +5 and -4; track 1: +2; track 2: -1 only; track 3: +1
    ranked, segments, tracks = _catalogue({0: (0, 5.0), 1: (0, -4.0), 2: (1, 2.0), 3: (2, -1.0), 4: (3, 1.0)})
    segs, credits, artists = build_credits(ranked, segments, tracks, top=10)
    assert len(segs) == 5
    assert [c["track_id"] for c in credits] == [0, 1, 3]  # track 2 holds nothing positive: not credited
    assert [c["share"] for c in credits] == pytest.approx([5 / 8, 2 / 8, 1 / 8])
    assert [c["score"] for c in credits] == pytest.approx([5.0, 2.0, 1.0])
    assert [a["artist"] for a in artists] == ["A", "B"] and [a["share"] for a in artists] == pytest.approx([7 / 8, 1 / 8])
    shares = [c["share"] for c in credits]
    assert shares == sorted(shares, reverse=True) and all(s > 0 for s in shares)


def test_max_credits_a_track_by_its_best_segment_not_by_its_count() -> None:
    # track 0 holds the top segment (+5); track 1 three middling ones (+3 each, +9 in all)
    ranked, segments, tracks = _catalogue({0: (0, 5.0), 1: (1, 3.0), 2: (1, 3.0), 3: (1, 3.0), 4: (2, -1.0)})
    _, by_sum, _ = build_credits(ranked, segments, tracks, top=10, track_credit="sum")
    _, by_max, artists = build_credits(ranked, segments, tracks, top=10, track_credit="max")
    assert [c["track_id"] for c in by_sum] == [1, 0] and [c["score"] for c in by_sum] == pytest.approx([9.0, 5.0])
    assert [c["track_id"] for c in by_max] == [0, 1] and [c["share"] for c in by_max] == pytest.approx([5 / 8, 3 / 8])
    assert [a["share"] for a in artists] == pytest.approx([1.0])  # both tracks are artist A's


def test_no_positive_score_credits_nobody() -> None:
    ranked, segments, tracks = _catalogue({0: (0, -1.0), 1: (1, -2.0)})
    segs, credits, artists = build_credits(ranked, segments, tracks, top=10)
    assert len(segs) == 2 and credits == [] and artists == []


# -- settings and properties that guard the maths ---------------------------------------------------
def test_normalisation_floor_is_a_property_of_the_index(att) -> None:
    """A near-zero sensitivity is floored at 1e-6 of the index's largest, whoever else is scored."""
    key = "sensitivity.blocks"
    ids = sorted(att.index.segments)
    saved = att.index.baseline[key].clone()
    try:
        att.index.baseline[key][att.index._row[ids[0]]] = 1e-20  # a segment without gradient
        tau = torch.tensor([1e-3, 1e-3])
        un = UnlearnSettings()
        alone = att.normalised(ids[:1], tau[:1], un)
        beside = att.normalised(ids[:2], tau, un)
        assert float(alone[0]) == float(beside[0]) == pytest.approx(1e-3 / (float(saved.max()) * 1e-6), rel=1e-5)
    finally:
        att.index.baseline[key] = saved


def test_damping_zero_is_refused(tiny_index: Path, tiny_catalogue: Path) -> None:
    for make in (lambda: UnlearnSettings(damping=0.0), lambda: IndexSettings(damping=0.0)):
        with pytest.raises(TdaError, match="damping must be positive"):
            make()
    r = CliRunner().invoke(app, ["attribute", str(tiny_catalogue / "audio" / "t1.wav"), "--index", str(tiny_index),
                                 "--damping", "0", "--sink", "none"])
    assert r.exit_code == 3
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error:") and "damping must be positive" in r.stderr


def test_the_track_credit_rule_changes_the_credits_only(att, tiny_catalogue: Path) -> None:
    data, _ = load_audio(tiny_catalogue / "audio" / "t1.wav")
    results = {rule: att.attribute(data[:, :SEGMENT], SR, prompt="high beep", settings=AttributeSettings(
        UnlearnSettings(unlearn_draws=2), candidates="all", track_credit=rule)) for rule in ("max", "sum")}
    assert results["max"].scores == results["sum"].scores and results["max"].segments == results["sum"].segments
    for rule, result in results.items():
        assert result.method["track_credit"] == rule
        ranked = sorted(result.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        credits = [{k: v for k, v in c.items() if k != "first_share"} for c in result.credits]  # the bootstrap's own
        assert credits == build_credits(ranked, att.index.segments, att.index.tracks, 10, rule)[1]
    with pytest.raises(TdaError, match="unknown track credit 'mean'"):
        AttributeSettings(track_credit="mean")  # type: ignore[arg-type]


def test_the_json_says_what_ranked_the_candidates(att, tiny_catalogue: Path) -> None:
    data, _ = load_audio(tiny_catalogue / "audio" / "t1.wav")
    clip = data[:, :SEGMENT]

    def prefilter(**unlearn) -> object:
        settings = AttributeSettings(UnlearnSettings(unlearn_draws=2, **unlearn), candidates=6, top=3)
        return att.attribute(clip, SR, prompt="high beep", settings=settings).method["prefilter"]

    assert prefilter() == {"embedder": "gradient_sketch", "ranks_by": "first-order τ/s over blocks (index damping)",
                           "matches_score": True}
    assert prefilter(subset="self_attn")["matches_score"] is False
    assert prefilter(normalize="none")["matches_score"] is False
    every = att.attribute(clip, SR, prompt="high beep",
                          settings=AttributeSettings(UnlearnSettings(unlearn_draws=2), candidates="all"))
    assert every.method["prefilter"] is None
