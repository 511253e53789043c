"""The plugin manager: hookspecs + entry-point plugins (group ``tda_plugin``).

Built-ins (the stable-audio-tools and audiocraft adapters, the built-in embedders and credit sinks) are
declared in this distribution's own entry points (pyproject.toml, the one list of them), so they load
exactly as a third-party plugin would. Set ``TDA_PLUGIN_DISABLE_AUTOLOAD=1`` to load only those (other
packages' entry points are skipped), ``TDA_PLUGIN_BLOCK=name1,name2`` to block plugins by entry-point
name, and ``TDA_PLUGIN_TRACE=1`` to print pluggy's hook calls to stderr.

Nothing a plugin does wrong is fatal or silent: a plugin that raises while loading, or was written
for another major hookspec version, is skipped and listed in :data:`FAILED`; a hook implementation
whose name is not a hookspec (a typo) is listed in :data:`UNKNOWN_HOOKS`. ``tda plugins`` shows both.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

GROUP = "tda_plugin"
#: the distribution whose entry points are the built-ins (still loaded with autoloading off)
OWN_DISTRIBUTION = "tda-plugin"


@dataclass(frozen=True)
class Source:
    """Where a registered plugin came from: its distribution and version (``tda plugins`` shows them)."""

    distribution: str
    version: str


#: plugins that were not registered: name -> why (reported, never fatal); refilled per manager
FAILED: dict[str, str] = {}
#: implementations of hook names that are not hookspecs: plugin name -> [hook name + hint]
UNKNOWN_HOOKS: dict[str, list[str]] = {}
#: discovery hooks whose implementation raised: (hook, plugin name) -> error (filled by the registry)
HOOK_ERRORS: dict[tuple[str, str], str] = {}
#: registered plugin name -> the distribution that provides it
SOURCES: dict[str, Source] = {}


def _check_version(plugin: Any) -> None:
    wanted = getattr(plugin, "TDA_HOOKSPEC", None)
    if wanted is not None and str(wanted).split(".")[0] != hookspecs.HOOKSPEC_VERSION.split(".")[0]:
        raise RuntimeError(f"written for hookspec {wanted}, this tda-plugin has hookspec {hookspecs.HOOKSPEC_VERSION}")


def _load_entry_points(pm: pluggy.PluginManager, *, builtins_only: bool) -> None:
    """Like pluggy's loader, but a plugin that fails to import is reported by name and skipped.
    ``builtins_only``: only this distribution's own entry points."""
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        if builtins_only and (dist is None or dist.name != OWN_DISTRIBUTION):
            continue
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            _check_version(plugin)
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not break the others
            FAILED[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("tda plugin %r failed to load and is skipped: %s", ep.name, FAILED[ep.name])
            continue
        SOURCES[ep.name] = Source(dist.name, dist.version) if dist is not None else Source("(unknown)", "-")


def _find_unknown_hooks(pm: pluggy.PluginManager) -> None:
    """What ``pm.check_pending()`` would raise on, collected per plugin instead of aborting."""
    known = [n for n in dir(hookspecs) if n.startswith("tda_")]
    for hook_name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(hook_name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            UNKNOWN_HOOKS.setdefault(impl.plugin_name, []).append(hook_name + hint)
            log.warning("tda plugin %r implements %r, which is not a tda_plugin hook%s", impl.plugin_name, hook_name, hint)


@lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    FAILED.clear()
    UNKNOWN_HOOKS.clear()
    HOOK_ERRORS.clear()
    SOURCES.clear()
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in filter(None, os.environ.get("TDA_PLUGIN_BLOCK", "").split(",")):
        pm.set_blocked(name.strip())
    _load_entry_points(pm, builtins_only=bool(os.environ.get("TDA_PLUGIN_DISABLE_AUTOLOAD")))
    _find_unknown_hooks(pm)
    if os.environ.get("TDA_PLUGIN_TRACE"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def source_of(plugin_name: str) -> Source:
    """The distribution of a plugin registered under ``plugin_name`` (``unregistered`` for ad-hoc ones)."""
    return SOURCES.get(plugin_name, Source("(registered at run time)", "-"))
