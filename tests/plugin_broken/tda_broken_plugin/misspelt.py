"""Implements a hook name that is not a hookspec (a typo of tda_adapters)."""
from tda_plugin import hookimpl


@hookimpl
def tda_adaptors() -> list:
    return []
