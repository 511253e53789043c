"""The plugin manager: hookspecs + entry-point plugins (group ``tda_plugin``).

Built-ins (the stable-audio-tools adapter, the built-in embedders) are declared in this
distribution's own entry points, so they load exactly as a third-party plugin would. Set
``TDA_PLUGIN_DISABLE_AUTOLOAD=1`` to skip entry points (built-ins are then registered directly),
``TDA_PLUGIN_BLOCK=name1,name2`` to block plugins by entry-point name, and
``TDA_PLUGIN_TRACE=1`` to print pluggy's hook calls to stderr.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
from functools import lru_cache

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

GROUP = "tda_plugin"
BUILTINS = {
    "stable_audio": "tda_plugin.adapters.stable_audio",
    "builtin_embedders": "tda_plugin.embedders",
}


#: entry-point plugins that raised while loading: name -> error (reported, never fatal)
FAILED: dict[str, str] = {}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Like pluggy's loader, but a plugin that fails to import is reported by name and skipped."""
    for ep in importlib.metadata.entry_points(group=GROUP):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not break the others
            FAILED[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("tda plugin %r failed to load and is skipped: %s", ep.name, FAILED[ep.name])


@lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in filter(None, os.environ.get("TDA_PLUGIN_BLOCK", "").split(",")):
        pm.set_blocked(name.strip())
    if os.environ.get("TDA_PLUGIN_DISABLE_AUTOLOAD"):
        for name, module in BUILTINS.items():
            if not pm.is_blocked(name):
                pm.register(importlib.import_module(module), name=name)
    else:
        _load_entry_points(pm)
        for name, module in BUILTINS.items():  # an un-installed checkout still gets its built-ins
            if pm.get_plugin(name) is None and not pm.is_blocked(name):
                pm.register(importlib.import_module(module), name=name)
    pm.check_pending()
    if os.environ.get("TDA_PLUGIN_TRACE"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm
