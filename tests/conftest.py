"""Shared fixtures: small real-architecture stable-audio-tools models and tiny catalogues.

Everything is built from random weights or trained briefly here; nothing is downloaded. The model config, the
catalogue writer and the random-weight checkpoint come from bench/tiny_project.py, which the reliability benches
build their project with too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.tiny_project import SEGMENT, SR, random_model, tiny_config, write_catalogue

os.environ.setdefault("TDA_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# one thread per pytest-xdist worker (the workers already share the cores), at most two otherwise
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``toolkit_env`` tests build a toolkit environment from PyPI (minutes, gigabytes): only with ``-m toolkit_env``."""
    if "toolkit_env" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="builds a toolkit environment from PyPI; run with -m toolkit_env (README: Install)")
    for item in items:
        if "toolkit_env" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, model_config) of a random-weight tiny DiT of stable-audio-tools' architecture."""
    return random_model(tiny_config(["low hum", "high beep"]), tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="session")
def tiny_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("catalogue"))


def build_tiny(catalogue: Path, out: Path, tiny_model: tuple[Path, Path], settings: Any) -> Path:
    """``catalogue`` indexed into ``out`` with the tiny model (a fixture's shared index)."""
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index.builder import build_index

    ckpt, cfg = tiny_model
    build_index(catalogue, out, load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=settings)
    return out


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> Path:
    from tda_plugin.settings import IndexSettings

    return build_tiny(tiny_catalogue, tmp_path_factory.mktemp("index") / "idx", tiny_model,
                      IndexSettings(draws=4, fisher_segments=6, shard_size=4))


@pytest.fixture(scope="session")
def attributed_clips(tmp_path_factory: pytest.TempPathFactory, tiny_index: Path, tiny_catalogue: Path) -> list[Path]:
    """Four clips shaped like the demo's (a catalogue track plus noise, with its prompt), attributed on the tiny
    index, credits in their sidecars: what `tda report` and the demo's report read."""
    from tda_plugin.attributor import Attributor
    from tda_plugin.settings import AttributeSettings, UnlearnSettings
    from tda_plugin.sinks import write_credits

    att = Attributor.from_index(tiny_index)
    settings = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), candidates="all", top=10)
    folder = tmp_path_factory.mktemp("attributed") / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for k, prompt in enumerate(("low hum", "high beep", "low hum", "high beep")):
        track, _ = sf.read(str(tiny_catalogue / "audio" / f"t{k}.wav"), dtype="float32")
        clip = track[:2 * SEGMENT] + 0.05 * rng.standard_normal(2 * SEGMENT).astype(np.float32)
        path = folder / f"clip_{k:02d}.wav"
        sf.write(str(path), clip, SR, subtype="PCM_16")
        write_credits(att.attribute_file(path, prompt=prompt, settings=settings).to_dict(), path)
        paths.append(path)
    return paths
