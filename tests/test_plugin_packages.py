"""Third-party plugin packages, installed with pip: discovered through entry points, faults reported by name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.registry import adapters, credit_sinks, embedders

from .plugin_packages import broken_plugins, example_plugin, installed  # noqa: F401  (fixtures)

runner = CliRunner()


def test_tda_plugins_in_a_fresh_process_lists_the_example_package_with_its_distribution() -> None:
    env = {**os.environ, "PYTHONPATH": str(installed("example")), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "tda_plugin.cli", "plugins", "--json"], env=env, capture_output=True,
                       text=True, check=True)
    doc = json.loads(r.stdout)
    rows = {(p["kind"], p["name"]): p for p in doc["provided"]}
    for kind, name in (("adapter", "tiny-conv"), ("embedder", "band_energy"), ("credit sink", "royalty_statement"),
                       ("hook", "tda_after_attribution")):
        assert rows[(kind, name)]["distribution"] == "tda-example-plugin" and rows[(kind, name)]["version"] == "0.2.0"
    for kind, name in (("adapter", "stable-audio"), ("embedder", "activations"), ("credit sink", "sidecar"),
                       ("credit sink", "tags"), ("credit sink", "ledger")):
        assert rows[(kind, name)]["distribution"] == "tda-plugin"
    assert doc["hookspec"] == "1.1" and not doc["failed"] and not doc["unknown_hooks"]


def test_example_package_plugins_resolve_in_process(example_plugin: Path) -> None:
    assert "tiny-conv" in adapters() and "band_energy" in embedders() and "royalty_statement" in credit_sinks()


def test_broken_plugins_are_reported_by_name_and_the_rest_works(broken_plugins: Path) -> None:
    r = runner.invoke(app, ["plugins"])
    assert r.exit_code == 0, r.output
    for name in ("stable-audio", "activations", "sidecar", "tags", "ledger"):
        assert name in r.stdout
    err = " ".join(r.stderr.split())
    assert "plugin 'explodes_on_import' failed to load: RuntimeError: this plugin is broken on purpose" in err
    assert "plugin 'future_hookspec' failed to load" in err and "hookspec 99.0" in err
    assert "plugin 'misspelt_hook' implements unknown hook(s): tda_adaptors (did you mean tda_adapters?)" in err
    assert "plugin 'raises_in_hook' raised in tda_credit_sinks: ValueError: no sinks today" in err
    assert "plugin 'bad_signature' failed to load: PluginValidationError" in err and "mood" in err
    assert "stable-audio" in adapters() and "ledger" in credit_sinks()


def test_autoload_off_skips_installed_packages_but_keeps_the_builtins(example_plugin: Path, monkeypatch) -> None:
    from tda_plugin import plugins

    monkeypatch.setenv("TDA_PLUGIN_DISABLE_AUTOLOAD", "1")
    plugins.get_plugin_manager.cache_clear()
    try:
        assert "tiny-conv" not in adapters() and set(credit_sinks()) == {"sidecar", "tags", "ledger"}
    finally:
        monkeypatch.delenv("TDA_PLUGIN_DISABLE_AUTOLOAD")
        plugins.get_plugin_manager.cache_clear()
    assert "tiny-conv" in adapters()
