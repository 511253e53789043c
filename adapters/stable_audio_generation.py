"""Generation-script hook for stable-audio-tools: the toolkit's own generate call, plus credits.

    audio, results = generate_with_credits(attributor, steps=100, cfg_scale=7,
                                           conditioning=[{"prompt": "...", "seconds_start": 0, "seconds_total": 10}],
                                           sample_size=441000, seed=42, device="cpu")

``generate_diffusion_cond`` is called unchanged with the given keyword arguments (its stdout chatter
is swallowed); each generated clip is then attributed with its own conditioning (prompt and timing).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from tda_plugin.attributor import AttributionResult, Attributor
from tda_plugin.settings import AttributeSettings

from .stable_audio import _toolkit


def generate_with_credits(attributor: Attributor, *, settings: AttributeSettings = AttributeSettings(),
                          **generate_kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """Run ``generate_diffusion_cond(attributor.adapter.model, **generate_kwargs)`` and attribute each clip.

    Returns what the toolkit returned (audio, or latents with ``return_latents=True``) and one result per clip.
    """
    _toolkit()
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    adapter = attributor.adapter
    generate_kwargs.setdefault("device", str(adapter.device))
    with contextlib.redirect_stdout(io.StringIO()):
        out = generate_diffusion_cond(adapter.model, **generate_kwargs)
    audio = adapter.decode(out) if generate_kwargs.get("return_latents") else out
    conditioning = generate_kwargs.get("conditioning") or [{}]
    results = []
    for i in range(audio.shape[0]):
        cond = conditioning[min(i, len(conditioning) - 1)]
        clip = audio[i].detach().float().clamp(-1, 1).cpu().numpy()
        total = cond.get("seconds_total")
        results.append(attributor.attribute(clip, adapter.sample_rate, prompt=cond.get("prompt"), settings=settings,
                                            seconds_start=float(cond.get("seconds_start", 0.0)),
                                            seconds_total=None if total is None else float(total)))
    return out, results
