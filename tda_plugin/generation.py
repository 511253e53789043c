"""Credits in generation scripts, for any toolkit: attribute each generated clip, save it, run the sinks.

A toolkit wrapper (``tda_plugin.adapters.stable_audio_generation``, the audiocraft one) only says how
to find the clips in its generate call's output and arguments; :func:`credited` does the rest::

    generate = credited(attributor, clips_of, CreditConfig(save_to="out/clip_{i:03d}.flac",
                                                           sinks=("tags", "ledger")))(toolkit_generate)
    out, credited_clips = generate(...)          # the toolkit's own output, plus one CreditedClip per clip

For each clip: ``tda_before_attribution`` hooks (may refuse) -> attribution -> ``tda_after_attribution``
hooks (may veto) -> the clip is saved (if ``save_to``) and the sinks run, unless vetoed. A veto raises
:class:`~tda_plugin.errors.ReleaseVetoed` after every clip of the call is attributed (``on_veto="raise"``),
or is returned marked (``on_veto="keep"``); vetoed clips are never saved nor passed to sinks.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import soundfile as sf
import torch

from .atomic import atomic_path
from .errors import AudioError, ReleaseVetoed, TdaError
from .settings import AttributeSettings
from .sinks import DEFAULT_SINKS, Receipt, SinkOptions, check_sinks, write_credits

if TYPE_CHECKING:
    from .attributor import AttributionResult, Attributor

#: file extension -> (libsndfile format, subtype) for saved clips
FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
           ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III")}


@dataclass(frozen=True)
class Clip:
    """One generated clip as the toolkit produced it, with the conditioning it was generated with."""

    audio: np.ndarray | torch.Tensor  # [channels, samples] or [samples], float in [-1, 1]
    sample_rate: int
    prompt: str | None = None
    seconds_start: float = 0.0
    seconds_total: float | None = None
    #: the clip's exact training representation when the toolkit returns it (e.g. the tokens an LM
    #: generated): attributed instead of re-encoding the audio, which would add the codec's error
    encoded: torch.Tensor | None = None
    #: facts about the clip the result's ``query`` should carry (e.g. that it includes prompt audio)
    query: dict[str, Any] = field(default_factory=dict)


@dataclass
class CreditedClip:
    """What the wrapper hands back per clip: the attribution, where the clip was saved, what each sink did."""

    index: int
    result: "AttributionResult"
    path: Path | None
    receipts: list[Receipt] = field(default_factory=list)

    @property
    def credits(self) -> list[dict[str, Any]]:
        return self.result.credits

    @property
    def vetoes(self) -> list[str]:
        return self.result.vetoes


@dataclass(frozen=True)
class CreditConfig:
    """How generated clips are credited."""

    settings: AttributeSettings = field(default_factory=AttributeSettings)
    #: where to save each clip: a path template with ``{i}`` (clip index in the call) and ``{time}``
    #: (UTC, compact); the extension picks the format (.wav .flac .ogg .opus .mp3). None: not saved
    save_to: str | None = None
    #: credit sinks in order; None: ``("sidecar",)`` when clips are saved, none otherwise
    sinks: Sequence[str] | None = None
    options: SinkOptions = field(default_factory=SinkOptions)
    #: "raise": a veto raises ReleaseVetoed (after all clips are attributed); "keep": return it marked
    on_veto: Literal["raise", "keep"] = "raise"

    def __post_init__(self) -> None:
        if self.on_veto not in ("raise", "keep"):
            raise TdaError(f"on_veto must be 'raise' or 'keep', not {self.on_veto!r}")
        if self.save_to is not None and Path(self.save_to).suffix.lower() not in FORMATS:
            raise TdaError(f"save_to {self.save_to!r}: the extension must be one of {', '.join(FORMATS)}")

    @property
    def sink_names(self) -> tuple[str, ...]:
        if self.sinks is not None:
            return tuple(self.sinks)
        return DEFAULT_SINKS if self.save_to is not None else ()


def save_clip(audio: np.ndarray | torch.Tensor, sample_rate: int, target: Path) -> Path:
    """Write a clip atomically in the format its extension names."""
    data = audio.detach().float().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio, dtype=np.float32)
    data = np.clip(data[None] if data.ndim == 1 else data, -1.0, 1.0).T
    fmt, subtype = FORMATS[target.suffix.lower()]
    with atomic_path(target) as tmp:
        try:
            sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"{target}: cannot write {fmt}/{subtype} at {sample_rate} Hz ({exc})") from None
    return target


def credit_clips(attributor: "Attributor", clips: Sequence[Clip], config: CreditConfig = CreditConfig()) -> list[CreditedClip]:
    """Attribute, save and sink every clip; see the module docstring for the order and the veto."""
    sinks = config.sink_names
    check_sinks(sinks, have_file=config.save_to is not None)  # a bad sink name fails before any work
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = []
    for i, clip in enumerate(clips):
        result = attributor.attribute(clip.audio, clip.sample_rate, prompt=clip.prompt, settings=config.settings,
                                      seconds_start=clip.seconds_start, seconds_total=clip.seconds_total,
                                      encoded=clip.encoded)
        result.query.update(clip.query)
        path = None
        if config.save_to is not None and not result.vetoes:
            path = save_clip(clip.audio, clip.sample_rate, Path(config.save_to.format(i=i, time=stamp)))
            result.query["path"] = str(path)
        receipts = write_credits(result.to_dict(), path, sinks, config.options) if not result.vetoes else []
        out.append(CreditedClip(i, result, path, receipts))
    vetoed = [c for c in out if c.vetoes]
    if vetoed and config.on_veto == "raise":
        reasons = "; ".join(f"clip {c.index}: {', '.join(c.vetoes)}" for c in vetoed)
        raise ReleaseVetoed(f"{len(vetoed)} of {len(out)} generated clip(s) not released: {reasons}", out)
    return out


ClipsOf = Callable[[Any, tuple[Any, ...], dict[str, Any]], Sequence[Clip]]


def credited(attributor: "Attributor", clips_of: ClipsOf, config: CreditConfig = CreditConfig()
             ) -> Callable[[Callable[..., Any]], Callable[..., tuple[Any, list[CreditedClip]]]]:
    """Decorator for a toolkit's generate function: call it unchanged, then :func:`credit_clips` its output.

    ``clips_of(output, args, kwargs)`` turns the toolkit's output and the call's arguments into clips
    (audio + the conditioning each was generated with). The wrapped function returns
    ``(output, [CreditedClip, ...])``.
    """
    def decorate(generate: Callable[..., Any]) -> Callable[..., tuple[Any, list[CreditedClip]]]:
        check_sinks(config.sink_names, have_file=config.save_to is not None)  # fail before generating

        @functools.wraps(generate)
        def wrapper(*args: Any, **kwargs: Any) -> tuple[Any, list[CreditedClip]]:
            output = generate(*args, **kwargs)
            return output, credit_clips(attributor, clips_of(output, args, kwargs), config)
        return wrapper
    return decorate
