"""The ``band_energy`` embedder: log energy in 16 frequency bands of the decoded audio (any adapter)."""
from __future__ import annotations

from typing import Any

import torch

from tda_plugin import hookimpl
from tda_plugin.registry import EmbedderSpec

BANDS = 16


def band_energy(adapter: Any, encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor:
    audio = adapter.decode(encoded).float().mean(dim=1)             # [B, S] mono
    power = torch.fft.rfft(audio, dim=-1).abs().pow(2)                # [B, S/2 + 1]
    bands = torch.tensor_split(power, BANDS, dim=-1)
    return torch.stack([b.mean(dim=-1) for b in bands], dim=-1).clamp_min(1e-12).log().cpu()


@hookimpl
def tda_embedders() -> list[EmbedderSpec]:
    return [EmbedderSpec("band_energy", "log energy in 16 frequency bands of the decoded audio (example plugin)",
                         band_energy)]
