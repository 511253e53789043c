"""Typed errors: every failure a user can cause derives from :class:`TdaError`.

The CLI turns a ``TdaError`` into one line on stderr (no traceback unless ``TDA_DEBUG=1``), so the
message must say what is wrong and what to do, on its own.
"""
from __future__ import annotations


class TdaError(Exception):
    """Base class of errors caused by input, configuration or environment (not by bugs)."""


class MissingDependencyError(TdaError):
    """A toolkit or optional package needed for the requested work is not installed."""


def import_failure(exc: ImportError, toolkit: str, module: str, install: str) -> MissingDependencyError:
    """Name the real cause of an import failure: the toolkit itself missing, or something it imports.

    ``module`` is the toolkit's top-level module; ``install`` what to run when it is missing. A toolkit that
    is installed but fails to import (e.g. k-diffusion -> clip -> ``pkg_resources``, gone from setuptools 81)
    needs another remedy than installing it again.
    """
    missing = getattr(exc, "name", None) or ""
    if missing.split(".")[0] == module:
        return MissingDependencyError(f"{toolkit} is not installed ({install})")
    hint = "; pip install 'setuptools<81' (setuptools 81 removed pkg_resources)" if missing == "pkg_resources" else ""
    return MissingDependencyError(f"{toolkit} is installed but failed to import: {exc}{hint}")


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


class IndexBusyError(TdaError):
    """An index another process is building at the moment."""


class IndexDamagedError(TdaError):
    """An index file that is missing, truncated, unreadable or not the one the build recorded."""


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
