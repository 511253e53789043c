"""What plugins register: adapter and embedder specs, and lookup by name with clear errors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np

import torch

from .errors import TdaError, UnknownPluginError

if TYPE_CHECKING:
    from .adapter import ModelAdapter
    from .catalog import Track


class AdapterLoader(Protocol):
    def __call__(self, checkpoint: Path, *, model_config: Path | None, device: str) -> "ModelAdapter": ...


class TrainFn(Protocol):
    def __call__(self, tracks: list["Track"], out_dir: Path, *, seed: int, steps: int,
                 exclude: Mapping[Path, Sequence[tuple[float, float]]]) -> tuple[Path, Path]: ...


class GenerateFn(Protocol):
    def __call__(self, adapter: "ModelAdapter", prompt: str | None, *, seconds_total: float, samples: int,
                 seed: int) -> np.ndarray: ...


@dataclass(frozen=True)
class TrainingRecipe:
    """How a model family's small model is trained from scratch and sampled, for counterfactual evaluation.

    ``train`` returns (checkpoint, config) loadable by the adapter; it must be deterministic given the seed
    and step budget, never use audio inside an ``exclude``d (start_s, end_s) range of a track (keyed by its
    resolved path), and leave the model's audio representation (encoder) untrained, so that retrained models
    score the same encoded query. ``generate`` returns audio [channels, samples] for a prompt and seed.
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


def _collect(results: list[list[Any]], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for specs in results:
        for spec in specs or []:
            if spec.name in out:
                raise TdaError(f"two plugins provide the {kind} {spec.name!r}; uninstall one of them")
            out[spec.name] = spec
    return out


def adapters() -> dict[str, AdapterSpec]:
    from .plugins import get_plugin_manager

    return _collect(get_plugin_manager().hook.tda_adapters(), "adapter")


def embedders() -> dict[str, EmbedderSpec]:
    from .plugins import get_plugin_manager

    return _collect(get_plugin_manager().hook.tda_embedders(), "embedder")


def _lookup(found: dict[str, Any], name: str, kind: str) -> Any:
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise UnknownPluginError(f"unknown {kind} {name!r} (available: {known})")
    return found[name]


def get_adapter_spec(name: str) -> AdapterSpec:
    return _lookup(adapters(), name, "adapter")


def get_embedder_spec(name: str) -> EmbedderSpec:
    return _lookup(embedders(), name, "embedder")


def load_adapter(name: str, checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> "ModelAdapter":
    return get_adapter_spec(name).load(Path(checkpoint), model_config=model_config, device=device)

