"""Tests for the synthetic demo catalogue: reproducible, clean, and with styles that really differ."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tda_plugin.demo.synth import STYLES, Style, render_track, synthesise_catalogue

SR = 8000


def _power_frames(x: np.ndarray, n: int = 512, hop: int = 128) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(0, len(x) - n, hop)[:, None] + np.arange(n)
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n), axis=1)) ** 2
    return spec, np.fft.rfftfreq(n, 1 / SR)


def _log_centroid(x: np.ndarray) -> float:
    spec, freqs = _power_frames(x)
    return float(np.log2(np.median((spec * freqs).sum(1) / (spec.sum(1) + 1e-12))))


def _descriptor(x: np.ndarray) -> np.ndarray:
    """Register/timbre (octave-band profile), rhythm (onset autocorrelation) and key (chroma) of a track."""
    spec, freqs = _power_frames(x)
    edges = np.geomspace(60, SR / 2, 9)
    band_power = [spec[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in zip(edges[:-1], edges[1:])]
    bands = np.log10(np.stack(band_power, 1) + 1e-6)
    onset = np.maximum(np.diff(bands, axis=0), 0).sum(1)
    onset -= onset.mean()
    autocorr = np.correlate(onset, onset, "full")[len(onset) - 1 :][:120]
    keep = freqs >= 60
    pitch_class = np.round(12 * np.log2(freqs[keep] / 440)).astype(int) % 12
    chroma = np.bincount(pitch_class, weights=spec.mean(0)[keep], minlength=12)
    profile = bands.mean(0)
    # Weights put the three parts on comparable scales.
    return np.concatenate(
        [(profile - profile.max()) / 2, autocorr[1:] / autocorr[0] / 2, 2 * np.sqrt(chroma / chroma.sum())]
    )


def _longest_quiet_run(x: np.ndarray, threshold: float, win: int = 400, hop: int = 80) -> float:
    rms = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(win) / win, "valid"))[::hop]
    longest = run = 0
    for quiet in rms < threshold:
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return longest * hop / SR


def test_styles_are_well_formed() -> None:
    assert len(STYLES) >= 8
    for field in ("name", "artist", "prompt"):
        assert len({getattr(s, field) for s in STYLES}) == len(STYLES), f"duplicate {field}"
    for style in STYLES:
        assert f"{style.bpm:g} bpm" in style.prompt  # the caption must tell the truth about the tempo


def test_render_is_deterministic_and_seeded() -> None:
    style = STYLES[0]
    a = render_track(style, 1, 2.0, SR, seed=7)
    assert np.array_equal(a, render_track(style, 1, 2.0, SR, seed=7))
    assert not np.allclose(a, render_track(style, 1, 2.0, SR, seed=8))


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.name)
def test_render_shape_level_and_no_long_silence(style: Style) -> None:
    x = render_track(style, 0, 8.0, SR, seed=0)
    assert x.dtype == np.float32 and x.shape == (8 * SR,)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) == pytest.approx(0.8, abs=1e-6)
    assert _longest_quiet_run(x, threshold=0.01 * 0.8) <= 0.3  # -40 dB below the peak counts as silence


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.name)
def test_tracks_of_a_style_differ(style: Style) -> None:
    tracks = [render_track(style, k, 8.0, SR, seed=0) for k in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.corrcoef(tracks[i], tracks[j])[0, 1] < 0.9


def test_styles_are_more_distinct_than_tracks_within_a_style() -> None:
    tracks = {s.name: [render_track(s, k, 8.0, SR, seed=0) for k in range(3)] for s in STYLES}

    # Brightness alone: the spread of style means dwarfs the spread inside a style (an F ratio).
    centroids = np.array([[_log_centroid(x) for x in xs] for xs in tracks.values()])
    assert centroids.mean(1).var() / centroids.var(1).mean() > 20

    # Leave-one-out nearest style centroid on the full descriptor recovers every track's artist.
    feats = np.array([[_descriptor(x) for x in xs] for xs in tracks.values()])
    n_styles, n_tracks, _ = feats.shape
    for s in range(n_styles):
        for k in range(n_tracks):
            others = np.delete(feats[s], k, axis=0).mean(0)
            centres = [others if t == s else feats[t].mean(0) for t in range(n_styles)]
            nearest = int(np.argmin([np.linalg.norm(feats[s, k] - c) for c in centres]))
            assert nearest == s, f"{STYLES[s].name} track {k} looks like {STYLES[nearest].name}"


@pytest.mark.parametrize("style", [s for s in STYLES if not s.percussion], ids=lambda s: s.name)
def test_no_aliasing(style: Style) -> None:
    """8 kHz rendering matches 32 kHz rendering band-limited to 4 kHz: no partial folded back below Nyquist."""
    low = render_track(style, 0, 3.0, SR, seed=0).astype(np.float64)
    high = resample_poly(render_track(style, 0, 3.0, 4 * SR, seed=0).astype(np.float64), 1, 4)
    assert np.corrcoef(low, high)[0, 1] > 0.97


def test_catalogue_files_and_credits(tmp_path: Path) -> None:
    csv_path = synthesise_catalogue(
        tmp_path, n_artists=3, tracks_per_artist=2, seconds=1.5, sample_rate=SR, seed=3
    )
    assert csv_path == tmp_path / "tracks.csv"
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["path", "title", "artist", "license", "caption"]
        rows = list(reader)
    assert len(rows) == 6
    expected = [(s, k) for s in STYLES[:3] for k in range(2)]
    for row, (style, k) in zip(rows, expected):
        assert row["path"] == f"audio/{style.name}_{k}.wav"
        assert row["title"] == f"{style.artist} – Study No. {k + 1}"
        assert row["artist"] == style.artist
        assert row["license"] == "CC-BY-4.0"
        assert row["caption"] == style.prompt
        info = sf.info(str(tmp_path / row["path"]))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (SR, int(1.5 * SR), 1, "PCM_16")
        audio, _ = sf.read(str(tmp_path / row["path"]), dtype="float32")
        assert np.allclose(audio, render_track(style, k, 1.5, SR, seed=3), atol=1 / 2**14)


def test_default_catalogue(tmp_path: Path) -> None:
    csv_path = synthesise_catalogue(tmp_path)
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    assert len({r["artist"] for r in rows}) == 8
    assert len(list((tmp_path / "audio").glob("*.wav"))) == 24


@pytest.mark.parametrize("n_artists", [0, len(STYLES) + 1])
def test_bad_artist_count(tmp_path: Path, n_artists: int) -> None:
    with pytest.raises(ValueError):
        synthesise_catalogue(tmp_path, n_artists=n_artists)
