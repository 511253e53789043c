"""The adapter's per-sample loss is the toolkit's own training objective.

Each case runs stable-audio-tools' ``DiffusionCondTrainingWrapper.training_step`` with its random
draws pinned (timesteps, noise) and compares with the adapter's loss at the same draws: both
objectives at several timesteps, a pretransform ``scale`` other than 1, a ``dist_shift``, the
logit-normal timestep sampler, and training on raw audio through an autoencoder with its own inner
pretransform (the VAE's posterior sample pinned to its mean, which the adapter encodes).
"""
from __future__ import annotations

import types
from dataclasses import dataclass

import pytest
import stable_audio_tools.models.bottleneck as bottleneck
import stable_audio_tools.training.diffusion as diffusion
import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.stable_audio_adapter import StableAudioAdapter, build_model
from tda_plugin.randomness import Draws

from .conftest import tiny_config

SAMPLES = 4096


def _sao_like(objective: str = "v", *, scale: float = 1.0, inner_pretransform: bool = False, dist_shift: bool = False,
              sampler: str = "uniform", pre_encoded: bool = True) -> dict:
    """A Stable-Audio-Open-shaped config (VAE autoencoder pretransform, DiT with patch size 2), scaled down."""
    cfg = tiny_config(["a", "b"], objective)
    channels = 4 if inner_pretransform else 1  # a 2-level wavelet inside the autoencoder: 4 channels, 1/4 the length
    strides = [2, 4] if inner_pretransform else [4, 8]
    autoencoder = {
        "encoder": {"type": "oobleck", "requires_grad": False, "config": {
            "in_channels": channels, "channels": 8, "c_mults": [1, 2], "strides": strides, "latent_dim": 32, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {
            "out_channels": channels, "channels": 8, "c_mults": [1, 2], "strides": strides, "latent_dim": 16,
            "use_snake": True, "final_tanh": False}},
        "bottleneck": {"type": "vae"}, "latent_dim": 16, "downsampling_ratio": 32, "io_channels": 1}
    if inner_pretransform:
        autoencoder["pretransform"] = {"type": "wavelet", "config": {"channels": 1, "levels": 2, "wavelet": "bior4.4"}}
    cfg["model"]["pretransform"] = {"type": "autoencoder", "config": autoencoder, "scale": scale}
    cfg["model"]["diffusion"]["config"]["io_channels"] = 16
    cfg["model"]["io_channels"] = 16
    if dist_shift:
        cfg["model"]["diffusion"]["distribution_shift_options"] = {"min_length": 16, "max_length": 2048}
    cfg["training"] = {"timestep_sampler": sampler, "pre_encoded": pre_encoded}
    return cfg


def wrapper_loss(model: torch.nn.Module, reals: torch.Tensor, *, pre_encoded: bool, sampler: str,
                 t: torch.Tensor | None) -> torch.Tensor:
    """One ``training_step`` (global RNG seeded 123; a uniform sampler's Sobol draw replaced by ``t``)."""
    wrapper = diffusion.DiffusionCondTrainingWrapper(model, lr=1e-4, use_ema=False, pre_encoded=pre_encoded,
                                                     cfg_dropout_prob=0.0, timestep_sampler=sampler)
    wrapper.rng = types.SimpleNamespace(draw=lambda n: t[:, None])
    wrapper.log_dict = lambda *a, **k: None
    wrapper._trainer = types.SimpleNamespace(optimizers=[types.SimpleNamespace(param_groups=[{"lr": 1e-4}])])
    metadata = [{"prompt": "a", "seconds_start": 0.0, "seconds_total": 1.0, "padding_mask": [torch.ones(SAMPLES)]}
                for _ in range(reals.shape[0])]
    torch.manual_seed(123)
    with torch.no_grad():
        return wrapper.training_step((reals, metadata), 0)


@dataclass(frozen=True)
class PinnedNoise(Draws):
    """One draw of one sample whose noise is given (the wrapper's)."""

    noise: torch.Tensor | None = None

    def normal(self, shape):
        return self.noise[None, None]


def adapter_loss(adapter: StableAudioAdapter, latents: torch.Tensor, quantiles: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
    """The adapter's loss with sample i at quantile i and the wrapper's noise, averaged like the wrapper's."""

    per_sample = []
    for i in range(latents.shape[0]):
        draws = PinnedNoise(seed=0, streams=("s",), quantiles=quantiles[i:i + 1], noise=noise[i])
        with torch.no_grad():
            per_sample.append(adapter.loss(latents[i:i + 1], adapter.condition([Conditioning("a", 0.0, 1.0)]), draws))
    return torch.cat(per_sample).mean()


def check(cfg: dict, t: list[float] | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Adapter and wrapper agree (relative 1e-5) on 3 random clips; ``t``: the uniform sampler's timesteps."""
    torch.manual_seed(0)
    model = build_model(cfg)
    adapter = StableAudioAdapter(model, cfg, "test")
    audio = torch.randn(3, 1, SAMPLES) * 0.3
    latents = adapter.encode(audio)
    pre_encoded, sampler = cfg["training"]["pre_encoded"], cfg["training"]["timestep_sampler"]
    if pre_encoded:  # pre-encoded datasets hold the autoencoder's latents; the wrapper divides them by the scale
        reals = latents * model.pretransform.scale
    else:
        assert monkeypatch is not None  # the wrapper encodes a VAE posterior *sample*: pin it to the mean
        monkeypatch.setattr(bottleneck, "vae_sample", lambda mean, scale: (mean, torch.zeros(())))
        reals = audio
    t_tensor = None if t is None else torch.tensor(t)
    expected = wrapper_loss(model, reals, pre_encoded=pre_encoded, sampler=sampler, t=t_tensor)
    torch.manual_seed(123)  # the wrapper's draws, in its order: timesteps (logit-normal only), then noise
    if sampler == "logit_normal":
        z = torch.randn(3).double()
        quantiles = 0.5 * (1 + torch.erf(z / 2 ** 0.5))  # Φ(z): the adapter maps it back to sigmoid(z)
    else:
        quantiles = t_tensor.double()
    noise = torch.randn_like(latents)
    ours = adapter_loss(adapter, latents, quantiles.float(), noise)
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-7), (float(ours), float(expected))


@pytest.mark.parametrize("objective", ["v", "rectified_flow"])
@pytest.mark.parametrize("t", [0.15, 0.5, 0.85])
def test_loss_equals_training_wrapper_step(objective: str, t: float) -> None:
    check(_sao_like(objective), [t] * 3)


def test_pretransform_scale(objective: str = "v") -> None:
    check(_sao_like(objective, scale=0.37), [0.2, 0.5, 0.8])


@pytest.mark.parametrize("pre_encoded", [True, False])
def test_dist_shift_gets_the_wrappers_length(pre_encoded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper shifts by ``reals.shape[2]``: latent frames pre-encoded, audio samples otherwise."""
    check(_sao_like("rectified_flow", dist_shift=True, pre_encoded=pre_encoded), [0.2, 0.5, 0.8], monkeypatch)


def test_logit_normal_sampler() -> None:
    check(_sao_like("rectified_flow", sampler="logit_normal"))


def test_raw_audio_through_a_nested_pretransform(monkeypatch: pytest.MonkeyPatch) -> None:
    """The autoencoder's own inner pretransform runs before its encoder (``AudioAutoencoder.encode``)."""
    check(_sao_like("v", scale=0.5, inner_pretransform=True, dist_shift=True, pre_encoded=False), [0.3, 0.6, 0.9],
          monkeypatch)
