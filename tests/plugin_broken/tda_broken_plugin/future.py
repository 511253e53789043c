"""Written for a hookspec major version this tda-plugin does not have."""
from tda_plugin import hookimpl

TDA_HOOKSPEC = "99.0"


@hookimpl
def tda_embedders() -> list:
    return []
