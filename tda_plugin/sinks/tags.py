"""Credits inside the audio file, so they travel with it (mutagen; WAV, FLAC, OGG/Vorbis, Opus, MP3).

Two tags: the top credits as readable text (``CREDITS`` in Vorbis comments, an ID3 ``COMM`` frame
described ``credits``) and the full result JSON (``TDA_CREDITS`` / ID3 ``TXXX:TDA_CREDITS``). The file is
tagged as a copy beside it and renamed into place, so a failure never leaves half a file; only the
metadata changes, never the audio data (tests decode before and after and compare samples). A
format that cannot carry these tags gets the sidecar instead, and the receipt says so.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import soundfile as sf

from ..atomic import atomic_path
from ..copies.view import tag_lines
from ..errors import AudioError, MissingDependencyError, TdaError
from ..hookspecs import hookimpl
from .base import Receipt, SinkOptions, SinkSpec
from .sidecar import sidecar_path, write as write_sidecar

NAME = "tags"
JSON_TAG = "TDA_CREDITS"
TEXT_TAG = "CREDITS"
ID3_TEXT_DESC = "credits"
#: the formats (libsndfile's names) whose tags tda writes and reads
TAGGABLE = ("WAV", "WAVEX", "FLAC", "OGG/VORBIS", "OGG/OPUS", "MP3")


def _mutagen() -> Any:
    try:
        from mutagen import flac, id3, mp3, oggopus, oggvorbis, wave
    except ImportError as exc:
        raise MissingDependencyError(f"audio tags need mutagen (pip install mutagen): {exc}") from None
    return {"flac": flac, "id3": id3, "mp3": mp3, "oggopus": oggopus, "oggvorbis": oggvorbis, "wave": wave}


def audio_format(path: Path) -> str:
    """libsndfile's name of the container (and codec for OGG), e.g. ``FLAC`` or ``OGG/OPUS``."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    return f"OGG/{info.subtype}" if info.format == "OGG" else info.format


def readable(result: dict[str, Any], top: int) -> str:
    """``1. Artist - Title (licence) 41.2%`` per line, after a line per near copy (tda_plugin/copies): what a tag
    editor or player shows."""
    lines = [f"{c['rank']}. {c['artist']} - {c['title']} ({c['license']}) {100 * float(c['share']):.1f}%"
             for c in (result.get("credits") or [])[:top]]
    return "\n".join(tag_lines(result) + lines) or "no credits"


def _opener(fmt: str) -> Callable[[str], Any]:
    m = _mutagen()
    return {"WAV": m["wave"].WAVE, "WAVEX": m["wave"].WAVE, "FLAC": m["flac"].FLAC, "OGG/VORBIS": m["oggvorbis"].OggVorbis,
            "OGG/OPUS": m["oggopus"].OggOpus, "MP3": m["mp3"].MP3}[fmt]


def _is_id3(fmt: str) -> bool:
    return fmt in ("WAV", "WAVEX", "MP3")


def write_tags(path: Path, result: dict[str, Any], top: int = 5) -> None:
    """Tag ``path`` in place (atomically); raises :class:`TdaError` for a format not in :data:`TAGGABLE`."""
    path = Path(path)
    fmt = audio_format(path)
    if fmt not in TAGGABLE:
        raise TdaError(f"{path}: {fmt} files cannot carry tda credit tags (only {', '.join(TAGGABLE)})")
    doc, text = json.dumps(result, separators=(",", ":")), readable(result, top)
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        f = _opener(fmt)(str(tmp))
        if f.tags is None:
            f.add_tags()
        if _is_id3(fmt):
            id3 = _mutagen()["id3"]
            f.tags.setall(f"TXXX:{JSON_TAG}", [id3.TXXX(encoding=3, desc=JSON_TAG, text=[doc])])
            f.tags.setall(f"COMM:{ID3_TEXT_DESC}:eng", [id3.COMM(encoding=3, lang="eng", desc=ID3_TEXT_DESC, text=[text])])
        else:
            f.tags[JSON_TAG] = [doc]
            f.tags[TEXT_TAG] = [text]
        f.save()
        shutil.copystat(path, tmp)


def read_tags(path: Path) -> dict[str, Any] | None:
    """The result JSON stored in ``path``'s tags, or None when it has none (or cannot have any)."""
    fmt = audio_format(Path(path))
    if fmt not in TAGGABLE:
        return None
    tags = _opener(fmt)(str(path)).tags
    if tags is None:
        return None
    if _is_id3(fmt):
        frames = tags.getall(f"TXXX:{JSON_TAG}")
        text = frames[0].text[0] if frames else None
    else:
        values = tags.get(JSON_TAG)
        text = values[0] if values else None
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AudioError(f"{path}: its {JSON_TAG} tag is not valid JSON ({exc})") from None


def write(result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt:
    if audio_path is None:
        raise TdaError("the tags sink needs the audio file the credits belong to")
    fmt = audio_format(audio_path)
    if fmt not in TAGGABLE:
        fallback = write_sidecar(result, audio_path, options)
        return Receipt(NAME, fallback.location, f"{audio_path}: {fmt} files cannot carry credit tags; "
                                                f"credits written to the sidecar {sidecar_path(audio_path)} instead")
    write_tags(audio_path, result, options.tag_top)
    return Receipt(NAME, str(audio_path))


@hookimpl
def tda_credit_sinks() -> list[SinkSpec]:
    return [SinkSpec(NAME, "tags inside the audio file (WAV, FLAC, OGG/Vorbis, Opus, MP3; else the sidecar)", write,
                     needs_file=True)]
