"""A worker process for the ledger concurrency test: appends many attributions as fast as it can."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def append_many(ledger_path: str, worker: int, count: int, start: Any, out: Any) -> None:
    from bench.sink_result import result_doc
    from tda_plugin.sinks import SinkOptions, write_credits

    start.wait()  # a barrier: both workers begin together, after their imports
    t0 = time.monotonic()
    for i in range(count):
        # one sink call per attribution, as `tda attribute --sink ledger` makes: a fresh connection each time
        write_credits(result_doc(prompt=f"w{worker}/{i}"), None, ["ledger"], SinkOptions(ledger=Path(ledger_path)))
    out.put((worker, t0, time.monotonic()))
