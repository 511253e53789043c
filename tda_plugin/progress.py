"""Rich progress bars on stderr, so stdout stays clean for data (tables, --json -)."""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr = Console(stderr=True)

Advance = Callable[[int], None]


@contextlib.contextmanager
def task(description: str, total: int) -> Iterator[Advance]:
    """A progress bar for one stage; yields ``advance(n)``. ``TDA_NO_PROGRESS=1`` turns bars off."""
    if os.environ.get("TDA_NO_PROGRESS") or total <= 0:
        yield lambda n=1: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=False) as bar:
        tid = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(tid, n)
