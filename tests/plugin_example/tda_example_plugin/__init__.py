"""An example third-party plugin package for tda-plugin (docs/plugins.md walks through it)."""
