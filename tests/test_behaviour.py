"""Behavioural checks on a briefly trained demo model (DESIGN.md, "Ground truth").

The model is the demo's (8 synthetic artists with distinct styles, stable-audio-tools' DiT), trained
for a fixed number of steps so the outcome does not depend on machine speed. The thresholds are
well above chance (1 in 72 segments, 1 in 24 tracks, 1 in 8 artists) and below the rates measured
here; the full-size measurement is bench/behaviour.py (rates in docs/method.md).
"""
from __future__ import annotations


import numpy as np
import pytest

from tda_plugin import Attributor, AttributeSettings
from tda_plugin.adapters.stable_audio import load
from tda_plugin.adapters.stable_audio_demo import train_demo_model
from tda_plugin.adapters.stable_audio_generation import generate_with_credits
from tda_plugin.catalog import read_catalog
from tda_plugin.demo.synth import synthesise_catalogue
from tda_plugin.evaluation import add_noise, generated_checks, segment_checks, spread_segments
from tda_plugin.index.builder import build_index
from tda_plugin.settings import IndexSettings

TRAIN_STEPS = 800
SETTINGS = AttributeSettings(candidates="all")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Attributor:
    root = tmp_path_factory.mktemp("behaviour")
    corpus = root / "catalogue"
    synthesise_catalogue(corpus, seed=0)
    ckpt, cfg = train_demo_model(read_catalog(corpus), root / "model", minutes=60, max_steps=TRAIN_STEPS, seed=0)
    adapter = load(ckpt, model_config=cfg)
    build_index(corpus, root / "index", adapter, checkpoint=ckpt, model_config=cfg, settings=IndexSettings())
    return Attributor.from_index(root / "index", adapter=adapter)


def test_segments_and_noisy_copies_find_their_source(trained: Attributor) -> None:
    ids = spread_segments(trained, 8)
    self_check, noisy = segment_checks(trained, ids, SETTINGS, {"self": None, "noise": add_noise})
    # measured here: self 7/8 at rank 1 (mean rank 1.4 of 72); noisy copy 6/8 (source track of 24 first)
    assert np.mean(self_check.ranks) <= 3.0
    assert self_check.hits >= 5
    assert noisy.hits >= 4


def test_generated_clips_credit_the_prompted_style(trained: Attributor) -> None:
    seg = trained.index.meta.segment_samples
    total = float(np.median([t.duration_s for t in trained.index.tracks.values()]))

    def generate(prompt: str, seed: int) -> np.ndarray:
        latents, _ = generate_with_credits(trained, settings=AttributeSettings(candidates=1), steps=30, cfg_scale=3.0,
                                           conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": total}],
                                           batch_size=1, sample_size=seg, seed=seed, device="cpu", return_latents=True)
        return trained.adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()

    styles = {t.caption: t.artist for t in trained.index.tracks.values()}
    outcome = generated_checks(trained, styles, generate, SETTINGS, seconds_total=total)
    # measured here: 3/8 (chance: 1/8); the 2-minute model's generations are noisy (docs/method.md)
    assert outcome.total == 8 and outcome.hits >= 3
