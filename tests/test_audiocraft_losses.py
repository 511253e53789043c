"""The audiocraft adapter's per-sample losses equal audiocraft's own solver computations (to 1e-5)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from omegaconf import OmegaConf

from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.audiocraft import load
from tda_plugin.adapters.audiocraft_losses import (diffusion_loss_at, magnet_stage_mask, magnet_stages,
                                                   per_sample_codebook_ce)
from tda_plugin.randomness import make_draws

from .audiocraft_models import SR, tiny_checkpoint

PROMPTS = [Conditioning("low hum"), Conditioning("high beep"), Conditioning(None)]


@pytest.fixture(scope="module")
def musicgen(tmp_path_factory: pytest.TempPathFactory):
    return load(tiny_checkpoint(tmp_path_factory.mktemp("musicgen")))


@pytest.fixture(scope="module")
def magnet(tmp_path_factory: pytest.TempPathFactory):
    return load(tiny_checkpoint(tmp_path_factory.mktemp("magnet"), magnet=True))


def _audio(adapter, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(n, 1, adapter.default_segment_samples(), generator=g)


def test_musicgen_loss_is_the_solvers_cross_entropy_per_sample(musicgen) -> None:
    from audiocraft.solvers.musicgen import MusicGenSolver

    codes = musicgen.encode(_audio(musicgen))
    keep = torch.ones(codes.shape[0], codes.shape[-1], dtype=torch.bool)
    keep[1, -7:] = False  # padding at the end of one sample, as the solver's padding mask
    ours = musicgen.loss(codes, musicgen.condition(PROMPTS), make_draws(0, ["a", "b", "c"], 3), keep)
    assert ours.shape == (3, 3) and torch.equal(ours[:, 0:1].expand(-1, 3), ours)
    for i in range(3):
        (cond,) = musicgen.condition([PROMPTS[i]])  # one sample's condition tensors
        out = musicgen.lm.compute_predictions(codes[i:i + 1], [], cond)  # as MusicGenSolver.run_step
        padding = keep[i:i + 1, None, :].expand_as(codes[i:i + 1])
        ce, _ = MusicGenSolver._compute_cross_entropy(None, out.logits, codes[i:i + 1], padding & out.mask)
        assert abs(float(ce) - float(ours[i, 0])) < 1e-5


def test_codebook_ce_ignores_invalid_positions_even_in_gradients() -> None:
    logits = torch.randn(2, 3, 5, 7, requires_grad=True)
    valid = torch.rand(2, 3, 5) > 0.3
    nan_logits = torch.where(valid[..., None], logits, torch.full_like(logits, float("nan")))
    targets = torch.randint(0, 8, (2, 3, 5))  # 7 = the special token, out of the card where invalid
    targets = torch.where(valid, targets.clamp_max(6), targets)
    ce = per_sample_codebook_ce(nan_logits, targets, valid)
    ce.sum().backward()
    assert torch.isfinite(ce).all() and torch.isfinite(logits.grad).all()
    assert float(logits.grad[~valid].abs().sum()) == 0.0


def test_magnet_mask_is_the_solvers_mask_under_the_same_uniforms() -> None:
    from audiocraft.solvers.magnet import MagnetSolver

    for span in (1, 3):
        solver = MagnetSolver.__new__(MagnetSolver)  # the solver's own methods, without a training run around them
        solver.cfg = OmegaConf.create({"masking": {"span_len": span}})
        solver.mean_maskrate_to_u = torch.tensor(MagnetSolver._calc_mean_maskrate_to_u_LUT(solver, 50))
        probs = torch.cos(torch.rand(4) * torch.pi * 0.5)
        torch.manual_seed(7)
        theirs = MagnetSolver._get_mask(solver, probs, 4, 50, torch.device("cpu"))
        ours = magnet_stage_mask(probs, torch.rand((4, 50), generator=torch.Generator().manual_seed(7)), span)
        assert torch.equal(theirs, ours)


def test_magnet_loss_is_the_solvers_masked_cross_entropy_per_draw(magnet) -> None:
    import math

    from audiocraft.solvers.magnet import MagnetSolver

    codes = magnet.encode(_audio(magnet, 2))
    b, k, t = codes.shape
    draws = make_draws(3, ["a", "b"], 4)
    ours = magnet.loss(codes, magnet.condition(PROMPTS[:2]), draws)
    assert ours.shape == (2, 4) and sorted(set(magnet_stages(draws, k))) == list(range(k))
    uni = draws.uniform([t + 1])
    for i in range(b):
        (cond,) = magnet.condition([PROMPTS[i]])
        for j, stage_ in enumerate(magnet_stages(draws, k)):
            # MagnetSolver.run_step, with its random stage / time / span order taken from the draw
            probs = torch.cos(uni[i, j, :1] * math.pi * 0.5)
            stage_mask = magnet_stage_mask(probs, uni[i, j, None, 1:], magnet.span_len)[:, None, :]
            mask = torch.full((1, k, t), False)
            mask[:, stage_, :] = stage_mask
            mask[:, stage_ + 1:, :] = True
            inputs = torch.where(mask, magnet.lm.special_token_id, codes[i:i + 1])
            loss_mask = torch.full((1, k, t), False)
            loss_mask[:, stage_, :] = stage_mask
            logits = magnet.lm.compute_predictions(inputs, [], cond, stage=stage_).logits
            ce = MagnetSolver._compute_cross_entropy_magnet(None, logits, codes[i:i + 1].clone(), loss_mask,
                                                            torch.full((1,), stage_))
            assert abs(float(ce) - float(ours[i, j])) < 1e-5


def test_diffusion_loss_is_the_solvers_loss_for_the_same_step_and_noise() -> None:
    from audiocraft.models.builders import get_diffusion_model
    from audiocraft.modules.diffusion_schedule import NoiseSchedule

    torch.manual_seed(0)
    cfg = OmegaConf.create({"channels": 1, "schedule": {"num_steps": 20},
                            "diffusion_unet": {"hidden": 8, "depth": 2, "growth": 2, "max_channels": 16, "emb_all_layers": False,
                                               "cross_attention": False, "bilstm": False, "transformer": False,
                                               "codec_dim": 16}})
    unet = get_diffusion_model(cfg).eval()
    schedule = NoiseSchedule(beta_t0=1e-4, beta_t1=0.02, num_steps=20, device="cpu")
    x = 0.3 * torch.randn(3, 1, 1024)
    condition = torch.randn(3, 16, 1024 // 256)
    torch.manual_seed(5)
    item = schedule.get_training_item(x, tensor_step=True)  # DiffusionSolver.run_step with a per-sample step
    with torch.no_grad():
        out = unet(item.noisy, item.step, condition=condition).sample
        base = torch.nn.functional.mse_loss(out, item.noise, reduction="none").mean(dim=(1, 2))
        reference = torch.nn.functional.mse_loss(item.noisy, item.noise, reduction="none").mean(dim=(1, 2))
        theirs = base / reference
        ours = diffusion_loss_at(unet, schedule, x, condition, item.step, item.noise)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
