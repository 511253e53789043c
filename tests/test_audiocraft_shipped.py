"""The shipped audiocraft demo model (adapters/audiocraft_demo_model/, `make demo-model-audiocraft`).

It loads through audiocraft's own loaders, its EnCodec uses its codebooks on the catalogue it was trained on
(the 200-step EnCodec it replaces used 15 of codebook 0's 64 codes on this catalogue), and `tda demo
--adapter audiocraft` takes it, instead of training, exactly when the catalogue, the seed and the recipe
are the ones it was trained with.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from tda_plugin.adapters import audiocraft_demo
from tda_plugin.adapters.audiocraft_toolkit import COMPRESSION_FILE, LM_FILE, quiet, toolkit
from tda_plugin.catalog import Track, read_catalog
from tda_plugin.demo import pipeline
from tda_plugin.demo.synth import synthesise_catalogue
from tda_plugin.settings import AttributeSettings

#: codes each codebook uses on the catalogue (of 64); measured in docs/audiocraft.md, "The demo"
MIN_CODES = 48


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    corpus = tmp_path_factory.mktemp("catalogue")
    synthesise_catalogue(corpus, seed=0)
    return read_catalog(corpus)


def test_the_shipped_model_is_small_and_loads_with_audiocrafts_loaders(tracks: list[Track]) -> None:
    files = [audiocraft_demo.SHIPPED / name for name in (LM_FILE, COMPRESSION_FILE, "TRAINING.md")]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in files) < 10 * 2**20
    ac = toolkit()
    with quiet():
        compression = ac.loaders.load_compression_model(audiocraft_demo.SHIPPED)
        lm = ac.loaders.load_lm_model(audiocraft_demo.SHIPPED)
    assert compression.frame_rate == 50 and compression.num_codebooks == lm.num_codebooks == 4
    audio = [a for _, a, _ in audiocraft_demo._load_tracks(tracks, compression.sample_rate, 16000)]
    used = audiocraft_demo.codes_used(compression, audio)
    assert min(used) >= MIN_CODES, used


def test_the_shipped_model_matches_only_its_own_catalogue_seed_and_recipe(tracks: list[Track], tmp_path: Path) -> None:
    assert audiocraft_demo.shipped_model(tracks, seed=0) == audiocraft_demo.SHIPPED
    assert audiocraft_demo.shipped_model(tracks, seed=1) is None
    assert audiocraft_demo.shipped_model(tracks, seed=0, recipe=audiocraft_demo.with_steps(audiocraft_demo.RECIPE, 2, 3)) is None
    other = tmp_path / "other"
    synthesise_catalogue(other, seed=1)
    assert audiocraft_demo.shipped_model(read_catalog(other), seed=0) is None


def test_the_demo_takes_the_shipped_model_instead_of_training(tracks: list[Track], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo trained although the shipped model fits its catalogue")

    monkeypatch.setattr(audiocraft_demo, "train_demo_model", no_training)
    demo = pipeline._audiocraft(tracks, tmp_path / "model", train=False, seed=0, device="cpu", steps=1,
                                settings=AttributeSettings())
    for name in (LM_FILE, COMPRESSION_FILE):
        assert (tmp_path / "model" / name).read_bytes() == (audiocraft_demo.SHIPPED / name).read_bytes()
    assert demo.checkpoint == tmp_path / "model"
