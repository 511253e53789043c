"""Settings dataclasses built from a command's options by field name: an option named like a field sets that field.

A command declares each option once, as its Typer parameter (with the field's default and its help); the parsed
values (``typer.Context.params``) then fill the settings object, so no option is listed a second time to be
passed on. Options that are no field of the class (``--index``, ``--json``) are left to the command; a field
with no option keeps its default.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound="DataclassInstance")


def settings_from(cls: type[S], params: Mapping[str, Any], **values: Any) -> S:
    """``cls`` with each field that ``params`` names set from it; ``values`` (nested settings, options converted
    on the way) win over ``params``. The class validates the result, as it validates any other caller's."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in params.items() if k in names}, **values})
