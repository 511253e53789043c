"""stable-audio-tools: a segment's loss is its loss alone (a batch of one), whatever its batch mates.

The audiocraft adapter had to be fixed for this (tests/test_audiocraft_batch_invariance.py); here every
conditioner type stable-audio-tools builds offline is checked the same way: T5 prompts of 1 to 40 tokens
(the tiny random T5 of ``t5_cache``; the toolkit's ``T5Conditioner`` pads to its fixed ``max_length``),
the ``list`` prompt conditioner, and the ``number`` timing conditioners (``seconds_start``,
``seconds_total``). CLAP conditioners need ``laion_clap`` and a downloaded checkpoint: not offline.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.stable_audio_adapter import StableAudioAdapter, build_model
from tda_plugin.randomness import make_draws, segment_stream
from tda_plugin.scoring import losses

from . import t5_cache
from .conftest import tiny_config

REL = 1e-6
TOKENS = (1, 40, 2, 17, 5, 33)


def t5_config() -> dict:
    config = tiny_config(["x"])
    config["model"]["conditioning"]["configs"][0] = {"id": "prompt", "type": "t5",
                                                     "config": {"t5_model_name": t5_cache.MODEL_NAME, "max_length": 48}}
    return config


@pytest.fixture(scope="module", params=["t5", "list"])
def adapter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[StableAudioAdapter, list]:
    """(adapter, prompts): T5 with prompts of 1..40 tokens, or the list conditioner with each of its options."""
    torch.manual_seed(0)
    if request.param == "t5":
        hf_home = tmp_path_factory.mktemp("hf")
        t5_cache.plant(hf_home)
        with t5_cache.offline_hub(hf_home):  # T5 loads when the model is built
            config = t5_config()
            model = build_model(config)
        prompts = [t5_cache.prompt_of(n) for n in TOKENS]
    else:
        prompts = ["low hum", "high beep", "a much longer prompt", None, "x", "low hum"]
        config = tiny_config([p for p in prompts if p])
        model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():  # stable-audio-tools zero-initialises attention outputs
            p.add_(0.02 * torch.randn_like(p))
    return StableAudioAdapter(model, config, "test"), prompts


def test_losses_equal_each_segment_alone(adapter: tuple[StableAudioAdapter, list]) -> None:
    a, prompts = adapter
    n, d = len(prompts), 3
    g = torch.Generator().manual_seed(1)
    x = a.encode(0.3 * torch.randn(n, 1, a.default_segment_samples(), generator=g))
    # every conditioner differs between batch mates: prompt length / option, seconds_start, seconds_total
    conds = [Conditioning(p, start_s=1.5 * k, total_s=30.0 + 17 * k) for k, p in enumerate(prompts)]
    streams = [segment_stream(k) for k in range(n)]
    ref = torch.cat([a.loss(x[k:k + 1], a.condition([conds[k]]), make_draws(0, [streams[k]], d)) for k in range(n)])
    assert ref.std() > 0
    for batch in (n * d, 2 * d, 4 * d):
        got = losses(a, x, conds, streams, seed=0, draws=d, batch_size=batch)
        assert torch.allclose(got, ref, rtol=REL, atol=0), float(((got - ref) / ref).abs().max())
    perm = [4, 1, 5, 0, 3, 2]
    got = losses(a, x[perm], [conds[k] for k in perm], [streams[k] for k in perm], seed=0, draws=d, batch_size=3 * d)
    assert torch.allclose(got, ref[perm], rtol=REL, atol=0)
