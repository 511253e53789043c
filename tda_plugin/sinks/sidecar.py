"""The default credit sink: ``<audio>.credits.json`` beside the audio file (the result JSON, as ``--json`` writes it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..errors import TdaError
from ..hookspecs import hookimpl
from .base import Receipt, SinkOptions, SinkSpec

NAME = "sidecar"


def sidecar_path(audio_path: Path) -> Path:
    """``clip.wav`` -> ``clip.wav.credits.json`` (the full name, so clip.wav and clip.mp3 never collide)."""
    return audio_path.with_name(audio_path.name + ".credits.json")


def write(result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt:
    if audio_path is None:
        raise TdaError("the sidecar sink needs the audio file the credits belong to")
    target = sidecar_path(audio_path)
    write_json(target, result)
    return Receipt(NAME, str(target))


@hookimpl
def tda_credit_sinks() -> list[SinkSpec]:
    return [SinkSpec(NAME, "<audio>.credits.json beside the audio file (default)", write, needs_file=True)]
