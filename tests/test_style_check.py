"""The independent style check: audio features and a nearest-neighbour vote, no model involved."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tda_plugin.catalog import read_catalog
from tda_plugin.demo.synth import STYLES, render_track, synthesise_catalogue
from tda_plugin.style_check import StyleClassifier, style_fit

SR, CROP = 8000, 16384


def test_new_tracks_of_a_style_are_placed_with_its_artist(tmp_path: Path) -> None:
    synthesise_catalogue(tmp_path, n_artists=3, tracks_per_artist=3, seconds=8.0, seed=0)
    tracks = read_catalog(tmp_path)
    classifier = StyleClassifier.from_tracks(tracks, SR, CROP)
    assert classifier.held_out_accuracy() >= 0.9  # crops placed with their artist, their own track left out
    # tracks the classifier never heard (other melodies of each style), and noise, which is no style
    clips = [(render_track(style, 9, 2.5, SR, seed=5), SR, style.artist) for style in STYLES[:3]]
    fit = style_fit(classifier, clips)
    assert (fit.hits, fit.total) == (3, 3)
    noise = np.random.default_rng(0).standard_normal(CROP).astype(np.float32) * 0.3
    assert style_fit(classifier, [(noise, SR, STYLES[0].artist)]).hits <= 1
    # a clip at another sample rate is conformed first
    hi = render_track(STYLES[1], 9, 2.5, 16000, seed=5)
    assert classifier.predict(hi, 16000) == STYLES[1].artist
