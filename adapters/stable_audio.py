"""The stable-audio-tools plugin: the `diffusion_cond` adapter (:mod:`.stable_audio_adapter`) with the demo's
training recipe (:mod:`.stable_audio_demo`), offered through the ``tda_adapters`` hook.

This module is the entry point (``tda_plugin.adapters.stable_audio``) and imports the others; none of them
imports it, so the recipe, which trains the adapter's models, can sit beside the adapter it is offered with.
"""
from __future__ import annotations

from pathlib import Path

from tda_plugin.hookspecs import hookimpl
from tda_plugin.registry import AdapterSpec

from .stable_audio_adapter import NAME, REQUIREMENT, StableAudioAdapter
from .stable_audio_demo import RECIPE


def load(checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> StableAudioAdapter:
    return StableAudioAdapter.load(checkpoint, model_config=model_config, device=device)


@hookimpl
def tda_adapters() -> list[AdapterSpec]:
    return [AdapterSpec(NAME, "stable-audio-tools diffusion_cond models (v / rectified flow)", load, REQUIREMENT, RECIPE)]
