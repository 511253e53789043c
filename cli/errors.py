"""Errors reach the user as one line on stderr; ``TDA_DEBUG=1`` shows the traceback instead.

Every command runs through :func:`guarded`: inside a console :func:`~.console.session` (third-party output
silenced unless ``-v``) and one progress display (drawn only on a terminal).
"""
from __future__ import annotations

import errno
import functools
import os
from typing import Any, Callable, TypeVar

import typer

from tda_plugin.errors import TdaError

from .console import err, say, session

F = TypeVar("F", bound=Callable[..., Any])

#: exit codes (documented in docs/cli.md)
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_VETOED = 4
EXIT_INTERRUPTED = 130

__all__ = ["EXIT_INPUT", "EXIT_USAGE", "EXIT_VETOED", "err", "fail", "guarded"]


def fail(message: str) -> None:
    """The one line of a failed command (plain text: no Rich markup is interpreted in ``message``)."""
    say("error:", "bold red", f"{message}  (set TDA_DEBUG=1 for the traceback)")


DISK_FULL = ("No space left on device", "database or disk is full", "Disk quota exceeded", "os error 28")


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk, however the library that hit it words it."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or any(s in str(exc) for s in DISK_FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def guarded(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tda_plugin import progress

        try:
            with session(), progress.display(err):
                return fn(*args, **kwargs)
        except TdaError as exc:
            if os.environ.get("TDA_DEBUG"):
                raise
            fail(str(exc))
            raise typer.Exit(EXIT_INPUT) from None
        except Exception as exc:
            if not disk_full(exc) or os.environ.get("TDA_DEBUG"):
                raise
            where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
            fail(f"no space left on the device{where} ({' '.join(str(exc).split())[:200]}); free some space and rerun "
                 "the same command: finished files are kept (never a partial one), so an index build resumes")
            raise typer.Exit(EXIT_INPUT) from None
        except KeyboardInterrupt:
            say("interrupted", "bold red", "(finished files are kept; rerun the command to go on)")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return wrapper  # type: ignore[return-value]
