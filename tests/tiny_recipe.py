"""The demo's training recipe at test scale, as an adapter plugin ``stable-audio-tiny``.

The retraining experiments (counterfactual, LDS) take the recipe of a registered adapter; this one trains the
tests' tiny DiT (the demo architecture, ``conftest.tiny_config``) with batches of two crops and samples with
three diffusion steps, so a whole experiment runs in seconds. Every training is recorded, so a test can check
that a rerun reuses the cached models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytest

from tda_plugin import hookimpl, plugins
from tda_plugin.catalog import Track
from tda_plugin.registry import AdapterSpec, TrainingRecipe

from .conftest import tiny_config

NAME = "stable-audio-tiny"


class TinyRecipe:
    def __init__(self) -> None:
        self.trained: list[dict[str, Any]] = []

    def train(self, tracks: list[Track], out_dir: Path, *, seed: int, steps: int,
              exclude: Mapping[Path, Sequence[tuple[float, float]]], init: Path | None = None) -> tuple[Path, Path]:
        from tda_plugin.adapters.stable_audio_demo import train_demo_model

        self.trained.append({"out": out_dir, "seed": seed, "steps": steps, "exclude": dict(exclude), "init": init})
        return train_demo_model(tracks, out_dir, steps=steps, seed=seed, exclude=exclude,
                                config=tiny_config(sorted({t.caption or "" for t in tracks})), batch=2, init=init)

    def generate(self, adapter: Any, prompt: str | None, *, seconds_total: float, samples: int, seed: int) -> np.ndarray:
        from tda_plugin.adapters.stable_audio_demo import generate_clip

        return generate_clip(adapter, prompt, seconds_total=seconds_total, samples=samples, seed=seed, steps=3)

    @hookimpl
    def tda_adapters(self) -> list[AdapterSpec]:
        from tda_plugin.adapters.stable_audio import load

        return [AdapterSpec(NAME, "the demo recipe on the tests' tiny DiT", load, "", TrainingRecipe(self.train, self.generate))]


@pytest.fixture()
def tiny_recipe() -> Iterator[TinyRecipe]:
    """Register ``stable-audio-tiny`` for one test; yields the recipe (``.trained`` lists its trainings)."""
    recipe = TinyRecipe()
    pm = plugins.get_plugin_manager()
    pm.register(recipe, name="tiny_recipe")
    try:
        yield recipe
    finally:
        pm.unregister(recipe)
