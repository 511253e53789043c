"""audiocraft's training objectives, kept per sample and driven by explicit draws.

* MusicGen (``MusicGenSolver.run_step`` + ``_compute_cross_entropy``): cross-entropy of the LM's
  logits on the EnCodec codes through the codebook interleaving pattern, valid positions only
  (pattern validity mask & padding mask), mean per codebook, then mean over codebooks. The solver
  averages each codebook over the whole batch; here each sample is its own "batch", so a sample's
  loss equals the solver's loss on that sample alone. It has no randomness: one value serves all draws.
* MAGNeT (``MagnetSolver.run_step``): one codebook level ("stage") is masked with a cosine-scheduled
  rate in spans, later levels fully masked, and the CE is taken on the masked tokens of that stage.
  The solver draws stage, rate and span starts from global RNG; here the stage comes from the shared
  stratified quantile of each draw and the rate and span starts from each (sample, draw)'s own uniforms.
* MultiBandDiffusion (``DiffusionSolver.run_step`` + ``NoiseSchedule.get_training_item``): the
  band-processed waveform is noised at a step with fixed noise, the UNet predicts the noise, and the
  loss is ``mse(out, noise) / mse(noisy, noise) ** norm_power`` per sample.

All three are tested equal to the library's own computations (tests/test_audiocraft_losses.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tda_plugin.randomness import Draws

ConditionTensors = dict[str, tuple[torch.Tensor, torch.Tensor]]


def condition_groups(conds: list[ConditionTensors]) -> list[tuple[list[int], ConditionTensors]]:
    """Samples whose condition tensors (each computed alone) have the same shapes, batched together.

    audiocraft's text tokenizers (T5, whitespace) pad a batch to its longest prompt and the LM's
    cross-attention attends to every position, padding included, so a sample conditioned inside a
    batch sees its batch mates' prompt lengths. Within a group no sample needs padding: each row
    is computed exactly as that sample alone (a batch of one), up to the float rounding of batched kernels.
    """
    groups: dict[tuple, list[int]] = {}
    for i, cond in enumerate(conds):
        key = tuple((name, tuple(x.shape), tuple(m.shape)) for name, (x, m) in sorted(cond.items()))
        groups.setdefault(key, []).append(i)
    return [(idx, {name: (torch.cat([conds[i][name][0] for i in idx]), torch.cat([conds[i][name][1] for i in idx]))
                   for name in conds[idx[0]]}) for idx in groups.values()]


def repeat_conditions(cond: ConditionTensors, d: int) -> ConditionTensors:
    """Each sample's condition tensors repeated for its ``d`` draws (sample-major, like the codes)."""
    return {k: (x.repeat_interleave(d, dim=0), m.repeat_interleave(d, dim=0)) for k, (x, m) in cond.items()}


def per_sample_codebook_ce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, K, T, card] logits, [B, K, T] targets and keep-mask -> [B, K] mean CE over each sample's valid tokens.

    Invalid positions hold NaN logits (the pattern's fill value) and may hold the special token as
    target; both are replaced before the CE so they contribute nothing, not even to gradients.
    """
    card = logits.shape[-1]
    safe_logits = torch.where(valid[..., None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    safe_targets = torch.where(valid, targets, torch.zeros_like(targets)).clamp(0, card - 1)
    ce = F.cross_entropy(safe_logits.reshape(-1, card).float(), safe_targets.reshape(-1), reduction="none")
    ce = ce.view_as(targets) * valid
    return ce.sum(dim=-1) / valid.sum(dim=-1).clamp_min(1)


def musicgen_loss(lm: torch.nn.Module, codes: torch.Tensor, cond: ConditionTensors,
                  keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample MusicGen cross-entropy [B]; ``keep`` is a [B, T] keep-mask over frames (padding/silence)."""
    out = lm.compute_predictions(codes, [], cond)
    valid = out.mask
    if keep is not None:
        valid = valid & keep[:, None, :].to(valid.device, torch.bool)
    return per_sample_codebook_ce(out.logits, codes, valid).mean(dim=1)


# -- MAGNeT ----------------------------------------------------------------------------------------
def span_starts_lut(frames: int, span_len: int) -> torch.Tensor:
    """``MagnetSolver._calc_mean_maskrate_to_u_LUT``: mask percentage 0..100 -> number of span starts."""
    u2mean = [0.0]
    v = (frames - span_len) / float(frames)
    for u in range(1, frames):
        u2mean.append(1 - v)
        v *= (frames - span_len - u) / (frames - u)
    return torch.tensor([int(np.searchsorted(u2mean, p / 100.0)) for p in range(101)])


def magnet_stage_mask(mask_probs: torch.Tensor, order_uniforms: torch.Tensor, span_len: int) -> torch.Tensor:
    """``MagnetSolver._get_mask`` with its ``torch.rand((B, T))`` replaced by ``order_uniforms`` [B, T]."""
    b, t = order_uniforms.shape
    ranks = order_uniforms.argsort(dim=-1)
    if span_len <= 1:
        count = (t * mask_probs).round().clamp(min=1)
        return ranks < count[:, None]
    k = span_starts_lut(t, span_len)[torch.round(100 * mask_probs).long().cpu()].clamp(min=1).to(ranks.device)
    mask = ranks < k[:, None]
    shifted = mask.clone()
    for _ in range(span_len - 1):
        shifted = torch.cat([torch.zeros((b, 1), dtype=torch.bool, device=mask.device), shifted[:, :-1]], dim=1)
        mask = mask | shifted
    return mask


def magnet_stages(draws: Draws, n_q: int) -> list[int]:
    """The codebook level each draw trains, from the shared stratified quantiles (so D >= K covers all)."""
    return [min(n_q - 1, int(u * n_q)) for u in draws.quantiles.tolist()]


def magnet_loss(lm: torch.nn.Module, codes: torch.Tensor, cond: ConditionTensors, draws: Draws, span_len: int,
                keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-(sample, draw) MAGNeT masked-token CE [B, D]."""
    b, k, t = codes.shape
    d = draws.count
    dev = codes.device
    uni = draws.uniform([t + 1]).to(dev)  # [B, D, 1 + T]: the mask rate's time, then the span-start order
    mask_probs = torch.cos(uni[..., 0] * math.pi * 0.5).flatten()
    stage_mask = magnet_stage_mask(mask_probs, uni[..., 1:].flatten(0, 1), span_len)  # [B*D, T]
    stages = torch.tensor(magnet_stages(draws, k), device=dev).repeat(b)  # [B*D]
    rows = codes.repeat_interleave(d, dim=0)
    levels = torch.arange(k, device=dev)[None, :, None]
    st = stages[:, None, None]
    masked = ((levels == st) & stage_mask[:, None, :]) | (levels > st)
    inputs = torch.where(masked, torch.full_like(rows, lm.special_token_id), rows)
    loss_mask = stage_mask if keep is None else stage_mask & keep.to(dev, torch.bool).repeat_interleave(d, dim=0)
    conds = repeat_conditions(cond, d)
    out = torch.empty(b * d, device=dev)
    for stage in sorted(set(stages.tolist())):
        idx = (stages == stage).nonzero().flatten()
        sub = {name: (x[idx], m[idx]) for name, (x, m) in conds.items()}
        logits = lm.compute_predictions(inputs[idx], [], sub, stage=stage).logits[:, stage]  # [n, T, card]
        valid = loss_mask[idx]
        out[idx] = per_sample_codebook_ce(logits[:, None], rows[idx, stage][:, None], valid[:, None])[:, 0]
    return out.view(b, d)


# -- MultiBandDiffusion ----------------------------------------------------------------------------
def diffusion_steps(draws: Draws, num_steps: int) -> torch.Tensor:
    """Diffusion step of each draw from the shared stratified quantiles (uniform over steps, like ``randrange``)."""
    return (draws.quantiles.double() * num_steps).long().clamp(0, num_steps - 1)


def diffusion_loss_at(unet: torch.nn.Module, schedule: Any, sample: torch.Tensor, condition: torch.Tensor,
                      steps: torch.Tensor, noise: torch.Tensor, *, norm_power: float = 1.0, kind: str = "mse") -> torch.Tensor:
    """Per-row MultiBandDiffusion loss [N] at given ``steps`` [N] and ``noise`` [N, C, S]: the noising of
    ``NoiseSchedule.get_training_item`` and the normalised loss of ``DiffusionSolver.run_step``."""
    alpha_bar = schedule.get_alpha_bar(steps)
    x = schedule.sample_processor.project_sample(sample)
    noisy = (alpha_bar.sqrt() / schedule.rescale) * x + (1 - alpha_bar).sqrt() * noise * schedule.noise_scale
    out = unet(noisy, steps, condition=condition).sample
    loss_fun = F.mse_loss if kind == "mse" else F.l1_loss
    base = loss_fun(out, noise, reduction="none").mean(dim=(1, 2))
    reference = loss_fun(noisy, noise, reduction="none").mean(dim=(1, 2))
    return base / reference ** norm_power


def diffusion_loss(unet: torch.nn.Module, schedule: Any, sample: torch.Tensor, condition: torch.Tensor, draws: Draws,
                   *, norm_power: float = 1.0, kind: str = "mse") -> torch.Tensor:
    """Per-(sample, draw) loss [B, D] for band-processed audio ``sample`` [B, C, S] and its EnCodec-embedding
    ``condition``; each draw's step from its stratified quantile, its noise from the sample's own stream."""
    b, d = sample.shape[0], draws.count
    dev = sample.device
    steps = diffusion_steps(draws, schedule.num_steps).to(dev).repeat(b)
    noise = draws.normal(sample.shape[1:]).to(dev).flatten(0, 1)
    rows = diffusion_loss_at(unet, schedule, sample.repeat_interleave(d, dim=0), condition.repeat_interleave(d, dim=0),
                             steps, noise, norm_power=norm_power, kind=kind)
    return rows.view(b, d)
