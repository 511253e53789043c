"""Loads fine but raises when asked for its sinks."""
from tda_plugin import hookimpl


@hookimpl
def tda_credit_sinks() -> list:
    raise ValueError("no sinks today")
