"""The adapter's per-sample loss is the toolkit's own training objective."""
from __future__ import annotations

import types

import pytest
import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.randomness import Draws

from .conftest import tiny_config

diffusion = pytest.importorskip("stable_audio_tools.training.diffusion")


def _sao_like(objective: str) -> dict:
    """A Stable-Audio-Open-shaped config (VAE autoencoder pretransform), scaled down."""
    cfg = tiny_config(["a", "b"], objective)
    cfg["model"]["pretransform"] = {"type": "autoencoder", "config": {
        "encoder": {"type": "oobleck", "requires_grad": False, "config": {
            "in_channels": 1, "channels": 8, "c_mults": [1, 2], "strides": [4, 8], "latent_dim": 32, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {
            "out_channels": 1, "channels": 8, "c_mults": [1, 2], "strides": [4, 8], "latent_dim": 16, "use_snake": True,
            "final_tanh": False}},
        "bottleneck": {"type": "vae"}, "latent_dim": 16, "downsampling_ratio": 32, "io_channels": 1}}
    cfg["model"]["diffusion"]["config"]["io_channels"] = 16
    cfg["model"]["io_channels"] = 16
    return cfg


@pytest.mark.parametrize("objective", ["v", "rectified_flow"])
@pytest.mark.parametrize("t", [0.15, 0.5, 0.85])
def test_loss_equals_training_wrapper_step(objective: str, t: float) -> None:
    from tda_plugin.adapters.stable_audio import StableAudioAdapter, build_model

    torch.manual_seed(0)
    cfg = _sao_like(objective)
    model = build_model(cfg)
    adapter = StableAudioAdapter(model, cfg, "test")
    b = 3
    latents = adapter.encode(torch.randn(b, 1, 4096) * 0.3)

    wrapper = diffusion.DiffusionCondTrainingWrapper(model, lr=1e-4, use_ema=False, pre_encoded=True, cfg_dropout_prob=0.0)
    wrapper.rng = types.SimpleNamespace(draw=lambda n: torch.full((n, 1), t))  # the wrapper's Sobol draw, fixed
    wrapper.log_dict = lambda *a, **k: None
    wrapper._trainer = types.SimpleNamespace(optimizers=[types.SimpleNamespace(param_groups=[{"lr": 1e-4}])])
    metadata = [{"prompt": "a", "seconds_start": 0.0, "seconds_total": 1.0, "padding_mask": [torch.ones(4096)]}
                for _ in range(b)]
    torch.manual_seed(123)
    with torch.no_grad():
        expected = wrapper.training_step((latents, metadata), 0)
    torch.manual_seed(123)
    noise = torch.randn_like(latents)  # the wrapper's noise: same generator state, same call

    class WrapperDraws(Draws):
        def normal(self, shape):  # one draw per sample: the wrapper's noise
            return noise[:, None]

    draws = WrapperDraws(seed=0, streams=tuple("abc"), quantiles=torch.tensor([t]))  # uniform sampler: t = quantile
    conds = [Conditioning("a", 0.0, 1.0)] * b
    with torch.no_grad():
        ours = adapter.loss(latents, adapter.condition(conds), draws)
    assert ours.shape == (b, 1)
    assert torch.allclose(ours.mean(), expected, rtol=1e-5, atol=1e-7)
