"""tda-plugin: training data attribution by unlearning for music generative models.

``import tda_plugin`` needs no toolkit; adapters import theirs when a model is loaded. The public names
are imported on first use (PEP 562), so ``import tda_plugin`` — and ``tda --help`` — do not pay for
torch, FAISS and scipy until something needs them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {"Attributor": "attributor", "AttributionResult": "attributor", "TdaError": "errors",
            "hookimpl": "hookspecs", "HOOKSPEC_VERSION": "hookspecs", "AttributeSettings": "settings",
            "IndexSettings": "settings", "UnlearnSettings": "settings"}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .attributor import AttributionResult, Attributor
    from .errors import TdaError
    from .hookspecs import HOOKSPEC_VERSION, hookimpl
    from .settings import AttributeSettings, IndexSettings, UnlearnSettings


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
