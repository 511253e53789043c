"""Bad audio never yields silent garbage: refused with one clear line, or attributed with a warning that says
what was done (tda_plugin/audio.py). No model needed except for the last test."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tda_plugin import audio as audio_io
from tda_plugin.errors import AudioError

SR = 8000


def tone(seconds: float = 1.0, amplitude: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.repeat((amplitude * np.sin(2 * np.pi * 440 * t))[None], channels, axis=0).astype(np.float32)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(tmp_path: Path, bad: float) -> None:
    audio = tone()
    audio[0, 1234] = bad
    with pytest.raises(AudioError) as exc:
        audio_io.check_levels(audio, "clip.wav")
    assert "NaN or infinite" in one_line(exc) and "sample 1234" in str(exc.value)
    sf.write(tmp_path / "nan.wav", audio.T, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        audio_io.load(tmp_path / "nan.wav")


def test_far_above_full_scale_is_refused_and_slightly_above_is_reported() -> None:
    with pytest.raises(AudioError) as exc:
        audio_io.check_levels(tone() * 1e6, "loud.wav")
    assert "far above full scale" in one_line(exc) and "+114 dBFS" in str(exc.value)
    assert audio_io.check_levels(tone(amplitude=1.5), "hot.wav") == ["peaks at +3.5 dBFS, above full scale; attributed as is"]
    assert audio_io.check_levels(tone(amplitude=0.99), "ok.wav") == []


def test_silence_and_dc_are_refused_and_an_offset_is_reported() -> None:
    with pytest.raises(AudioError, match="silent"):
        audio_io.check_levels(np.zeros((2, SR), np.float32), "zeros.wav")
    with pytest.raises(AudioError, match="constant"):
        audio_io.check_levels(np.full((1, SR), 0.25, np.float32), "dc.wav")
    dc_with_dither = np.full((1, SR), 0.25, np.float32) + np.float32(1e-5) * np.sign(np.sin(np.arange(SR)))[None]
    with pytest.raises(AudioError, match="constant"):
        audio_io.check_levels(dc_with_dither.astype(np.float32), "dc2.wav")
    assert audio_io.check_levels(tone(amplitude=0.3) + 0.4, "offset.wav") == ["has a DC offset of 0.40; attributed as is"]


def test_directory_missing_and_implausible_headers(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        audio_io.probe(tmp_path)
    with pytest.raises(AudioError, match="no such audio file"):
        audio_io.probe(tmp_path / "nope.wav")
    path = tmp_path / "rate.wav"
    sf.write(path, tone().T, SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 3)  # sample rate field of the fmt chunk: 3 Hz
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="sample rate of 3 Hz"):
        audio_io.load(path)


def test_a_header_declaring_hours_in_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tone().T, SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = struct.pack("<I", 0xFFFFFFF0)  # data chunk size: about 74 h at 8 kHz mono 16 bit
    path.write_bytes(bytes(data))
    try:
        data, rate = audio_io.load(path)  # libsndfile may clamp the length to the file: then it is the real audio
        assert data.shape == (1, SR) and rate == SR
    except AudioError as exc:  # or believe the header: then it is refused before anything is allocated
        assert "h of audio" in str(exc)


def test_conform_says_what_it_did() -> None:
    stereo = tone(channels=2)
    mono, changes = audio_io.conform(stereo, 16000, SR, 1)
    assert mono.shape == (1, SR // 2) and changes == ["2 -> 1 channels (averaged)", "resampled 16000 -> 8000 Hz"]
    same, none = audio_io.conform(tone(), SR, SR, 1)
    assert none == [] and np.array_equal(same, tone())


def test_query_conformed_and_warnings_are_in_the_result(tiny_index: Path) -> None:
    from tda_plugin import AttributeSettings, Attributor, UnlearnSettings

    att = Attributor.from_index(tiny_index)
    settings = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), top=2, candidates="all")
    hot = tone(seconds=1.2, amplitude=1.2, channels=2)
    result = att.attribute(hot, 16000, prompt="low hum", settings=settings).to_dict()
    assert result["query"]["conformed"] == {"sample_rate": 16000, "channels": 2,
                                            "changes": ["2 -> 1 channels (averaged)", "resampled 16000 -> 8000 Hz"]}
    assert result["query"]["warnings"] == ["peaks at +1.6 dBFS, above full scale; attributed as is"]
    with pytest.raises(AudioError, match="far above full scale"):
        att.attribute(hot * 1e6, 16000, prompt="low hum", settings=settings)
