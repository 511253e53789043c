"""Unconditional attribution: query and training segments scored under the model's null conditioning."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tda_plugin import AttributeSettings, Attributor
from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.stable_audio import load
from tda_plugin.errors import TdaError
from tda_plugin.index.builder import build_index
from tda_plugin.randomness import make_draws
from tda_plugin.settings import IndexSettings


def test_null_branch_is_the_toolkits_condition_dropout(tiny_model: tuple[Path, Path]) -> None:
    """An unconditional example's loss equals the toolkit's own forward with every condition dropped
    (``cfg_dropout_prob=1``), whatever its prompt, and whatever its batch mates are conditioned on."""
    ckpt, cfg = tiny_model
    ad = load(ckpt, model_config=cfg)
    torch.manual_seed(0)
    x = torch.randn(2, 64, 64)
    draws = make_draws(0, ["a", "b"], 3)
    null = [Conditioning("low hum", 0.0, 1.6, unconditional=True), Conditioning("high beep", 0.5, 1.6, unconditional=True)]
    ours = ad.loss(x, ad.condition(null), draws)
    plain = [Conditioning("low hum", 0.0, 1.6), Conditioning("high beep", 0.5, 1.6)]
    inner = ad.model.model  # the DiT wrapper, whose forward applies the toolkit's condition dropout
    orig = inner.forward
    inner.forward = lambda *a, **k: orig(*a, **{**k, "cfg_dropout_prob": 1.0})  # drop every condition
    try:
        toolkit = ad.loss(x, ad.condition(plain), draws)
    finally:
        inner.forward = orig
    assert torch.allclose(ours, toolkit, rtol=1e-6, atol=0)
    swapped = ad.loss(x, ad.condition([Conditioning("high beep", 0.0, 1.6, unconditional=True), null[1]]), draws)
    assert torch.equal(ours, swapped)  # the prompt no longer matters
    mixed = ad.loss(x, ad.condition([null[0], plain[1]]), draws)
    alone = ad.loss(x[1:], ad.condition(plain[1:]), make_draws(0, ["b"], 3))
    assert torch.allclose(mixed[0], ours[0], rtol=1e-6) and torch.allclose(mixed[1], alone[0], rtol=1e-6)
    assert not torch.allclose(mixed[1], ours[1])


def test_clip_without_prompt_is_attributed_on_the_null_branch(tiny_index: Path, tiny_catalogue: Path) -> None:
    att = Attributor.from_index(tiny_index)
    audio, sr = sf.read(tiny_catalogue / "audio" / "t1.wav", dtype="float32")
    settings = AttributeSettings(candidates="all")
    free = att.attribute(audio, sr, prompt=None, settings=settings)
    prompted = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="prompt"))
    assert free.method["conditioning"] == "unconditional"
    # a prompted clip is answered gated by default: a wrong prompt must not move the credits
    assert att.attribute(audio, sr, prompt="high beep", settings=settings).method["conditioning"] == "gated"
    assert free.scores.keys() == prompted.scores.keys() and free.scores != prompted.scores
    forced = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="unconditional"))
    assert forced.scores == free.scores  # under the null branch the prompt plays no part
    # "audio": the same step on the null branch (the prompt plays no part), the segments under their captions
    heard = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="audio"))
    assert heard.method["conditioning"] == "audio" and heard.scores != free.scores
    assert heard.scores == att.attribute(audio, sr, prompt=None, settings=replace(settings, conditioning="audio")).scores
    query = att.encode_query(audio, sr, None, conditioning="unconditional")
    names, delta, *_ = att.forget(query, settings.unlearn)
    ids = sorted(att.index.segments)
    tau, _ = att.exact_scores(ids, names, delta, settings.unlearn, 64, conditioning="prompt")
    assert [seg["loss_change"] for seg in heard.segments] == [float(tau[ids.index(seg["segment_id"])]) for seg in heard.segments]
    # the cached unconditional baseline is the θ0 loss of the same segments under the null branch
    ids = sorted(att.index.segments)
    names = att.adapter.parameter_groups()["blocks"]
    params = dict(att.adapter.module.named_parameters())
    at_theta0 = att.losses_after(ids, names, [torch.zeros_like(params[n]) for n in names], 64, conditioning="unconditional")
    assert torch.allclose(at_theta0, att.index.baseline_rows(ids, "losses.unconditional"), rtol=1e-6, atol=1e-7)


def test_index_without_unconditional_baselines_says_so(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> None:
    ckpt, cfg = tiny_model
    out = tmp_path / "idx"
    build_index(tiny_catalogue, out, load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg,
                settings=IndexSettings(draws=2, fisher_segments=4, shard_size=4, unconditional=False))
    att = Attributor.from_index(out)
    audio = np.asarray(sf.read(tiny_catalogue / "audio" / "t0.wav", dtype="float32")[0])
    with pytest.raises(TdaError, match="no unconditional baselines"):
        att.attribute(audio, 8000, prompt=None, settings=AttributeSettings(candidates="all", conditioning="unconditional"))
    # so "auto" answers a prompt-less clip with "audio", which needs the model's null branch, not the index's: the
    # segments are scored on their cached captioned losses
    assert att.attribute(audio, 8000, prompt=None, settings=AttributeSettings(candidates="all")).method["conditioning"] == "audio"
    assert att.attribute(audio, 8000, prompt="low hum", settings=AttributeSettings(candidates="all")).method["conditioning"] == "gated"
    # a model without a null branch: "auto" falls back to the prompt (empty if none; the gate needs the null branch),
    # and "audio" is refused in one line
    att.adapter.supports_unconditional = False
    assert att.attribute(audio, 8000, prompt=None, settings=AttributeSettings(candidates="all")).method["conditioning"] == "prompt"
    assert att.attribute(audio, 8000, prompt="low hum", settings=AttributeSettings(candidates="all")).method["conditioning"] == "prompt"
    with pytest.raises(TdaError, match="has no null branch"):
        att.attribute(audio, 8000, prompt=None, settings=AttributeSettings(candidates="all", conditioning="audio"))


def test_gated_credits_the_audios_top_segments_by_the_prompted_scores(tiny_index: Path, tiny_catalogue: Path) -> None:
    """``gated``: the ``top`` segments the audio ranks best (as ``audio`` ranks them), each its positive score under
    the prompt (as ``prompt`` scores it); the same rule as the experiments' ``unlearning`` method (the default)."""
    from tda_plugin.experiments.methods import gated

    att = Attributor.from_index(tiny_index)
    audio, sr = sf.read(tiny_catalogue / "audio" / "t1.wav", dtype="float32")
    settings = AttributeSettings(candidates="all", top=2)
    heard = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="audio"))
    prompted = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="prompt"))
    both = att.attribute(audio, sr, prompt="high beep", settings=replace(settings, conditioning="gated"))
    assert both.method["conditioning"] == "gated" and both.method["scored"] == len(att.index.segments)
    assert set(both.scores) == {s["segment_id"] for s in heard.segments}
    # the kept segments are scored again in a batch of their own: float32 sums in another order (τ is a difference
    # of losses at this random model's float32 resolution, so the last digits move)
    assert both.scores == pytest.approx({i: max(prompted.scores[i], 0.0) for i in both.scores}, rel=1e-3)
    ids = sorted(att.index.segments)
    rule = gated(2)([np.array([prompted.scores[i] for i in ids]), np.array([heard.scores[i] for i in ids])])
    assert {i: float(v) for i, v in zip(ids, rule) if v != 0} == pytest.approx(both.scores, rel=1e-3)
    assert [s["loss_change"] for s in both.segments] == pytest.approx(
        [float(p["loss_change"]) for s in both.segments for p in prompted.segments if p["segment_id"] == s["segment_id"]],
        rel=1e-3)
    with pytest.raises(TdaError, match="gated credits .* by its prompt"):
        att.attribute(audio, sr, prompt=None, settings=replace(settings, conditioning="gated"))
