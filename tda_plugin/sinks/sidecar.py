"""The default credit sink: ``<audio>.credits.json`` beside the audio file.

The file holds the latest result (as ``--json`` writes it) and, under ``history``, the results it
replaced, newest first, each stamped with the UTC time it was replaced: attributing a clip again (other
settings, another index) never silently loses the credits it had. ``SinkOptions(overwrite=True)``
(``tda attribute --overwrite``) replaces the file, history and all. A rerun that yields the same result
adds nothing, so deterministic reruns do not grow the file.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..errors import TdaError
from ..hookspecs import hookimpl
from .base import Receipt, SinkOptions, SinkSpec

NAME = "sidecar"
#: key of the earlier results inside a sidecar
HISTORY = "history"
#: key, inside each history entry, of the UTC time the entry stopped being the file's credits
REPLACED_AT = "replaced_at"


def sidecar_path(audio_path: Path) -> Path:
    """``clip.wav`` -> ``clip.wav.credits.json`` (the full name, so clip.wav and clip.mp3 never collide)."""
    return audio_path.with_name(audio_path.name + ".credits.json")


def read_sidecar(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(latest result, earlier results newest first) of a sidecar file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TdaError(f"{path}: not valid JSON ({exc}); move it away, or attribute again with --overwrite") from None
    if not isinstance(doc, dict):
        raise TdaError(f"{path}: not a credits document (a JSON object is expected)")
    history = doc.pop(HISTORY, None) or []
    return doc, list(history)


def write(result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt:
    if audio_path is None:
        raise TdaError("the sidecar sink needs the audio file the credits belong to")
    target = sidecar_path(audio_path)
    history: list[dict[str, Any]] = []
    if target.is_file() and not options.overwrite:
        current, history = read_sidecar(target)
        if current == json.loads(json.dumps(result)):  # compared as stored: JSON types, not tuples or numpy
            return Receipt(NAME, f"{target} (unchanged)")
        history.insert(0, {**current, REPLACED_AT: datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_json(target, {**result, HISTORY: history} if history else result)
    kept = f" ({len(history)} earlier result(s) kept in its history)" if history else ""
    return Receipt(NAME, f"{target}{kept}")


@hookimpl
def tda_credit_sinks() -> list[SinkSpec]:
    return [SinkSpec(NAME, "<audio>.credits.json beside the audio file, earlier results kept in its history (default)",
                     write, needs_file=True)]
