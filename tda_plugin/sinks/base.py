"""What a credit sink is: a named ``write(result, audio_path, options) -> Receipt`` (hook ``tda_credit_sinks``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol


@dataclass(frozen=True)
class SinkOptions:
    """Settings every sink receives; ``extra`` carries ``--sink-option key=value`` pairs for third-party sinks."""

    #: the credits ledger (SQLite); None: ``$TDA_LEDGER``, else the per-user default (docs/plugins.md)
    ledger: Path | None = None
    #: credits written as readable text into audio tags (the full JSON always goes in too)
    tag_top: int = 5
    #: replace an existing sidecar instead of keeping its results in the sidecar's history
    overwrite: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """Where one sink put one result; ``note`` says what did not go as asked (e.g. a sidecar fallback)."""

    sink: str
    location: str
    note: str | None = None


class SinkWrite(Protocol):
    def __call__(self, result: dict[str, Any], audio_path: Path | None, options: SinkOptions) -> Receipt: ...


@dataclass(frozen=True)
class SinkSpec:
    """A credit sink as a plugin offers it.

    ``write`` gets the JSON-ready attribution result, the generated audio file it belongs to (None when
    the clip was never saved) and the options. ``needs_file`` sinks (sidecar, tags) cannot run without a file.
    """

    name: str
    description: str
    write: SinkWrite
    needs_file: bool = False
