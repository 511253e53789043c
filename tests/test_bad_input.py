"""Every bad input of the foundation issue gets a clear one-line error, and nothing is lost."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from tda_plugin import Attributor, AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.adapters.stable_audio import load
from tda_plugin.catalog import read_catalog
from tda_plugin.errors import (AudioError, CatalogError, CheckpointError, IndexMismatchError, TdaError,
                               UnknownPluginError)
from tda_plugin.index.builder import build_index
from tda_plugin.registry import load_adapter

from .conftest import SEGMENT, SR, random_model, tiny_config, write_catalogue

QUICK = IndexSettings(draws=2, fisher_segments=3, shard_size=4)
FAST = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), candidates="all")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_corrupt_and_missing_files_are_skipped_and_reported(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    cat = write_catalogue(tmp_path / "cat")
    (cat / "audio" / "t2.wav").write_bytes(b"RIFF....not audio at all")
    (cat / "audio" / "t3.wav").unlink()
    ckpt, cfg = tiny_model
    report = build_index(cat, tmp_path / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=QUICK)
    failed = dict(report.failures)
    assert set(failed) == {"audio/t2.wav", "audio/t3.wav"}
    assert "cannot decode" in failed["audio/t2.wav"] and "no such audio file" in failed["audio/t3.wav"]
    assert report.tracks == 2


def test_track_shorter_than_a_segment_is_skipped(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    cat = write_catalogue(tmp_path / "cat")
    sf.write(cat / "audio" / "t0.wav", np.zeros(SEGMENT // 2, dtype=np.float32) + 0.1, SR)
    ckpt, cfg = tiny_model
    report = build_index(cat, tmp_path / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=QUICK)
    assert "shorter than one" in dict(report.failures)["audio/t0.wav"]


def test_query_shorter_than_a_segment(tiny_index: Path) -> None:
    with pytest.raises(AudioError) as exc:
        short = 0.1 * np.sin(np.arange(SEGMENT // 3, dtype=np.float32))  # a tone: a constant would be refused as DC
        Attributor.from_index(tiny_index).attribute(short, SR, settings=FAST)
    assert "shorter than one" in _one_line(exc)


def test_silent_query(tiny_index: Path) -> None:
    with pytest.raises(AudioError) as exc:
        Attributor.from_index(tiny_index).attribute(np.zeros(SEGMENT, dtype=np.float32), SR, settings=FAST)
    assert "silent" in _one_line(exc)


def test_other_rate_and_channels_are_conformed_and_said_once(tiny_index: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = np.arange(int(SEGMENT * 2)) / (SR * 2)
    stereo_16k = np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 440 * t)]).astype(np.float32) * 0.4
    with caplog.at_level(logging.WARNING):
        result = Attributor.from_index(tiny_index).attribute(stereo_16k, 2 * SR, settings=FAST)
    said = [r.getMessage() for r in caplog.records if "resampled" in r.getMessage()]
    assert len(said) == 1 and "2 -> 1 channels" in said[0] and f"{2 * SR} -> {SR} Hz" in said[0]
    assert result.query["duration_s"] == pytest.approx(SEGMENT / SR, rel=1e-3)


def test_checkpoint_that_does_not_match_its_config(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    ckpt, cfg = tiny_model
    state = load_file(str(ckpt))
    name = next(k for k in state if "transformer.layers.0" in k)
    state[name] = torch.zeros(3, 3)
    bad = tmp_path / "model.safetensors"
    save_file(state, str(bad))
    with pytest.raises(CheckpointError) as exc:
        load(bad, model_config=cfg)
    assert "does not match its model config" in _one_line(exc) and name in str(exc.value)
    other = tiny_config(["x"])
    other["model"]["diffusion"]["config"]["depth"] = 3
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(CheckpointError) as exc:
        load(ckpt, model_config=tmp_path / "other.json")
    assert "missing" in _one_line(exc)


def test_unreadable_checkpoint_and_config(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError) as exc:
        load(tmp_path / "junk.safetensors", model_config=tiny_model[1])
    _one_line(exc)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        load(tiny_model[0], model_config=tmp_path / "cfg.json")


def test_index_built_for_another_model_is_refused(tmp_path: Path, tiny_index: Path) -> None:
    ckpt, cfg = random_model(tiny_config(["low hum", "high beep"]), tmp_path / "other", seed=1)
    with pytest.raises(IndexMismatchError) as exc:
        Attributor(Attributor.from_index(tiny_index).index, load(ckpt, model_config=cfg))
    assert "another model" in _one_line(exc)


def test_index_moved_checkpoint_edited_is_refused(tmp_path: Path, tiny_index: Path, tiny_model: tuple[Path, Path]) -> None:
    """The fingerprint covers the checkpoint bytes: an index refuses a retrained checkpoint at the same path."""
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model[0].parent, model_dir)
    idx = tmp_path / "idx"
    shutil.copytree(tiny_index, idx)
    meta = json.loads((idx / "index.json").read_text())
    meta["checkpoint"] = str(model_dir / "model.safetensors")
    (idx / "index.json").write_text(json.dumps(meta))
    state = load_file(str(model_dir / "model.safetensors"))
    first = next(iter(state))
    state[first] = state[first] + 1
    save_file(state, str(model_dir / "model.safetensors"))
    with pytest.raises(IndexMismatchError):
        Attributor.from_index(idx)


def test_rebuild_with_other_settings_is_refused_without_overwrite(tmp_path: Path, tiny_model: tuple[Path, Path],
                                                                    tiny_catalogue: Path) -> None:
    ckpt, cfg = tiny_model
    adapter = load(ckpt, model_config=cfg)
    build_index(tiny_catalogue, tmp_path / "idx", adapter, checkpoint=ckpt, model_config=cfg, settings=QUICK)
    other = IndexSettings(draws=3, fisher_segments=3, shard_size=4)
    with pytest.raises(IndexMismatchError) as exc:
        build_index(tiny_catalogue, tmp_path / "idx", adapter, checkpoint=ckpt, model_config=cfg, settings=other)
    assert "settings" in _one_line(exc)
    build_index(tiny_catalogue, tmp_path / "idx", adapter, checkpoint=ckpt, model_config=cfg, settings=other, overwrite=True)


def test_unknown_adapter_and_embedder(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> None:
    with pytest.raises(UnknownPluginError) as exc:
        load_adapter("no-such-toolkit", tiny_model[0])
    assert "stable-audio" in _one_line(exc)
    ckpt, cfg = tiny_model
    with pytest.raises(UnknownPluginError):
        build_index(tiny_catalogue, tmp_path / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg,
                    settings=IndexSettings(embedder="nope"))


def test_empty_catalogue_and_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "tracks.csv").write_text("path,title,artist,license\n")
    with pytest.raises(CatalogError) as exc:
        read_catalog(tmp_path / "empty")
    assert "empty" in _one_line(exc)
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "tracks.csv").write_text("path,title\na.wav,A\n")
    with pytest.raises(CatalogError) as exc:
        read_catalog(tmp_path / "cols")
    assert "artist" in _one_line(exc) and "license" in str(exc.value)
    with pytest.raises(CatalogError):
        read_catalog(tmp_path / "nowhere")


def test_catalogue_where_nothing_decodes(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    cat = write_catalogue(tmp_path / "cat", n_tracks=1)
    (cat / "audio" / "t0.wav").write_bytes(b"junk")
    ckpt, cfg = tiny_model
    with pytest.raises(CatalogError) as exc:
        build_index(cat, tmp_path / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=QUICK)
    _one_line(exc)


def test_unknown_subset_and_invalid_settings(tiny_index: Path) -> None:
    with pytest.raises(TdaError):
        UnlearnSettings(subset="everything")
    with pytest.raises(TdaError):
        UnlearnSettings(mode="newton", steps=3)
    with pytest.raises(TdaError):
        AttributeSettings(candidates=0)


def test_toolkit_missing_gives_one_line(monkeypatch: pytest.MonkeyPatch, tiny_model: tuple[Path, Path]) -> None:
    import sys

    from tda_plugin.errors import MissingDependencyError

    for name in list(sys.modules):
        if name.startswith("stable_audio_tools"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stable_audio_tools", None)
    import tda_plugin  # noqa: F401  — the core itself never needs the toolkit

    with pytest.raises(MissingDependencyError) as exc:
        load_adapter("stable-audio", tiny_model[0], model_config=tiny_model[1])
    assert "pip install" in _one_line(exc)


def test_file_with_a_valid_header_but_corrupt_body_is_skipped(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    """A FLAC whose header decodes but whose frames do not is found at catalogue time, not mid-build."""
    cat = write_catalogue(tmp_path / "cat")
    flac = cat / "audio" / "t1.flac"
    sf.write(flac, np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SEGMENT).astype(np.float32), SR)
    data = bytearray(flac.read_bytes())
    data[200:] = bytes(len(data) - 200)  # keep the header, zero the encoded frames
    flac.write_bytes(bytes(data))
    (cat / "tracks.csv").write_text((cat / "tracks.csv").read_text().replace("audio/t1.wav", "audio/t1.flac"))
    ckpt, cfg = tiny_model
    report = build_index(cat, tmp_path / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=QUICK)
    assert "audio/t1.flac" in dict(report.failures) and report.tracks == 3
