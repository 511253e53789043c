"""Generation-script hooks for audiocraft: the toolkit's own generate calls, plus credits.

    model = gen_model(attributor)                      # audiocraft's MusicGen (or MAGNeT) over the indexed model
    model.set_generation_params(duration=8)
    generate = credited(attributor, model, save_to="out/clip_{i:03d}.flac", sinks=("tags", "ledger"))
    wav, clips = generate(["lofi piano"])              # one line: attributed, saved, tagged, in the ledger

    # results only (nothing saved, no sinks): the module's generate, generate_continuation, generate_with_chroma
    audio, results = generate_continuation(attributor, model, prompt_wav, 32000, ["lofi piano"])

Each wrapper calls the named method of ``model`` unchanged and attributes every returned clip with
its own description, through :mod:`tda_plugin.generation` (lifecycle hooks, veto, saving, sinks).
A continuation's output begins with the prompt audio: that prompt is part of the query, and the
result's ``query`` says so (``includes_prompt_audio``, ``prompt_audio_s``).
A chroma-conditioned clip is attributed with its text only (indexes score segments under the null
melody, which is what the model sees for text-only generation).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from tda_plugin.attributor import AttributionResult, Attributor
from tda_plugin.errors import TdaError
from tda_plugin.generation import Clip, CreditConfig, CreditedClip, credit_clips
from tda_plugin.settings import AttributeSettings
from tda_plugin.sinks import check_sinks

from .audiocraft import AudiocraftLMAdapter
from .audiocraft_toolkit import quiet, toolkit

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


def clips_of(attributor: Attributor, audio: torch.Tensor, tokens: torch.Tensor | None,
             descriptions: Sequence[str | None] | None, prompt_audio_s: float | None = None) -> list[Clip]:
    """One :class:`~tda_plugin.generation.Clip` per generated clip [B, C, S], with its own description.

    With ``tokens`` [B, K, T] (what the LM generated), those are the query's representation: decoding
    and re-encoding them through EnCodec would add the codec's error to what is attributed. The audio
    still gives the windows and the silence mask.
    """
    sr = attributor.adapter.sample_rate
    segment = attributor.index.meta.segment_samples
    descriptions = list(descriptions or [None])
    clips = []
    for i in range(audio.shape[0]):
        clip = audio[i].detach().float().clamp(-1, 1).cpu()
        query: dict[str, Any] = {"representation": "generated tokens" if tokens is not None else "re-encoded audio"}
        short = segment - clip.shape[-1]
        if short > 0:  # e.g. MAGNeT's output can end a few frames before its segment: pad with silence, masked out
            clip = torch.nn.functional.pad(clip, (0, short))
            query["padded_s"] = round(short / sr, 6)
        if prompt_audio_s is not None:
            query.update(includes_prompt_audio=True, prompt_audio_s=round(prompt_audio_s, 6))
        clips.append(Clip(clip, sr, descriptions[min(i, len(descriptions) - 1)],
                          encoded=None if tokens is None else tokens[i].cpu(), query=query))
    return clips


def credited(attributor: Attributor, model: Any, method: str = "generate", **config: Any
             ) -> Callable[..., tuple[Any, list[CreditedClip]]]:
    """``model.<method>`` (generate, generate_with_chroma, generate_continuation; MusicGen or MAGNeT) with
    credits: every clip attributed, saved and passed to the sinks. ``config`` are the fields of
    :class:`tda_plugin.generation.CreditConfig` (settings, save_to, sinks, options, on_veto).

        generate = credited(attributor, model, save_to="out/clip_{i:03d}.flac", sinks=("tags", "ledger"))
        wav, clips = generate(["lo-fi hip hop with a mellow piano"])

    The call returns what audiocraft returns (``(wav, tokens)`` only if ``return_tokens=True`` was asked)
    and one :class:`~tda_plugin.generation.CreditedClip` per clip.
    """
    settings = CreditConfig(**config)
    check_sinks(settings.sink_names, have_file=settings.save_to is not None)  # fail before generating
    if method not in METHODS:
        raise TdaError(f"cannot credit {method!r}: one of {', '.join(METHODS)}")

    def call(*args: Any, return_tokens: bool = False, **kwargs: Any) -> tuple[Any, list[CreditedClip]]:
        with quiet():
            audio, tokens = getattr(model, method)(*args, return_tokens=True, **kwargs)
        descriptions, prompt_s = _descriptions(method, args, kwargs)
        credited_clips = credit_clips(attributor, clips_of(attributor, audio, tokens, descriptions, prompt_s), settings)
        return ((audio, tokens) if return_tokens else audio), credited_clips
    return call


#: the generate methods of audiocraft's MusicGen / MAGNeT, with the position of their descriptions argument
METHODS = {"generate": 0, "generate_with_chroma": 0, "generate_continuation": 2}


def _descriptions(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[str | None] | None, float | None]:
    """The call's descriptions, and for a continuation the prompt's duration (it is part of the output)."""
    position = METHODS[method]
    descriptions = kwargs.get("descriptions", args[position] if len(args) > position else None)
    if method != "generate_continuation":
        return descriptions, None
    prompt = kwargs.get("prompt", args[0] if args else None)
    rate = kwargs.get("prompt_sample_rate", args[1] if len(args) > 1 else None)
    return descriptions, prompt.shape[-1] / rate


def _results(attributor: Attributor, model: Any, method: str, settings: AttributeSettings, *args: Any,
             **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """Credits without sinks or saving, for scripts that only want the results."""
    audio, clips = credited(attributor, model, method, settings=settings, on_veto="keep")(*args, **kwargs)
    return audio, [c.result for c in clips]


def generate(attributor: Attributor, model: Any, descriptions: list[str], *,
             settings: AttributeSettings = AttributeSettings(), **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate(descriptions, **kwargs)`` (MusicGen or MAGNeT) and each clip's credits."""
    return _results(attributor, model, "generate", settings, descriptions, **kwargs)


def generate_with_chroma(attributor: Attributor, model: Any, descriptions: list[str], melody_wavs: Any,
                         melody_sample_rate: int, *, settings: AttributeSettings = AttributeSettings(),
                         **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate_with_chroma(...)`` and each clip's credits (attributed with its text)."""
    return _results(attributor, model, "generate_with_chroma", settings, descriptions, melody_wavs, melody_sample_rate,
                    **kwargs)


def generate_continuation(attributor: Attributor, model: Any, prompt: torch.Tensor, prompt_sample_rate: int,
                          descriptions: list[str | None] | None = None, *, settings: AttributeSettings = AttributeSettings(),
                          **kwargs: Any) -> tuple[torch.Tensor, list[AttributionResult]]:
    """``model.generate_continuation(...)`` and each clip's credits; the prompt audio is part of the query."""
    return _results(attributor, model, "generate_continuation", settings, prompt, prompt_sample_rate, descriptions,
                    **kwargs)
