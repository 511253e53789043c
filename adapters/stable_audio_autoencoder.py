"""The demo's audio representation: a small stable-audio-tools autoencoder, trained once per catalogue.

A DiT learns a catalogue in CPU minutes over compact latents, not over waveforms: trained for an hour
on the wavelet coefficients of raw 8 kHz audio, the demo DiT's clips still sounded like noise (5 of 16
placed with the prompted artist by the independent check of :mod:`tda_plugin.style_check`), while
the same DiT over this autoencoder's latents learned the styles in 1 500 steps (docs/evaluation.md).
So, as in Stable Audio Open, the diffusion model's pretransform is an autoencoder, built by the
toolkit's own factory (``create_pretransform_from_config``, type ``autoencoder``): Oobleck encoder
and decoder over a nested ``wavelet`` pretransform (32 bands; the wavelet does the first 32x of the
256x downsampling, so the convolutions run at 250 frames per second and train on a CPU), no bottleneck.

It is trained with the non-adversarial part of stable-audio-tools' autoencoder training (a
multi-resolution STFT loss from auraloss, with a linear-magnitude term, plus a small waveform L1),
from a fixed seed for a fixed number of steps, on the whole catalogue. Retrained diffusion models
(counterfactual and LDS evaluation) reuse it unchanged, so every model encodes a query the same way;
attribution never moves it (it is not in any unlearning subset). It is cached by a fingerprint of
the catalogue's audio and the recipe (:func:`autoencoder_for`), and the shipped demo checkpoint
carries the one trained on the demo catalogue.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from tda_plugin import audio as audio_io
from tda_plugin.atomic import write_tensors
from tda_plugin.catalog import Track, hash_tracks
from tda_plugin.errors import MissingDependencyError
from tda_plugin.progress import task

from .stable_audio_adapter import _toolkit

log = logging.getLogger(__name__)

#: the recipe: every field changes the trained autoencoder, so all of them enter its fingerprint
RECIPE: dict[str, Any] = {"latent_dim": 32, "channels": 64, "wavelet_levels": 5, "steps": 9000, "crop": 4096,
                          "batch": 16, "lr": 2e-3, "l1_weight": 0.1, "seed": 0, "version": 1}


def autoencoder_config(*, latent_dim: int = 32, channels: int = 64, wavelet_levels: int = 5) -> dict[str, Any]:
    """The ``autoencoder`` pretransform's model config (mono), as ``create_pretransform_from_config`` reads it."""
    bands = 2 ** wavelet_levels
    oobleck = {"channels": channels, "c_mults": [1, 2], "strides": [2, 4], "latent_dim": latent_dim, "use_snake": True}
    return {
        "encoder": {"type": "oobleck", "config": {**oobleck, "in_channels": bands}},
        "decoder": {"type": "oobleck", "config": {**oobleck, "out_channels": bands, "final_tanh": False}},
        "latent_dim": latent_dim, "downsampling_ratio": bands * 8, "io_channels": 1,
        # enable_grad lets the reconstruction loss reach the decoder through the wavelet's inverse
        "pretransform": {"type": "wavelet", "enable_grad": True,
                         "config": {"channels": 1, "levels": wavelet_levels, "wavelet": "bior4.4"}},
    }


def fingerprint(tracks: Sequence[Track], sample_rate: int, recipe: dict[str, Any] = RECIPE) -> str:
    """sha256 over the recipe (seed included), the sample rate and every track's audio bytes (in catalogue
    order): what the trained autoencoder is a function of. The DiT's training seed is not in it: models
    trained from other seeds on one catalogue share its autoencoder."""
    header = json.dumps({"recipe": recipe, "sample_rate": sample_rate}, sort_keys=True).encode()
    return hash_tracks(hashlib.sha256(header), tracks).hexdigest()


def build(config: dict[str, Any], sample_rate: int) -> torch.nn.Module:
    """The toolkit's AutoencoderPretransform for ``config``."""
    factory, _, _ = _toolkit()
    return factory.create_pretransform_from_config({"type": "autoencoder", "config": config}, sample_rate)


def train(tracks: Sequence[Track], *, sample_rate: int,
          recipe: dict[str, Any] = RECIPE) -> tuple[dict[str, Any], dict[str, torch.Tensor], float]:
    """Train the autoencoder on random crops of every track; returns (config, state dict, latent scale).

    The scale is the standard deviation of the catalogue's latents, the pretransform's ``scale``, so
    the DiT sees unit-variance latents as Stable Audio's does.
    """
    try:
        import auraloss
    except ImportError:
        raise MissingDependencyError("training the demo's autoencoder needs auraloss (a stable-audio-tools "
                                     "dependency): pip install auraloss") from None
    torch.manual_seed(recipe["seed"])
    rng = random.Random(recipe["seed"])
    config = autoencoder_config(latent_dim=recipe["latent_dim"], channels=recipe["channels"],
                                wavelet_levels=recipe["wavelet_levels"])
    model = build(config, sample_rate).model
    model.train().requires_grad_(True)
    model.pretransform.requires_grad_(False)
    audio = [_mono(t, sample_rate) for t in tracks]
    audio = [a for a in audio if len(a) > recipe["crop"]]
    spectral = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 512, 256, 128], hop_sizes=[256, 128, 64, 32], win_lengths=[1024, 512, 256, 128],
        perceptual_weighting=False, w_lin_mag=1.0, eps=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe["lr"], betas=(0.8, 0.99))
    steps, crop = recipe["steps"], recipe["crop"]
    with task(f"training the autoencoder ({steps} steps)", steps) as advance:
        for step in range(steps):
            picks = [audio[rng.randrange(len(audio))] for _ in range(recipe["batch"])]
            x = torch.stack([torch.from_numpy(a[(o := rng.randrange(len(a) - crop)):o + crop]) for a in picks])[:, None]
            y = model.decode(model.encode(x))
            loss = spectral(y, x) + recipe["l1_weight"] * (y - x).abs().mean()
            warm = min(1.0, (step + 1) / 50)
            cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))
            for g in opt.param_groups:
                g["lr"] = recipe["lr"] * warm * cosine
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            advance(1)
    log.info("autoencoder: %d steps, last loss %.3f", steps, float(loss))
    model.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([model.encode(torch.from_numpy(a[None, None, : len(a) // 256 * 256])) for a in audio], dim=-1)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return config, state, float(latents.std())


def _mono(track: Track, sample_rate: int) -> np.ndarray:
    data, rate = audio_io.load(Path(track.resolved))
    mono, _ = audio_io.conform(data, rate, sample_rate, 1)
    return np.ascontiguousarray(mono[0], dtype=np.float32)


def cache_dir() -> Path:
    """Where trained autoencoders are kept: ``$XDG_CACHE_HOME/tda-plugin/autoencoders`` (``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tda-plugin" / "autoencoders"


def autoencoder_for(tracks: Sequence[Track], *, sample_rate: int, known: Path | None = None,
                    recipe: dict[str, Any] = RECIPE) -> tuple[dict[str, Any], dict[str, torch.Tensor], float]:
    """The autoencoder of this catalogue: from ``known`` (a demo checkpoint that records the catalogue's
    fingerprint), from the cache, or trained now and cached. Same catalogue and recipe: same weights."""
    key = fingerprint(tracks, sample_rate, recipe)
    meta = checkpoint_metadata(known) if known is not None and known.is_file() else {}
    if meta.get("autoencoder_fingerprint") == key:
        state = {k[len(PREFIX):]: v for k, v in load_file(str(known)).items() if k.startswith(PREFIX)}
        return json.loads(meta["autoencoder_config"]), state, float(meta["latent_scale"])
    path = cache_dir() / f"{key}.safetensors"
    if path.is_file():
        meta = checkpoint_metadata(path)
        return json.loads(meta["config"]), load_file(str(path)), float(meta["latent_scale"])
    config, state, scale = train(tracks, sample_rate=sample_rate, recipe=recipe)
    write_tensors(path, state, {"config": json.dumps(config), "latent_scale": repr(scale), "fingerprint": key})
    return config, state, scale


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata (what a checkpoint records about how it was made)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return fh.metadata() or {}


#: where the autoencoder's weights sit inside a diffusion model's state dict
PREFIX = "pretransform.model."
