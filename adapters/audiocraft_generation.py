"""Generation-script hooks for audiocraft: the toolkit's own generate calls, plus credits.

    model = gen_model(attributor)                      # audiocraft's MusicGen (or MAGNeT) over the indexed model
    model.set_generation_params(duration=8)
    audio, results = generate(attributor, model, ["lofi piano"])
    audio, results = generate_continuation(attributor, model, prompt_wav, 32000, ["lofi piano"])
    audio, results = generate_with_chroma(attributor, model, ["lofi piano"], melody, 32000)

Each wrapper calls the named method of ``model`` unchanged and attributes every returned clip with
its own description. A continuation's output begins with the prompt audio: that prompt is part of
the query, and the result's ``query`` says so (``includes_prompt_audio``, ``prompt_audio_s``).
A chroma-conditioned clip is attributed with its text only (indexes score segments under the null
melody, which is what the model sees for text-only generation).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from tda_plugin.attributor import AttributionResult, Attributor
from tda_plugin.settings import AttributeSettings

from .audiocraft import AudiocraftLMAdapter, quiet, toolkit

#: audiocraft's MusicGen asserts max_duration > extend_stride (18 s by default)
MAX_DURATION = 30.0


def gen_model(attributor: Attributor, max_duration: float = MAX_DURATION) -> Any:
    """audiocraft's own MusicGen or MAGNeT object around the attributor's LM and EnCodec."""
    adapter = attributor.adapter
    if not isinstance(adapter, AudiocraftLMAdapter):
        raise TypeError("gen_model needs an index built with the audiocraft adapter")
    toolkit()
    with quiet():
        from audiocraft.models import MAGNeT, MusicGen

        cls = MAGNeT if adapter.family == "magnet" else MusicGen
        return cls(name="tda-plugin", compression_model=adapter.compression, lm=adapter.lm, max_duration=max_duration)


def attribute_clips(attributor: Attributor, audio: torch.Tensor, tokens: torch.Tensor | None,
                    descriptions: Sequence[str | None], settings: AttributeSettings,
                    prompt_audio_s: float | None = None) -> list[AttributionResult]:
    """One result per generated clip [B, C, S], attributed with its own description.

    With ``tokens`` [B, K, T] (what the LM generated), those are the query's representation: decoding
    and re-encoding them through EnCodec would add the codec's error to what is attributed. The audio
    still gives the windows and the silence mask.
    """
    sr = attributor.adapter.sample_rate
    segment = attributor.index.meta.segment_samples
    results = []
    for i in range(audio.shape[0]):
        clip = audio[i].detach().float().clamp(-1, 1).cpu()
        short = segment - clip.shape[-1]
        if short > 0:  # e.g. MAGNeT's output can end a few frames before its segment: pad with silence, masked out
            clip = torch.nn.functional.pad(clip, (0, short))
        result = attributor.attribute(clip.numpy(), sr, settings=settings,
                                      prompt=descriptions[min(i, len(descriptions) - 1)] if descriptions else None,
                                      encoded=None if tokens is None else tokens[i].cpu())
        result.query["representation"] = "generated tokens" if tokens is not None else "re-encoded audio"
        if short > 0:
            result.query["padded_s"] = round(short / sr, 6)
        if prompt_audio_s is not None:
            result.query.update(includes_prompt_audio=True, prompt_audio_s=round(prompt_audio_s, 6))
        results.append(result)
    return results


def _run(model: Any, method: str, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``model.method(*args, return_tokens=True, **kwargs)`` quietly: (audio, tokens)."""
    with quiet():
        audio, tokens = getattr(model, method)(*args, return_tokens=True, **kwargs)
    return audio, tokens


def generate(attributor: Attributor, model: Any, descriptions: list[str], *,
             settings: AttributeSettings = AttributeSettings(), **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate(descriptions, **kwargs)`` (MusicGen or MAGNeT) and each clip's credits."""
    audio, tokens = _run(model, "generate", descriptions, **kwargs)
    return audio, attribute_clips(attributor, audio, tokens, descriptions, settings)


def generate_with_chroma(attributor: Attributor, model: Any, descriptions: list[str], melody_wavs: Any,
                         melody_sample_rate: int, *, settings: AttributeSettings = AttributeSettings(),
                         **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate_with_chroma(...)`` and each clip's credits (attributed with its text)."""
    audio, tokens = _run(model, "generate_with_chroma", descriptions, melody_wavs, melody_sample_rate, **kwargs)
    return audio, attribute_clips(attributor, audio, tokens, descriptions, settings)


def generate_continuation(attributor: Attributor, model: Any, prompt: torch.Tensor, prompt_sample_rate: int,
                          descriptions: list[str | None] | None = None, *, settings: AttributeSettings = AttributeSettings(),
                          **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate_continuation(...)`` and each clip's credits; the prompt audio is part of the query."""
    audio, tokens = _run(model, "generate_continuation", prompt, prompt_sample_rate, descriptions, **kwargs)
    return audio, attribute_clips(attributor, audio, tokens, descriptions or [None], settings,
                                  prompt_audio_s=prompt.shape[-1] / prompt_sample_rate)
