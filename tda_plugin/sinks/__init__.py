"""Credit sinks: where the credits of an attributed clip go (sidecar JSON, audio tags, a ledger, plugins)."""
from .base import Receipt, SinkOptions, SinkSpec
from .run import DEFAULT_SINKS, check_sinks, write_credits

__all__ = ["Receipt", "SinkOptions", "SinkSpec", "DEFAULT_SINKS", "check_sinks", "write_credits"]
