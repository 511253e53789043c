"""Run the selected credit sinks on one attribution result, in the order given."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from ..errors import TdaError
from ..registry import get_sink_spec
from .base import Receipt, SinkOptions, SinkSpec

log = logging.getLogger(__name__)

#: what ``tda attribute`` and the generation wrappers use when no sink is named
DEFAULT_SINKS = ("sidecar",)


def check_sinks(names: Sequence[str], *, have_file: bool) -> list[SinkSpec]:
    """Resolve sink names up front, so a typo fails before any work (and a file-only sink without a file)."""
    specs = [get_sink_spec(n) for n in names]
    if not have_file:
        needing = [s.name for s in specs if s.needs_file]
        if needing:
            raise TdaError(f"credit sink(s) {', '.join(needing)} write beside or into an audio file; "
                           "save the clips (save_to=...) or choose sinks that need no file, such as 'ledger'")
    return specs


def write_credits(result: dict[str, Any], audio_path: Path | None, sinks: Sequence[str] = DEFAULT_SINKS,
                  options: SinkOptions = SinkOptions()) -> list[Receipt]:
    """Hand one result to each sink; a result that a plugin vetoed is released to none of them."""
    if result.get("vetoes"):  # the caller reports the veto (ReleaseVetoed, or exit code 4)
        return []
    receipts = []
    for spec in check_sinks(sinks, have_file=audio_path is not None):
        receipt = spec.write(result, None if audio_path is None else Path(audio_path), options)
        if receipt.note:
            log.warning("%s", receipt.note)
        receipts.append(receipt)
    return receipts
