"""Credits inside audio files: tagging never changes the audio, reads back exactly, and falls back to the sidecar."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.sink_result import result_doc
from tda_plugin.sinks import SinkOptions, write_credits
from tda_plugin.sinks.read import read_credits
from tda_plugin.sinks.sidecar import sidecar_path
from tda_plugin.sinks.tags import TEXT_TAG, audio_format

FORMATS = [("clip.wav", "WAV", "PCM_16", 8000), ("clip.flac", "FLAC", "PCM_24", 8000), ("clip.ogg", "OGG", "VORBIS", 8000),
           ("clip.opus", "OGG", "OPUS", 48000), ("clip.mp3", "MP3", "MPEG_LAYER_III", 8000)]


def _write(path: Path, fmt: str, subtype: str, rate: int) -> np.ndarray:
    t = np.arange(rate) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 495 * t)], axis=1).astype(np.float32)
    sf.write(str(path), audio, rate, format=fmt, subtype=subtype)
    decoded, _ = sf.read(str(path), dtype="float32")
    return decoded


def _readable_tag(path: Path) -> str:
    import mutagen

    tags = mutagen.File(str(path)).tags
    if hasattr(tags, "getall"):  # ID3 (WAV, MP3)
        return tags.getall("COMM:credits:eng")[0].text[0]
    return tags[TEXT_TAG][0]


@pytest.mark.parametrize("name,fmt,subtype,rate", FORMATS, ids=[f[0] for f in FORMATS])
def test_tags_keep_the_audio_and_read_back(tmp_path: Path, name: str, fmt: str, subtype: str, rate: int) -> None:
    path = tmp_path / name
    before = _write(path, fmt, subtype, rate)
    doc = result_doc(path=str(path))
    (receipt,) = write_credits(doc, path, ["tags"], SinkOptions(tag_top=2))
    assert receipt.location == str(path) and receipt.note is None
    after, _ = sf.read(str(path), dtype="float32")
    assert np.array_equal(before, after)  # only metadata changed
    found, where = read_credits(path)
    assert found == doc and where == f"tags of {path}"
    assert _readable_tag(path) == "1. Ärtist 0 - Track 0 (CC-BY-4.0) 50.0%\n2. Artist 1 - Track 1 (CC-BY-4.0) 30.0%"
    assert not sidecar_path(path).exists()

    again = result_doc(prompt="second", path=str(path))  # re-attributing replaces the tags, never duplicates them
    write_credits(again, path, ["tags"])
    assert read_credits(path)[0]["query"]["prompt"] == "second"
    assert np.array_equal(before, sf.read(str(path), dtype="float32")[0])


def test_format_without_tags_falls_back_to_the_sidecar_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "clip.au"
    before = _write(path, "AU", "PCM_16", 8000)
    raw = path.read_bytes()
    doc = result_doc(path=str(path))
    with caplog.at_level(logging.WARNING):
        (receipt,) = write_credits(doc, path, ["tags"])
    assert audio_format(path) == "AU" and path.read_bytes() == raw
    assert receipt.location == str(sidecar_path(path)) and "cannot carry credit tags" in receipt.note
    assert "cannot carry credit tags" in caplog.text
    assert read_credits(path) == (doc, str(sidecar_path(path)))
    assert np.array_equal(before, sf.read(str(path), dtype="float32")[0])


def test_sidecar_is_the_default_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    _write(path, "WAV", "PCM_16", 8000)
    doc = result_doc(path=str(path))
    (receipt,) = write_credits(doc, path)
    assert receipt.sink == "sidecar" and receipt.location == str(tmp_path / "clip.wav.credits.json")
    assert json.loads((tmp_path / "clip.wav.credits.json").read_text()) == doc
    assert read_credits(path) == (doc, str(tmp_path / "clip.wav.credits.json"))
