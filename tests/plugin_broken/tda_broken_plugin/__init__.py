"""Plugins that fail in every way tda-plugin must report (tests/test_plugin_packages.py)."""
