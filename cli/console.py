"""Where the CLI writes: data to stdout, everything else to stderr, and nothing from third parties unless ``-v``.

A command runs inside :func:`session`: the two consoles are pinned to the real streams, then
``sys.stdout`` and ``sys.stderr`` are swapped for sinks — and file descriptor 2 too, for C libraries —
so that toolkits' prints, their tqdm bars (k-diffusion's sampler passes ``disable=False``, so no setting
turns them off), decoder chatter and Python warnings never reach the terminal unless the user asked for
them with ``-v``. Our own progress display and log lines go through the pinned ``err`` console and stay
visible.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import IO, Iterator

from rich.console import Console
from rich.text import Text

out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)

#: set by the root callback (``tda -v``)
verbose = False


class _OwnWarnings(logging.Filter):
    """Without ``-v``: tda's own warnings pass; other libraries' records only from ERROR on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return verbose or record.name.startswith("tda_plugin") or record.levelno >= logging.ERROR


def configure_logging() -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
    handler.addFilter(_OwnWarnings())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)


def say(label: str, style: str, message: str) -> None:
    """One line on stderr: a styled label, then the message as plain text (no Rich markup, so a path or a
    pip extra such as ``[stable-audio]`` prints as written)."""
    err.print(Text.assemble((label, style), " ", message), soft_wrap=True)


def write_data(text: str) -> None:
    """Raw text to stdout (JSON, CSV), through the pinned stream, never re-wrapped or re-styled."""
    out.file.write(text)
    out.file.flush()


@contextlib.contextmanager
def _real_stderr_only() -> Iterator[IO[str] | None]:
    """Point file descriptor 2 at /dev/null — C libraries write there directly (libmpg123 on a broken MP3) — and
    yield a stream on the real stderr for our own output. None, and nothing changed, when ``sys.stderr`` is not
    file descriptor 2 (a test runner's capture)."""
    try:
        is_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        is_fd2 = False
    if not is_fd2:
        yield None
        return
    sys.stderr.flush()
    saved = os.dup(2)
    real = os.fdopen(saved, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield real
    finally:
        real.flush()
        os.dup2(saved, 2)
        real.close()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Run one command: consoles pinned to the current streams; third-party output silenced unless verbose."""
    from tda_plugin import progress

    consoles = (out, err, progress.stderr)
    saved = [c._file for c in consoles]  # noqa: SLF001 — Rich's public setter has no getter for "unset"
    out.file, err.file, progress.stderr.file = sys.stdout, sys.stderr, sys.stderr
    try:
        if verbose:
            yield
            return
        with _real_stderr_only() as real, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink), warnings.catch_warnings():
            if real is not None:
                err.file = progress.stderr.file = real
            warnings.simplefilter("ignore")
            yield
    finally:
        for console, file in zip(consoles, saved):
            console._file = file  # noqa: SLF001
