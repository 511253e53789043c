"""The "tiny-conv" model family: a small conditional denoiser on patched waveforms, in plain torch.

Representation: the waveform cut into patches of ``hop`` samples, [B, C*hop, S/hop] (invertible).
Training objective: ε-prediction under a cosine schedule, x_t = cos(πt/2)·x0 + sin(πt/2)·ε.
Conditioning: a learned embedding per prompt of a fixed vocabulary (index 0: any other prompt).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class TinyConv(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        width = config["channels"] * config["hop"]
        hidden = config["hidden"]
        self.prompts: list[str] = list(config["prompts"])
        self.inp = nn.Conv1d(width, hidden, 3, padding=1)
        self.prompt_emb = nn.Embedding(len(self.prompts) + 1, hidden)
        self.time_emb = nn.Linear(1, hidden)
        self.blocks = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(config["depth"]))
        self.out = nn.Conv1d(hidden, width, 1)

    def prompt_ids(self, prompts: list[str | None]) -> torch.Tensor:
        return torch.tensor([self.prompts.index(p) + 1 if p in self.prompts else 0 for p in prompts])

    def hidden(self, x: torch.Tensor, t: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        bias = self.prompt_emb(prompt_ids.to(x.device)) + self.time_emb(t[:, None])
        h = nn.functional.gelu(self.inp(x) + bias[:, :, None])
        for block in self.blocks:
            h = h + nn.functional.gelu(block(h))
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x, t, prompt_ids))


def patchify(audio: torch.Tensor, hop: int) -> torch.Tensor:
    """[B, C, S] -> [B, C*hop, S/hop]."""
    b, c, s = audio.shape
    return audio.reshape(b, c, s // hop, hop).permute(0, 1, 3, 2).reshape(b, c * hop, s // hop)


def unpatchify(x: torch.Tensor, channels: int) -> torch.Tensor:
    b, width, frames = x.shape
    hop = width // channels
    return x.reshape(b, channels, hop, frames).permute(0, 1, 3, 2).reshape(b, channels, frames * hop)


def noised(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    a, s = torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)
    return a[:, None, None] * x0 + s[:, None, None] * noise
