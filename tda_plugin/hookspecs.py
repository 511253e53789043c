"""The extension surface of tda-plugin: every hook a plugin may implement (docs/plugins.md).

Plugins are ordinary modules or objects with functions marked ``@tda_plugin.hookimpl`` and are found
through the entry-point group ``tda_plugin`` (see :mod:`tda_plugin.plugins`). The built-in
stable-audio-tools adapter, embedders and credit sinks are registered exactly this way.
Implementations may accept fewer arguments than a spec names, so specs can grow compatibly; an
implementation of a hook name that is not specified here (a typo) is reported by ``tda plugins``.

Hooks, by lifecycle phase, in the order they are called:

* discovery — :func:`tda_adapters`, :func:`tda_embedders`, :func:`tda_credit_sinks` (whenever names
  are resolved or listed; each plugin's implementation is called on its own, so one that raises is
  reported by name and the others still count);
* index lifecycle — :func:`tda_index_built` (after an index build has finished);
* attribution lifecycle — :func:`tda_before_attribution` (before a query is encoded; may refuse it),
  :func:`tda_after_attribution` (after it is scored; may veto the clip's release), then the
  selected credit sinks (only for clips nobody vetoed).

None of the hooks is ``firstresult``: every implementation is called, most recently registered first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .registry import AdapterSpec, EmbedderSpec
    from .sinks.base import SinkSpec

#: ``major.minor``: minor grows when a hook or a hook argument is added (old plugins keep working),
#: major when a hook's name, arguments or meaning change incompatibly. A plugin may declare the
#: version it was written for as a module attribute ``TDA_HOOKSPEC = "1"``; another major is refused.
HOOKSPEC_VERSION = "1.1"

hookspec = pluggy.HookspecMarker("tda_plugin")
hookimpl = pluggy.HookimplMarker("tda_plugin")


# -- discovery ------------------------------------------------------------------------------------
@hookspec
def tda_adapters() -> "list[AdapterSpec]":
    """Return the model adapters this plugin provides.

    Called every time adapter names are resolved or listed. Each :class:`~tda_plugin.registry.AdapterSpec`
    names the adapter and a loader; the loader must import its toolkit lazily, so that listing
    adapters never needs the toolkit. All results are collected; two plugins providing the same name
    is an error reported by name.
    """


@hookspec
def tda_embedders() -> "list[EmbedderSpec]":
    """Return the prefilter embedders this plugin provides.

    An embedder maps encoded training segments (and the query) to vectors whose inner product
    ranks candidates for exact scoring. Collected from all plugins, like :func:`tda_adapters`.
    """


@hookspec
def tda_credit_sinks() -> "list[SinkSpec]":
    """Return the credit sinks this plugin provides.

    A :class:`~tda_plugin.sinks.base.SinkSpec` names a sink and its ``write(result, audio_path,
    options) -> Receipt`` function, which stores one attribution result somewhere (beside the audio,
    inside it, in a ledger, a web service ...). Collected from all plugins, like :func:`tda_adapters`.
    """


# -- index lifecycle ------------------------------------------------------------------------------
@hookspec
def tda_index_built(index_dir: str, info: dict[str, Any]) -> None:
    """Called once after an index build completes, with its directory and the ``tda index info`` dict."""


# -- attribution lifecycle ------------------------------------------------------------------------
@hookspec
def tda_before_attribution(query: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """Called before a query is encoded, with what is known of it and the attribution settings.

    ``query`` has ``path`` (or None), ``prompt``, ``sample_rate``, ``duration_s``, ``seconds_start``,
    ``seconds_total``; ``settings`` is the JSON form of :class:`~tda_plugin.settings.AttributeSettings`.
    Return None to let it proceed, or a one-line reason to refuse it: the attribution then raises
    :class:`~tda_plugin.errors.AttributionRefused` (exit code 3 on the CLI) quoting every reason.
    """


@hookspec
def tda_after_attribution(result: dict[str, Any]) -> str | None:
    """Called after each query is attributed, with the result as a JSON-ready dict (do not modify it).

    Return None to observe only, or a one-line reason to veto releasing the clip (e.g. a memorisation
    guard: its top credit's share is above a threshold). Vetoes are recorded in the result's
    ``vetoes`` list; a vetoed clip is not passed to credit sinks, the generation wrappers raise
    :class:`~tda_plugin.errors.ReleaseVetoed` (or return it marked), and ``tda attribute`` exits with 4.
    """
