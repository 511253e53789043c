"""Read an audio file's credits back from wherever the sinks put them: its tags, else its sidecar."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AudioError, TdaError
from .sidecar import read_sidecar, sidecar_path
from .tags import read_tags


def read_credits(audio_path: Path) -> tuple[dict[str, Any], str]:
    """(latest result JSON, where it was found). Tags win over a sidecar; the name the demo used before it
    wrote sidecars through the sink (``clip.credits.json``) is read too."""
    audio_path = Path(audio_path)
    if not audio_path.is_file():
        raise AudioError(f"{audio_path}: no such audio file")
    try:
        doc = read_tags(audio_path)
    except AudioError:  # not decodable audio: a sidecar may still exist
        doc = None
    if doc is not None:
        return doc, f"tags of {audio_path}"
    for candidate in (sidecar_path(audio_path), audio_path.with_suffix(".credits.json")):
        if candidate.is_file():
            doc, history = read_sidecar(candidate)
            return doc, str(candidate) + (f" ({len(history)} earlier result(s) in its history)" if history else "")
    raise TdaError(f"{audio_path}: no credits found (no tda tags, no {sidecar_path(audio_path).name}); "
                   "attribute it with `tda attribute` first")
