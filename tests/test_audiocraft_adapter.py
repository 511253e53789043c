"""The audiocraft adapter end to end: loaders round trip, one-line errors, determinism, CLI index + attribute."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from typer.testing import CliRunner

from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.audiocraft import load
from tda_plugin.cli.app import app
from tda_plugin.errors import CheckpointError
from tda_plugin.scoring import losses

from .audiocraft_models import tiny_checkpoint
from .conftest import write_catalogue

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("musicgen"))


def test_checkpoint_round_trip_through_audiocraft_loaders(checkpoint: Path, tmp_path: Path) -> None:
    from audiocraft.models import loaders

    from tda_plugin.adapters.audiocraft_demo import build_models, compression_config, export_checkpoint, lm_config

    a = load(checkpoint)
    lm = loaders.load_lm_model(str(checkpoint))
    for k, v in lm.state_dict().items():
        assert torch.equal(v, a.lm.state_dict()[k])
    again = export_checkpoint(tmp_path / "again", a.lm, a.compression, lm_config(segment_seconds=0.5, dim=32),
                              compression_config())
    b = load(again / "state_dict.bin")  # the file or its directory
    x = 0.3 * torch.randn(2, 1, a.default_segment_samples())
    assert torch.equal(a.encode(x), b.encode(x))
    assert a.fingerprint == load(checkpoint).fingerprint
    _, other = build_models(compression_config(), lm_config(segment_seconds=0.5, dim=32))
    export_checkpoint(tmp_path / "other", other, a.compression, lm_config(segment_seconds=0.5, dim=32), compression_config())
    assert load(tmp_path / "other").fingerprint != a.fingerprint


def test_checkpoint_errors_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    from tda_plugin.adapters.audiocraft_demo import compression_config, export_checkpoint, lm_config

    with pytest.raises(CheckpointError, match="missing compression_state_dict.bin"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "state_dict.bin").write_bytes((checkpoint / "state_dict.bin").read_bytes())
        load(tmp_path / "half")
    a = load(checkpoint)
    export_checkpoint(tmp_path / "wrong", a.lm, a.compression, lm_config(segment_seconds=0.5, dim=64), compression_config())
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "wrong")
    assert "do not match its xp.cfg" in str(err.value) and "\n" not in str(err.value)


def test_missing_hugging_face_files_are_named(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A T5-conditioned MusicGen with a pretrained EnCodec, and an empty Hugging Face cache."""
    import huggingface_hub.constants
    from omegaconf import OmegaConf

    pkg = torch.load(checkpoint / "state_dict.bin")
    cfg = OmegaConf.create(pkg["xp.cfg"])
    cfg.conditioners.description = {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.0,
                                                           "normalize_text": False}}
    (tmp_path / "t5").mkdir()
    torch.save({**pkg, "xp.cfg": OmegaConf.to_yaml(cfg)}, tmp_path / "t5" / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True}, tmp_path / "t5" / "compression_state_dict.bin")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "t5")
    msg = str(err.value)
    for f in ("t5-base/spiece.model or tokenizer.json", "t5-base/config.json", "facebook/encodec_32khz/config.json",
              "facebook/encodec_32khz/model.safetensors or pytorch_model.bin"):
        assert f in msg
    assert "\n" not in msg


@pytest.mark.parametrize("magnet", [False, True])
def test_losses_do_not_depend_on_batch_size_or_order(tmp_path: Path, magnet: bool) -> None:
    a = load(tiny_checkpoint(tmp_path, magnet=magnet))
    g = torch.Generator().manual_seed(0)
    codes = a.encode(0.3 * torch.randn(5, 1, a.default_segment_samples(), generator=g))
    conds = [Conditioning(p) for p in ("low hum", "high beep", None, "low hum", "x")]
    streams = [f"segment/{i}" for i in range(5)]
    full = losses(a, codes, conds, streams, seed=0, draws=4, batch_size=20)
    single = losses(a, codes, conds, streams, seed=0, draws=4, batch_size=4)
    perm = [3, 0, 4, 2, 1]
    shuffled = losses(a, codes[perm], [conds[i] for i in perm], [streams[i] for i in perm], seed=0, draws=4, batch_size=8)
    assert torch.allclose(full, single, atol=1e-5, rtol=0)
    assert torch.allclose(full[perm], shuffled, atol=1e-5, rtol=0)
    if magnet:
        assert full.std(dim=1).min() > 0  # the draws pick different masks


def test_cli_index_build_and_attribute(checkpoint: Path, tmp_path: Path) -> None:
    corpus = write_catalogue(tmp_path / "catalogue", seconds=1.6)
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", str(corpus), "--adapter", "audiocraft", "--checkpoint", str(checkpoint),
                            "--out", str(idx), "--draws", "2", "--fisher-segments", "4", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["index", "info", str(idx), "--json"]).stdout)
    assert info["adapter"] == "audiocraft" and info["segments"] == 12
    _nearest_codes_find_the_source(idx)
    for embedder in ("latent_stats",):
        r = runner.invoke(app, ["index", "build", str(corpus), "--adapter", "audiocraft", "--checkpoint", str(checkpoint),
                                "--out", str(tmp_path / embedder), "--draws", "1", "--fisher-segments", "2",
                                "--embedder", embedder, "--device", "cpu"])
        assert r.exit_code == 0, r.output
    out = tmp_path / "credits.json"
    for subset in ("blocks", "cross_attn"):
        r = runner.invoke(app, ["attribute", str(corpus / "audio" / "t1.wav"), "--index", str(idx), "--prompt", "high beep",
                                "--candidates", "6", "--unlearn-draws", "2", "--subset", subset, "--json", str(out)])
        assert r.exit_code == 0, r.output
        doc = json.loads(out.read_text())
        assert doc["model"]["adapter"] == "audiocraft" and doc["method"]["subset"] == subset
        assert doc["method"]["scored"] == 6 and doc["credits"]
    r = runner.invoke(app, ["attribute", str(corpus / "audio" / "t1.wav"), "--index", str(idx), "--mode", "ascent",
                            "--steps", "2", "--candidates", "all", "--unlearn-draws", "2", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["method"]["mode"] == "ascent"


def _nearest_codes_find_the_source(idx: Path) -> None:
    """The behaviour bench's model-free column on a token model: nearest by the count of differing codes."""
    from tda_plugin import Attributor
    from tda_plugin.evaluation import latent_neighbour_checks, segment_audio

    att = Attributor.from_index(idx)
    firsts: dict[int, int] = {}
    for sid in sorted(att.index.segments):
        firsts.setdefault(att.index.segments[sid].track_id, sid)
    ids = sorted(firsts.values())
    planted = segment_audio(att, ids[-1])
    kept, replaced = latent_neighbour_checks(att, ids, {"kept": lambda x, sr, rng: x.copy(),
                                                        "replaced": lambda x, sr, rng: planted})
    assert kept.hits == len(ids) and replaced.hits == 1 and min(replaced.ranks[:-1]) >= 2
