"""The demo's model: a small `diffusion_cond` DiT of stable-audio-tools' real architecture.

Built by the toolkit's ``create_model_from_config`` from a config shaped like Stable Audio Open's
(DiT with cross-attention on prompt + seconds_start + seconds_total, global conditioning on the
seconds), scaled down to train on 2 CPU cores in minutes. Two substitutions, both said here:
the prompt conditioner is the toolkit's offline ``list`` conditioner (one entry per style prompt),
and the pretransform is its invertible ``wavelet`` transform instead of a VAE, since a VAE cannot be
trained in the demo's time budget and a random one would not decode what the DiT generates.
Saved the way real checkpoints are: ``model_config.json`` + ``model.safetensors``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import random
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tda_plugin import audio as audio_io
from tda_plugin.adapter import Conditioning
from tda_plugin.atomic import atomic_path, write_json
from tda_plugin.catalog import Track
from tda_plugin.errors import TdaError
from tda_plugin.progress import task
from tda_plugin.randomness import make_draws
from tda_plugin.registry import TrainingRecipe

from .stable_audio import StableAudioAdapter, build_model

log = logging.getLogger(__name__)


def demo_config(prompts: list[str], *, sample_rate: int = 8000, segment_samples: int = 16384,
                objective: str = "v", embed_dim: int = 128, depth: int = 4) -> dict[str, Any]:
    cond_dim = 64
    return {
        "model_type": "diffusion_cond", "sample_size": segment_samples, "sample_rate": sample_rate, "audio_channels": 1,
        "model": {
            "pretransform": {"type": "wavelet", "config": {"channels": 1, "levels": 6, "wavelet": "bior4.4"}},
            "conditioning": {"cond_dim": cond_dim, "configs": [
                {"id": "prompt", "type": "list", "config": {"options": list(prompts)}},
                {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}}]},
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "global_cond_ids": ["seconds_start", "seconds_total"],
                "diffusion_objective": objective, "type": "dit",
                "config": {"io_channels": 64, "embed_dim": embed_dim, "depth": depth, "num_heads": embed_dim // 32,
                           "cond_token_dim": cond_dim, "global_cond_dim": 2 * cond_dim, "project_cond_tokens": False,
                           "transformer_type": "continuous_transformer", "patch_size": 2}},
            "io_channels": 64},
        "training": {"timestep_sampler": "uniform"},
    }


def train_demo_model(tracks: list[Track], out_dir: Path, *, minutes: float, seed: int = 0,
                     config: dict[str, Any] | None = None, batch: int = 8, draws: int = 2,
                     lr: float = 1e-3, max_steps: int | None = None,
                     exclude: Mapping[Path, Sequence[tuple[float, float]]] | None = None,
                     init: Path | None = None) -> tuple[Path, Path]:
    """Train on random crops of the catalogue for ``minutes`` of wall clock (or ``max_steps``, whichever
    comes first: a step budget makes the result independent of machine speed); returns (checkpoint, config).

    ``exclude`` maps a track's resolved path to (start_s, end_s) ranges that no training crop may
    overlap: the counterfactual evaluation retrains without chosen segments this way. Crops are drawn
    exactly as without exclusions, and only those touching excluded audio are replaced, so the
    retrained model differs from the reference by the removed data, not by a reshuffled data order.
    ``init``: a checkpoint of the same config to fine-tune instead of the seed's initialisation."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = config or demo_config(sorted({t.caption or "" for t in tracks}))
    model = build_model(config)
    if init is not None:
        model.load_state_dict(load_file(str(init)))
    adapter = StableAudioAdapter(model, config, fingerprint="training")
    seg = adapter.default_segment_samples()
    sr, ch = adapter.sample_rate, adapter.channels
    encoded: list[tuple[Track, torch.Tensor, float]] = []
    for t in tracks:
        data, rate = audio_io.load(t.resolved)
        data, _ = audio_io.conform(data, rate, sr, ch)
        usable = adapter.valid_segment_samples(data.shape[1])
        if usable < seg:
            continue
        encoded.append((t, adapter.encode(torch.from_numpy(data[None, :, :usable]))[0].cpu(), data.shape[1] / sr))
    frames = adapter.encode(torch.zeros(1, ch, seg)).shape[-1]
    hop = seg // frames
    allowed = [set(offsets) for offsets in _allowed_offsets(encoded, frames, hop / sr, exclude or {})]
    pool = [(j, off) for j, offsets in enumerate(allowed) for off in sorted(offsets)]
    if not pool:
        raise TdaError(f"no track is {seg / sr:.2f} s long outside the excluded ranges: nothing to train on")
    # crops are drawn as if nothing were excluded; one that touches excluded audio is swapped for a crop
    # from a separate stream, so retraining without some segments changes only the batches that held them
    spare = random.Random(seed + 1)
    params = [p for n, p in model.named_parameters() if not n.startswith("pretransform")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    budget = minutes * 60.0
    start, step = time.monotonic(), 0
    # progress in steps when a step budget is set, else in seconds of the wall-clock budget
    by_steps = max_steps is not None and max_steps < budget / 0.01
    label = f"training demo model ({max_steps} steps)" if by_steps else f"training demo model ({minutes:g} min)"
    with adapter.training(), task(label, max_steps if by_steps else int(budget)) as advance:
        while (elapsed := time.monotonic() - start) < budget and (max_steps is None or step < max_steps):
            crops, conds = [], []
            for _ in range(batch):
                j = rng.randrange(len(encoded))
                off = rng.randrange(0, encoded[j][1].shape[-1] - frames + 1)
                if off not in allowed[j]:
                    j, off = pool[spare.randrange(len(pool))]
                t, lat, total = encoded[j]
                crops.append(lat[:, off:off + frames])
                conds.append(Conditioning(t.caption, off * hop / sr, total))
            d = make_draws(seed * 1_000_003 + step, [f"train/{i}" for i in range(batch)], draws)
            warm = min(1.0, (step + 1) / 100)
            for g in opt.param_groups:
                g["lr"] = lr * warm
            loss = adapter.loss(torch.stack(crops), adapter.condition(conds), d, cfg_dropout=0.1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            advance(1 if by_steps else int(time.monotonic() - start) - int(elapsed))
    log.info("trained %d steps in %.0f s, last loss %.4f", step, time.monotonic() - start, loss.item())
    return _save(model, config, out_dir, step)


def _allowed_offsets(encoded: list[tuple[Track, torch.Tensor, float]], frames: int, frame_s: float,
                     exclude: Mapping[Path, Sequence[tuple[float, float]]]) -> list[list[int]]:
    """Per track, the crop offsets (in frames) whose span overlaps no excluded range."""
    ranges = {Path(p).resolve(): list(r) for p, r in exclude.items()}
    out = []
    for t, lat, _ in encoded:
        banned = ranges.get(Path(t.resolved).resolve(), [])
        out.append([off for off in range(lat.shape[-1] - frames + 1)
                    if not any(off * frame_s < end and start < (off + frames) * frame_s for start, end in banned)])
    return out


def _save(model: torch.nn.Module, config: dict[str, Any], out_dir: Path, step: int) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, cfg = out_dir / "model.safetensors", out_dir / "model_config.json"
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(ckpt) as tmp:
        save_file(state, str(tmp), metadata={"steps": str(step)})
    write_json(cfg, config)
    return ckpt, cfg



def retrain(tracks: list[Track], out_dir: Path, *, seed: int, steps: int,
            exclude: Mapping[Path, Sequence[tuple[float, float]]], init: Path | None = None) -> tuple[Path, Path]:
    """The demo recipe with a step budget only (no wall clock), so reruns give the same model."""
    return train_demo_model(tracks, out_dir, minutes=float("inf"), seed=seed, max_steps=steps, exclude=exclude, init=init)


def generate_clip(adapter: StableAudioAdapter, prompt: str | None, *, seconds_total: float, samples: int, seed: int,
                  steps: int = 50) -> np.ndarray:
    """One clip from ``generate_diffusion_cond`` (latents decoded by the adapter: the wavelet has no decode path there)."""
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # seed print, tqdm
        latents = generate_diffusion_cond(adapter.model, steps=steps, cfg_scale=3.0, batch_size=1, sample_size=samples,
                                          seed=seed, device=str(adapter.device), return_latents=True,
                                          conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": seconds_total}])
    return adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()


RECIPE = TrainingRecipe(train=retrain, generate=generate_clip)
