"""MultiBandDiffusion through the audiocraft adapter: loaders, per-band solver loss, determinism, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from typer.testing import CliRunner

from tda_plugin.adapters.audiocraft import load
from tda_plugin.adapters.audiocraft_losses import diffusion_steps
from tda_plugin.cli.app import app
from tda_plugin.randomness import make_draws
from tda_plugin.scoring import losses

from .audiocraft_models import tiny_mbd_checkpoint
from .conftest import write_catalogue


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mbd_checkpoint(tmp_path_factory.mktemp("mbd"))


def test_band_losses_are_the_solvers_for_each_draws_step_and_noise(checkpoint: Path) -> None:
    from audiocraft.models.loaders import load_diffusion_models

    a = load(checkpoint)
    assert a.family == "mbd" and len(a.model) == 2
    unets, _, _ = load_diffusion_models(str(checkpoint), filename="mbd.th")
    for ours, theirs in zip(a.model, unets):
        assert all(torch.equal(v, ours.state_dict()[k]) for k, v in theirs.state_dict().items())
    wav = 0.3 * torch.randn(2, 1, a.default_segment_samples(), generator=torch.Generator().manual_seed(0))
    draws = make_draws(0, ["a", "b"], 3)
    got = a.loss(a.encode(wav), None, draws)
    condition = a.codec_condition(wav)
    steps = diffusion_steps(draws, a.schedules[0].num_steps)
    noise = draws.normal(wav.shape[1:])
    for i in range(2):
        for j in range(3):
            bands = []
            for unet, schedule, band in zip(a.model, a.schedules, a.bands):
                # DiffusionSolver.run_step for one sample at the draw's step, with the draw's noise
                x = schedule.sample_processor.project_sample(band.process_data(wav[i:i + 1].clone()))
                alpha_bar = schedule.get_alpha_bar(steps[j:j + 1])
                noisy = alpha_bar.sqrt() / schedule.rescale * x + (1 - alpha_bar).sqrt() * noise[i, j][None] * schedule.noise_scale
                out = unet(noisy, steps[j:j + 1], condition=condition[i:i + 1]).sample
                base = torch.nn.functional.mse_loss(out, noise[i, j][None], reduction="none").mean(dim=(1, 2))
                ref = torch.nn.functional.mse_loss(noisy, noise[i, j][None], reduction="none").mean(dim=(1, 2))
                bands.append(base / ref ** 0.5)
            assert abs(float(torch.stack(bands).mean()) - float(got[i, j])) < 1e-5


def test_mbd_losses_do_not_depend_on_batch_size_or_order(checkpoint: Path) -> None:
    a = load(checkpoint)
    wav = 0.3 * torch.randn(4, 1, a.default_segment_samples(), generator=torch.Generator().manual_seed(1))
    streams = [f"segment/{i}" for i in range(4)]
    full = losses(a, a.encode(wav), [None] * 4, streams, seed=0, draws=2, batch_size=8)
    perm = [2, 0, 3, 1]
    one = losses(a, a.encode(wav[perm]), [None] * 4, [streams[i] for i in perm], seed=0, draws=2, batch_size=2)
    assert torch.allclose(full[perm], one, atol=1e-5, rtol=0)


def test_cli_index_build_and_attribute_with_mbd(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    corpus = write_catalogue(tmp_path / "catalogue", seconds=1.2)
    r = runner.invoke(app, ["index", "build", str(corpus), "--adapter", "audiocraft", "--checkpoint", str(checkpoint),
                            "--out", str(tmp_path / "idx"), "--draws", "2", "--fisher-segments", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["attribute", str(corpus / "audio" / "t2.wav"), "--index", str(tmp_path / "idx"),
                            "--candidates", "all", "--unlearn-draws", "2", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"]["adapter"] == "audiocraft" and doc["credits"]
