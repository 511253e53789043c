"""Errors reach the user as one line on stderr; ``TDA_DEBUG=1`` shows the traceback instead."""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from tda_plugin.errors import TdaError

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True, highlight=False)

#: exit codes (documented in docs/cli.md)
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_VETOED = 4


def guarded(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TdaError as exc:
            if os.environ.get("TDA_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {exc}  [dim](set TDA_DEBUG=1 for the traceback)[/]", soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None
    return wrapper  # type: ignore[return-value]
