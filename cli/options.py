"""Options shared by several commands."""
from __future__ import annotations

from typing import Annotated

import typer

Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto (cuda when available)")]


def device_name(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
