"""What plugins register: adapter, embedder and credit-sink specs, and lookup by name with clear errors."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np

import torch

from .errors import TdaError, UnknownPluginError
from .plugins import HOOK_ERRORS, get_plugin_manager

if TYPE_CHECKING:
    from .adapter import ModelAdapter
    from .catalog import Track
    from .sinks.base import SinkSpec

log = logging.getLogger(__name__)


class AdapterLoader(Protocol):
    def __call__(self, checkpoint: Path, *, model_config: Path | None, device: str) -> "ModelAdapter": ...


class TrainFn(Protocol):
    def __call__(self, tracks: list["Track"], out_dir: Path, *, seed: int, steps: int,
                 exclude: Mapping[Path, Sequence[tuple[float, float]]], init: Path | None = None) -> tuple[Path, Path]: ...


class GenerateFn(Protocol):
    def __call__(self, adapter: "ModelAdapter", prompt: str | None, *, seconds_total: float, samples: int,
                 seed: int) -> np.ndarray: ...


@dataclass(frozen=True)
class TrainingRecipe:
    """How a model family's small model is trained from scratch and sampled, for counterfactual evaluation.

    ``train`` returns (checkpoint, config) loadable by the adapter; it must be deterministic given the seed
    and step budget, never use audio inside an ``exclude``d (start_s, end_s) range of a track (keyed by its
    resolved path), and never train the model's audio representation inside it (the encoder is fixed, or
    trained once per catalogue before any model is and shared by all), so that retrained models score the
    same encoded query. With ``init`` (a checkpoint of the same config) it fine-tunes that model instead of
    starting from the seed's initialisation; recipes that cannot may leave the argument out, and are then
    only called without it. ``generate`` returns audio [channels, samples] for a prompt and seed.
    """

    train: TrainFn
    generate: GenerateFn


@dataclass(frozen=True)
class AdapterSpec:
    """A model adapter as a plugin offers it: a name, what it needs, and a lazy loader."""

    name: str
    description: str
    load: AdapterLoader
    #: pip requirement to print when the toolkit is missing
    requires: str = ""
    #: small-scale training recipe (``tda eval counterfactual``); None if the family has none
    recipe: TrainingRecipe | None = None


class EmbedFn(Protocol):
    def __call__(self, adapter: "ModelAdapter", encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class EmbedderSpec:
    """A prefilter embedder: ``embed`` returns [B, E] float32 vectors (normalised by the caller)."""

    name: str
    description: str
    embed: EmbedFn


@dataclass(frozen=True)
class Provided:
    """One spec together with the plugin that provides it (``tda plugins`` lists these)."""

    kind: str
    spec: Any
    plugin: str


def provided(hook: str, kind: str) -> list[Provided]:
    """Call each plugin's implementation of a discovery hook on its own, in registration order.

    One plugin that raises is recorded in :data:`tda_plugin.plugins.HOOK_ERRORS` and skipped; two
    plugins providing the same name are an error naming both.
    """
    out: dict[str, Provided] = {}
    for impl in getattr(get_plugin_manager().hook, hook).get_hookimpls():
        try:
            specs = impl.function() or []
        except Exception as exc:  # a broken plugin must not hide the others
            HOOK_ERRORS[(hook, impl.plugin_name)] = f"{type(exc).__name__}: {exc}"
            log.warning("tda plugin %r raised in %s and is skipped: %s", impl.plugin_name, hook, exc)
            continue
        for spec in specs:
            if spec.name in out:
                raise TdaError(f"two plugins provide the {kind} {spec.name!r} ({out[spec.name].plugin} and "
                               f"{impl.plugin_name}); uninstall or block one of them")
            out[spec.name] = Provided(kind, spec, impl.plugin_name)
    return list(out.values())


def adapters() -> dict[str, AdapterSpec]:
    return {p.spec.name: p.spec for p in provided("tda_adapters", "adapter")}


def embedders() -> dict[str, EmbedderSpec]:
    return {p.spec.name: p.spec for p in provided("tda_embedders", "embedder")}


def credit_sinks() -> "dict[str, SinkSpec]":
    return {p.spec.name: p.spec for p in provided("tda_credit_sinks", "credit sink")}


def _lookup(found: dict[str, Any], name: str, kind: str) -> Any:
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise UnknownPluginError(f"unknown {kind} {name!r} (available: {known})")
    return found[name]


def get_adapter_spec(name: str) -> AdapterSpec:
    return _lookup(adapters(), name, "adapter")


def get_embedder_spec(name: str) -> EmbedderSpec:
    return _lookup(embedders(), name, "embedder")


def get_sink_spec(name: str) -> "SinkSpec":
    return _lookup(credit_sinks(), name, "credit sink")


def load_adapter(name: str, checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> "ModelAdapter":
    return get_adapter_spec(name).load(Path(checkpoint), model_config=model_config, device=device)

