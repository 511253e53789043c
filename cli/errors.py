"""Errors reach the user as one line on stderr; ``TDA_DEBUG=1`` shows the traceback instead.

Every command runs through :func:`guarded`: inside a console :func:`~.console.session` (third-party output
silenced unless ``-v``) and one progress display (drawn only on a terminal).
"""
from __future__ import annotations

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
        except KeyboardInterrupt:
            say("interrupted", "bold red", "(finished files are kept; rerun the command to go on)")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return wrapper  # type: ignore[return-value]
