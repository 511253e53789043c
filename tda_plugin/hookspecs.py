"""The extension surface of tda-plugin: every hook a plugin may implement.

Plugins are ordinary modules or objects with functions marked ``@tda_plugin.hookimpl`` and are found
through the entry-point group ``tda_plugin`` (see :mod:`tda_plugin.plugins`). The built-in
stable-audio-tools adapter and the built-in embedders are registered exactly this way.
Implementations may accept fewer arguments than a spec names, so specs can grow compatibly.

Hooks, in the order they are used:

* discovery — :func:`tda_adapters`, :func:`tda_embedders` (called whenever names are resolved);
* index lifecycle — :func:`tda_index_built` (after an index build has finished);
* attribution lifecycle — :func:`tda_after_attribution` (after each query is attributed).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .registry import AdapterSpec, EmbedderSpec

#: bumped whenever a hook is added (minor) or changed incompatibly (major)
HOOKSPEC_VERSION = "1.0"

hookspec = pluggy.HookspecMarker("tda_plugin")
hookimpl = pluggy.HookimplMarker("tda_plugin")


@hookspec
def tda_adapters() -> "list[AdapterSpec]":
    """Return the model adapters this plugin provides.

    Called every time adapter names are resolved. Each :class:`~tda_plugin.registry.AdapterSpec`
    names the adapter and a loader; the loader must import its toolkit lazily, so that listing
    adapters never needs the toolkit. All results are collected (not firstresult); two plugins
    providing the same name is an error reported by name.
    """


@hookspec
def tda_embedders() -> "list[EmbedderSpec]":
    """Return the prefilter embedders this plugin provides.

    An embedder maps encoded training segments (and the query) to vectors whose inner product
    ranks candidates for exact scoring. Collected from all plugins, like :func:`tda_adapters`.
    """


@hookspec
def tda_index_built(index_dir: str, info: dict[str, Any]) -> None:
    """Called once after an index build completes, with its directory and ``tda index info`` data."""


@hookspec
def tda_after_attribution(result: dict[str, Any]) -> None:
    """Called after each query is attributed, with the result as a JSON-ready dict (read-only)."""
