"""The plugin surface: built-ins load through the same entry-point group as third-party plugins."""
from __future__ import annotations

import importlib.metadata

import pytest

from tda_plugin import hookimpl, plugins
from tda_plugin.registry import AdapterSpec, adapters, embedders


@pytest.fixture()
def fresh_manager(monkeypatch: pytest.MonkeyPatch):
    plugins.get_plugin_manager.cache_clear()
    yield plugins.get_plugin_manager
    plugins.get_plugin_manager.cache_clear()


def test_builtins_are_entry_points() -> None:
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="tda_plugin")}
    assert eps.get("stable_audio") == "tda_plugin.adapters.stable_audio"
    assert eps.get("builtin_embedders") == "tda_plugin.embedders"


def test_autoload_off_still_has_builtins(fresh_manager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDA_PLUGIN_DISABLE_AUTOLOAD", "1")
    assert "stable-audio" in adapters() and "activations" in embedders()


def test_blocking_a_plugin(fresh_manager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDA_PLUGIN_BLOCK", "stable_audio")
    assert "stable-audio" not in adapters()


def test_a_registered_plugin_adds_an_adapter_and_duplicates_are_refused(fresh_manager) -> None:
    class ThirdParty:
        @hookimpl
        def tda_adapters(self):
            return [AdapterSpec("toy", "a toy adapter", lambda checkpoint, *, model_config, device: None)]

    pm = fresh_manager()
    pm.register(ThirdParty(), name="toy")
    assert "toy" in adapters()
    pm.register(ThirdParty(), name="toy2")
    from tda_plugin.errors import TdaError

    with pytest.raises(TdaError, match="two plugins provide the adapter 'toy'"):
        adapters()


def test_broken_entry_point_is_reported_not_fatal(fresh_manager, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        name, value, group = "broken", "nowhere.module", "tda_plugin"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: list(real(**kw)) + [Broken()] if kw.get("group") == "tda_plugin" else real(**kw))
    assert "stable-audio" in adapters()
    assert "broken" in plugins.FAILED and "nowhere" in plugins.FAILED["broken"]
