"""Credits in stable-audio-tools generation scripts: one line around the toolkit's own generate call.

    from stable_audio_tools.inference.generation import generate_diffusion_cond
    from tda_plugin.adapters.stable_audio_generation import credited

    generate = credited(attributor, save_to="out/clip_{i:03d}.flac", sinks=("tags", "ledger"))(generate_diffusion_cond)
    audio, clips = generate(model, steps=100, cfg_scale=7, conditioning=[{"prompt": "...", "seconds_start": 0,
                            "seconds_total": 10}], sample_size=441000, seed=42, device="cuda")
    clips[0].credits, clips[0].path, clips[0].receipts

``generate_diffusion_cond`` is called unchanged (its stdout chatter is swallowed); each generated clip
is attributed with its own conditioning (prompt and timing), saved, and handed to the credit sinks
(:mod:`tda_plugin.generation`). ``model`` must be the model the attributor's index was built for.
"""
from __future__ import annotations

import contextlib
import functools
import io
from typing import Any, Callable

import torch

from tda_plugin.attributor import AttributionResult, Attributor
from tda_plugin.generation import Clip, CreditConfig, CreditedClip
from tda_plugin.generation import credited as credited_generation
from tda_plugin.settings import AttributeSettings

from .stable_audio_adapter import _toolkit


def _clips_of(attributor: Attributor) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], list[Clip]]:
    """Audio (decoded if the call asked for latents) and each clip's conditioning, from one call."""
    adapter = attributor.adapter

    def clips(out: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Clip]:
        audio = adapter.decode(out) if kwargs.get("return_latents") else out
        conditioning = kwargs.get("conditioning") or [{}]
        found = []
        for i in range(audio.shape[0]):
            cond = conditioning[min(i, len(conditioning) - 1)]  # the toolkit repeats the last one
            total = cond.get("seconds_total")
            found.append(Clip(audio[i].detach().float().clamp(-1, 1).cpu(), adapter.sample_rate, cond.get("prompt"),
                              float(cond.get("seconds_start", 0.0)), None if total is None else float(total)))
        return found
    return clips


def _quiet(generate: Callable[..., Any], device: str) -> Callable[..., Any]:
    """The toolkit's function, silenced on stdout, on the attributor's device unless told otherwise."""
    @functools.wraps(generate)
    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("device", device)
        with contextlib.redirect_stdout(io.StringIO()):
            return generate(*args, **kwargs)
    return call


def credited(attributor: Attributor, **config: Any) -> Callable[[Callable[..., Any]], Callable[..., tuple[Any, list[CreditedClip]]]]:
    """Decorator for ``generate_diffusion_cond``; ``config`` are the fields of
    :class:`tda_plugin.generation.CreditConfig` (settings, save_to, sinks, options, on_veto)."""
    decorate = credited_generation(attributor, _clips_of(attributor), CreditConfig(**config))
    return lambda generate: decorate(_quiet(generate, str(attributor.adapter.device)))


def generate_with_credits(attributor: Attributor, *, settings: AttributeSettings = AttributeSettings(),
                          **generate_kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """Run ``generate_diffusion_cond(attributor.adapter.model, **generate_kwargs)`` and attribute each clip
    (no sinks, nothing saved). Returns what the toolkit returned (audio, or latents with ``return_latents=True``)
    and one result per clip."""
    _toolkit()
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    out, clips = credited(attributor, settings=settings, on_veto="keep")(generate_diffusion_cond)(
        attributor.adapter.model, **generate_kwargs)
    return out, [c.result for c in clips]
