"""The ``tiny-conv`` adapter: the ModelAdapter protocol for the model family in :mod:`.model`.

Checkpoints are ``model.safetensors`` + ``model_config.json`` (``"model_type": "tiny_conv"``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tda_plugin import hookimpl
from tda_plugin.adapter import Conditioning
from tda_plugin.errors import CheckpointError
from tda_plugin.randomness import Draws
from tda_plugin.registry import AdapterSpec

from .model import TinyConv, noised, patchify, unpatchify

NAME = "tiny-conv"
TDA_HOOKSPEC = "1"  # the hookspec major version this plugin was written for


class TinyConvAdapter:
    name = NAME

    def __init__(self, model: TinyConv, config: dict[str, Any], fingerprint: str, device: str = "cpu") -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.config = config
        self.fingerprint = fingerprint
        self.sample_rate = int(config["sample_rate"])
        self.channels = int(config["channels"])
        self.hop = int(config["hop"])

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def valid_segment_samples(self, samples: int) -> int:
        return max(self.hop, samples - samples % self.hop)

    def default_segment_samples(self) -> int:
        return self.valid_segment_samples(int(self.config["segment_samples"]))

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return patchify(audio.to(self.device, torch.float32), self.hop)

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        return unpatchify(encoded.to(self.device, torch.float32), self.channels)

    def frame_mask(self, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
        b = sample_mask.shape[0]
        return sample_mask[:, : frames * self.hop].reshape(b, frames, self.hop).any(dim=-1).to(self.device)

    def condition(self, conditioning: list[Conditioning]) -> torch.Tensor:
        return self.model.prompt_ids([c.prompt for c in conditioning])

    def _predict(self, encoded: torch.Tensor, cond: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d = encoded.shape[0], draws.count
        x0 = encoded.to(self.device, torch.float32).repeat_interleave(d, dim=0)
        t = draws.quantiles.to(self.device).repeat(b)
        noise = draws.normal(encoded.shape[1:]).to(self.device).flatten(0, 1)
        h = self.model.hidden(noised(x0, t, noise), t, cond.repeat_interleave(d))
        return self.model.out(h), noise, h

    def loss(self, encoded: torch.Tensor, cond: torch.Tensor, draws: Draws, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ε-prediction MSE per (sample, draw): mean over the sample's unmasked frames only."""
        pred, noise, _ = self._predict(encoded, cond, draws)
        err = (pred - noise).pow(2)
        if mask is None:
            per = err.mean(dim=(1, 2))
        else:
            m = mask.to(self.device, torch.float32).repeat_interleave(draws.count, dim=0)[:, None, :]
            per = (err * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * err.shape[1]).clamp_min(1.0)
        return per.reshape(encoded.shape[0], draws.count)

    @torch.no_grad()
    def features(self, encoded: torch.Tensor, cond: torch.Tensor, draws: Draws) -> torch.Tensor:
        _, _, h = self._predict(encoded, cond, draws)
        feats = torch.cat([h.mean(dim=-1), h.std(dim=-1)], dim=-1)
        return feats.reshape(encoded.shape[0], draws.count, -1).mean(dim=1)

    def parameter_groups(self) -> dict[str, list[str]]:
        return {"blocks": [n for n, _ in self.model.named_parameters() if n.startswith("blocks.")]}


def save(model: TinyConv, config: dict[str, Any], out_dir: Path) -> Path:
    """Write ``model.safetensors`` + ``model_config.json``; returns the checkpoint path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    (out_dir / "model_config.json").write_text(json.dumps(config, indent=2))
    return out_dir / "model.safetensors"


def load(checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> TinyConvAdapter:
    model_config = model_config or checkpoint.with_name("model_config.json")
    try:
        config = json.loads(Path(model_config).read_text())
        if config.get("model_type") != "tiny_conv":
            raise CheckpointError(f"{model_config}: not a tiny_conv model")
        model = TinyConv(config)
        model.load_state_dict(load_file(str(checkpoint)))
    except (OSError, ValueError, RuntimeError) as exc:  # missing file, bad JSON, mismatched weights
        raise CheckpointError(f"{checkpoint}: cannot load a tiny-conv model ({exc})") from None
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode() + Path(checkpoint).read_bytes()).hexdigest()
    return TinyConvAdapter(model, config, digest, device)


@hookimpl
def tda_adapters() -> list[AdapterSpec]:
    return [AdapterSpec(NAME, "tiny conditional conv denoiser on patched waveforms (example plugin)", load)]
