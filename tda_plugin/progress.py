"""Progress a person can follow: named stages, drawn by Rich on stderr, with an ETA where work is counted.

The library only reports: ``with stage("score", total=n) as advance: ... advance(k)``. Whoever runs it
decides whether anything is drawn. The CLI opens one :func:`display` for a whole command (only when
stderr is a terminal), so stages of successive clips reuse one live area instead of printing a bar each.
Without a display, a stage draws its own bar when stderr is a terminal (Python API in a shell). When stderr
is a file or a pipe (a batch job, ``nohup``, a cluster scheduler's log), a counted stage instead writes one
plain line at most every ``TDA_PROGRESS_EVERY`` seconds (default 60): done/total, elapsed and time left, so
an hour-long training under a scheduler is not silent until it ends, and short stages print nothing. Every
stage's wall time is logged at INFO (``tda -v``). ``TDA_NO_PROGRESS=1`` turns all of it off.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

log = logging.getLogger(__name__)

Advance = Callable[[int], None]

#: where the library's own progress and notes go; the CLI pins it to the real stderr for each command
stderr = Console(stderr=True, highlight=False)


class _Count(ProgressColumn):
    """``done/total`` for counted stages, nothing for open-ended ones (loading a model, one backward pass)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")


class _Remaining(TimeRemainingColumn):
    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Count(), TimeElapsedColumn(),
                    _Remaining(), console=console, transient=True, redirect_stdout=False, redirect_stderr=False)


def enabled_for(console: Console) -> bool:
    """Draw only on a terminal, and never when ``TDA_NO_PROGRESS`` is set."""
    return console.is_terminal and not os.environ.get("TDA_NO_PROGRESS")


def _line_interval() -> float | None:
    """Seconds between plain progress lines when stderr is no terminal; None: no lines."""
    if os.environ.get("TDA_NO_PROGRESS") or stderr.is_terminal:
        return None
    return float(os.environ.get("TDA_PROGRESS_EVERY", "60"))


def _lines(description: str, total: int, every: float, t0: float) -> Advance:
    """``advance`` for a counted stage logged as plain lines (see the module docstring)."""
    state = {"done": 0, "last": t0}

    def advance(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] < every:
            return
        state["last"] = now
        done, elapsed = state["done"], now - t0
        left = elapsed * (total - done) / done if done else 0.0
        stderr.print(f"{description}: {done}/{total} ({100 * done / total:.0f} %), {duration(elapsed)} elapsed, "
                     f"about {duration(left)} left", soft_wrap=True)
    return advance


_active: Progress | None = None
_label = ""
#: expected seconds of coming stages, by name (shown beside an open-ended stage, which has no ETA of its own)
_expected: dict[str, float] = {}


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 10 s``, ``1 h 05 min``."""
    if seconds < 9.5:
        return f"{max(seconds, 0.1):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@contextlib.contextmanager
def display(console: Console) -> Iterator[None]:
    """One live progress area for everything inside the block (a no-op when ``console`` is no terminal)."""
    global _active
    if not enabled_for(console) or _active is not None:
        yield
        return
    _active = _progress(console)
    _active.start()
    try:
        yield
    finally:
        _active.stop()
        _active = None


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Take the live area off the screen while the block prints (e.g. a table on stdout, same terminal)."""
    if _active is None:
        yield
        return
    _active.stop()
    try:
        yield
    finally:
        _active.start()


@contextlib.contextmanager
def label(text: str) -> Iterator[None]:
    """Prefix the stages inside the block, e.g. with the clip they work on."""
    global _label
    saved, _label = _label, text
    try:
        yield
    finally:
        _label = saved


@contextlib.contextmanager
def expected(**seconds: float) -> Iterator[None]:
    """Within the block, stages of these names show how long they are expected to take (e.g. ``unlearn=150``)."""
    saved = dict(_expected)
    _expected.update(seconds)
    try:
        yield
    finally:
        _expected.clear()
        _expected.update(saved)


@contextlib.contextmanager
def stage(name: str, total: int | None = None) -> Iterator[Advance]:
    """Report one stage; yields ``advance(n)``. ``total=None``: open-ended (a spinner and the elapsed time)."""
    description = f"{_label}: {name}" if _label else name
    if total is None and name in _expected:
        description += f" (about {duration(_expected[name])})"
    t0 = time.monotonic()
    own = None
    if _active is None and total and enabled_for(stderr):
        own = _progress(stderr)
        own.start()
    bar = _active or own
    tid = bar.add_task(description, total=total) if bar is not None else None
    every = _line_interval() if bar is None and total else None
    try:
        if bar is not None and tid is not None:
            yield lambda n=1: bar.advance(tid, n)
        elif every is not None:
            yield _lines(description, total, every, t0)
        else:
            yield lambda n=1: None
    finally:
        if bar is not None and tid is not None:
            bar.remove_task(tid)
        if own is not None:
            own.stop()
        log.info("%s%s: %.1f s", _label + ": " if _label else "", name, time.monotonic() - t0)


def task(description: str, total: int) -> contextlib.AbstractContextManager[Advance]:
    """A counted stage (the index build's name for :func:`stage`)."""
    return stage(description, total)
