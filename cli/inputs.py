"""The clips of one `tda attribute` call: expand folders, find each clip's conditioning, check every file.

Conditioning, per field, from the first source that has it:
``--prompt`` / ``--seconds-start`` / ``--seconds-total``, then the ``--prompts`` CSV, then what is stored
with the clip (its tags, else its sidecar: the result of an earlier attribution, e.g. the demo's), then
nothing (no prompt: attributed unconditioned, with a warning; ``seconds_start`` 0; ``seconds_total``
the clip's length). Every clip is decoded and checked before the model loads, so bad files are reported
within seconds, and each one only skips itself. That decoding and that check are the only ones: a clip keeps
its samples and the check's warnings until it is attributed.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tda_plugin.errors import TdaError

if TYPE_CHECKING:
    import numpy as np

#: what a folder is searched for (the formats libsndfile decodes; compared case-insensitively)
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                  ".snd", ".caf", ".w64", ".rf64")
FIELDS = ("prompt", "seconds_start", "seconds_total")


@dataclass
class Clip:
    """One input file and what is known about it before attribution."""

    path: Path
    prompt: str | None = None
    seconds_start: float = 0.0
    seconds_total: float | None = None
    #: where each conditioning field came from: "--prompt", "prompts.csv", "tags", "sidecar" (absent: default)
    sources: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    #: the decoded samples [channels, samples] at ``sample_rate``, from :func:`check` until the clip is attributed
    audio: np.ndarray | None = None
    sample_rate: int = 0
    #: what the level check reported of the audio, attributed as is (``query.warnings`` of its result)
    warnings: list[str] = field(default_factory=list)
    #: why it cannot be attributed (set by the checks, or by a failure during attribution)
    error: str | None = None


def expand(inputs: list[Path]) -> tuple[list[Clip], bool]:
    """Files as given and folders as the audio files inside (sorted, not recursive), without duplicates.

    Returns the clips and whether a folder was given. A missing input or an empty folder becomes a clip
    with an error, so it is reported with the others instead of stopping them.
    """
    clips: list[Clip] = []
    seen: set[Path] = set()
    folder = False

    def add(path: Path, error: str | None = None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            clips.append(Clip(path, error=error))

    for item in inputs:
        if item.is_dir():
            folder = True
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                add(item, f"{item}: no audio files in this folder ({', '.join(s[1:] for s in AUDIO_SUFFIXES[:7])}, ...)")
            for p in found:
                add(p)
        else:
            add(item)
    return clips, folder


def read_prompts(path: Path) -> dict[Path, dict[str, Any]]:
    """``--prompts FILE.csv``: path,prompt[,seconds_start,seconds_total]; paths relative to the CSV's folder."""
    if not path.is_file():
        raise TdaError(f"{path}: no such prompts file (columns: path,prompt[,seconds_start,seconds_total])")
    table: dict[Path, dict[str, Any]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or "prompt" not in columns:
            raise TdaError(f"{path}: needs the columns path and prompt (found: {', '.join(columns) or 'none'})")
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row.get("path"):
                continue
            entry: dict[str, Any] = {"prompt": row["prompt"] or None}
            for key in ("seconds_start", "seconds_total"):
                if row.get(key):
                    try:
                        entry[key] = float(row[key])
                    except ValueError:
                        raise TdaError(f"{path}, line {line}: {key} {row[key]!r} is not a number") from None
                    if not math.isfinite(entry[key]) or entry[key] < 0:
                        raise TdaError(f"{path}, line {line}: {key} must be a non-negative number")
            p = Path(row["path"])
            table[(p if p.is_absolute() else path.parent / p).resolve()] = entry
    return table


def stored_conditioning(path: Path) -> tuple[dict[str, Any], str] | None:
    """The conditioning of an earlier attribution stored with the clip (tags win over a sidecar), or None."""
    from tda_plugin.sinks.read import read_credits

    try:
        doc, where = read_credits(path)
    except Exception:  # no credits, or tags a tag library cannot parse: either way nothing usable is stored
        return None
    query = doc.get("query") if isinstance(doc, dict) else None
    if not isinstance(query, dict):
        return None
    return {k: query[k] for k in FIELDS if k in query}, ("tags" if where.startswith("tags") else "sidecar")


def condition(clip: Clip, given: dict[str, Any], prompts_file: Path | None, table: dict[Path, dict[str, Any]]) -> None:
    """Fill ``clip``'s conditioning from the sources in order; ``given`` holds the command-line values (None: not given)."""
    sources: list[tuple[dict[str, Any], str]] = [({k: v for k, v in given.items() if v is not None}, "command line")]
    row = table.get(clip.path.resolve())
    if row is not None and prompts_file is not None:
        sources.append((row, prompts_file.name))
    stored = stored_conditioning(clip.path)
    if stored is not None:
        sources.append(stored)
    for key in FIELDS:
        for values, name in sources:
            if key in values and (values[key] is not None or key == "prompt"):  # a stored "no prompt" counts
                setattr(clip, key, values[key] if key == "prompt" else float(values[key]))
                clip.sources[key] = name
                break


def check(clip: Clip, sample_rate: int, segment_samples: int) -> bool:
    """Decode and check one clip against the index (levels, length); False (and ``clip.error``) if it cannot be
    attributed. A clip that passes keeps its samples and the check's warnings, for its attribution."""
    from tda_plugin import audio as audio_io

    try:
        data, rate = audio_io.load(clip.path)
        warnings = audio_io.check_levels(data, str(clip.path))  # refusals now; its warnings come once, when attributed
    except TdaError as exc:
        clip.error = str(exc)
        return False
    clip.duration_s = data.shape[1] / rate
    if math.ceil(data.shape[1] * sample_rate / rate) < segment_samples:
        clip.error = (f"{clip.path}: {clip.duration_s:.2f} s is shorter than one {segment_samples / sample_rate:.2f} s "
                      "segment of this index")
        return False
    clip.audio, clip.sample_rate, clip.warnings = data, rate, warnings
    return True
