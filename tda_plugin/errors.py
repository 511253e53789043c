"""Typed errors: every failure a user can cause derives from :class:`TdaError`.

The CLI turns a ``TdaError`` into one line on stderr (no traceback unless ``TDA_DEBUG=1``), so the
message must say what is wrong and what to do, on its own.
"""
from __future__ import annotations


class TdaError(Exception):
    """Base class of errors caused by input, configuration or environment (not by bugs)."""


class MissingDependencyError(TdaError):
    """A toolkit or optional package needed for the requested work is not installed."""


class AudioError(TdaError):
    """Audio that cannot be decoded, is empty, or is too short to score."""


class CatalogError(TdaError):
    """A catalogue (tracks.csv) that is missing, empty or malformed."""


class CheckpointError(TdaError):
    """A checkpoint that cannot be read or does not match its model config."""


class IndexMismatchError(TdaError):
    """An index built for another model or with other settings than those in use."""


class IndexIncompleteError(TdaError):
    """An index whose build has not finished (rerun the build command to resume it)."""


class UnknownPluginError(TdaError):
    """An adapter, embedder or credit sink name that no installed plugin provides."""


class AttributionRefused(TdaError):
    """A plugin's ``tda_before_attribution`` hook refused to attribute a query."""


class ReleaseVetoed(TdaError):
    """A plugin's ``tda_after_attribution`` hook vetoed releasing a generated clip (e.g. a memorisation guard).

    ``clips`` holds every credited clip of the call (vetoed ones have non-empty ``vetoes``), so a
    caller can still read the credits of what was refused.
    """

    def __init__(self, message: str, clips: list) -> None:
        super().__init__(message)
        self.clips = clips
