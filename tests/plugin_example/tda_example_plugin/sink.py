"""The ``royalty_statement`` credit sink: one JSON line per credited artist in a statement file.

The file is ``--sink-option statement=PATH`` (``SinkOptions.extra["statement"]``), else
``royalties.jsonl`` beside the audio file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tda_plugin import hookimpl
from tda_plugin.sinks import Receipt, SinkOptions, SinkSpec


def write(result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt:
    default = (audio_path.parent if audio_path else Path.cwd()) / "royalties.jsonl"
    statement = Path(options.extra.get("statement", default))
    with statement.open("a", encoding="utf-8") as fh:
        for artist in result["artists"]:
            fh.write(json.dumps({"clip": str(audio_path) if audio_path else None, "artist": artist["artist"],
                                 "share": artist["share"], "model": result["model"]["fingerprint"]}) + "\n")
    return Receipt("royalty_statement", str(statement))


@hookimpl
def tda_credit_sinks() -> list[SinkSpec]:
    return [SinkSpec("royalty_statement", "one JSON line per credited artist in royalties.jsonl (example plugin)", write)]
