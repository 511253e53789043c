"""The demo's model: a small latent `diffusion_cond` DiT of stable-audio-tools' real architecture.

Built by the toolkit's ``create_model_from_config`` from a config shaped like Stable Audio Open's: an
autoencoder pretransform (:mod:`.stable_audio_autoencoder`, trained once per catalogue and then
frozen) and a DiT over its latents with cross-attention on prompt + seconds_start + seconds_total and
global conditioning on the seconds, scaled down to train on 2 CPU cores. One substitution, said here:
the prompt conditioner is the toolkit's offline ``list`` conditioner (one entry per style prompt),
since T5 needs a download. Saved the way real checkpoints are: ``model_config.json`` +
``model.safetensors``; the checkpoint's metadata records the recipe (steps, seed) and the fingerprint
of the catalogue's autoencoder.

The DiT trains for a fixed number of steps (``DIT_STEPS``), never for a wall-clock budget, so a busy
machine trains the same model as an idle one. The repository ships the demo catalogue's model
(``stable_audio_demo_model/``, with the command that made it), so ``tda demo`` shows the same
model everywhere without training; ``tda demo --train`` trains it from scratch.
"""
from __future__ import annotations

import contextlib
import io
import json
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

from . import stable_audio_autoencoder as autoencoder
from .stable_audio_adapter import StableAudioAdapter, build_model

#: DiT training steps of the demo recipe (batch 8, 2 draws per crop)
DIT_STEPS = 3000
#: the shipped demo model (trained on the synthetic catalogue of tda_plugin/demo/synth.py, seed 0)
SHIPPED = Path(__file__).with_name("stable_audio_demo_model")

log = logging.getLogger(__name__)


def demo_config(prompts: list[str], *, sample_rate: int = 8000, segment_samples: int = 16384,
                objective: str = "v", embed_dim: int = 128, depth: int = 4,
                autoencoder_config: dict[str, Any] | None = None, latent_scale: float = 1.0) -> dict[str, Any]:
    """The model config. With ``autoencoder_config``, the pretransform is that autoencoder (the demo's);
    without, the toolkit's parameter-free ``wavelet`` transform (64 bands), which tests use for tiny
    random-weight models that need no trained autoencoder."""
    cond_dim = 64
    if autoencoder_config is None:
        pretransform: dict[str, Any] = {"type": "wavelet", "config": {"channels": 1, "levels": 6, "wavelet": "bior4.4"}}
        channels, patch = 64, 2
    else:
        pretransform = {"type": "autoencoder", "scale": latent_scale, "config": autoencoder_config}
        channels, patch = int(autoencoder_config["latent_dim"]), 1
    return {
        "model_type": "diffusion_cond", "sample_size": segment_samples, "sample_rate": sample_rate, "audio_channels": 1,
        "model": {
            "pretransform": pretransform,
            "conditioning": {"cond_dim": cond_dim, "configs": [
                {"id": "prompt", "type": "list", "config": {"options": list(prompts)}},
                {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}}]},
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "global_cond_ids": ["seconds_start", "seconds_total"],
                "diffusion_objective": objective, "type": "dit",
                "config": {"io_channels": channels, "embed_dim": embed_dim, "depth": depth, "num_heads": embed_dim // 32,
                           "cond_token_dim": cond_dim, "global_cond_dim": 2 * cond_dim, "project_cond_tokens": False,
                           "transformer_type": "continuous_transformer", "patch_size": patch}},
            "io_channels": channels},
        "training": {"timestep_sampler": "uniform"},
    }


def demo_model_config(tracks: list[Track], *, sample_rate: int = 8000) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The demo's model config for ``tracks`` (one list prompt per caption) and its autoencoder's weights
    (:func:`.stable_audio_autoencoder.autoencoder_for`: the shipped model's, the cache's, or trained now)."""
    ae_config, ae_state, scale = autoencoder.autoencoder_for(tracks, sample_rate=sample_rate, known=SHIPPED / "model.safetensors")
    config = demo_config(sorted({t.caption or "" for t in tracks}), sample_rate=sample_rate,
                         autoencoder_config=ae_config, latent_scale=scale)
    return config, ae_state


def train_demo_model(tracks: list[Track], out_dir: Path, *, steps: int = DIT_STEPS, seed: int = 0,
                     config: dict[str, Any] | None = None, batch: int = 8, draws: int = 2, lr: float = 1e-3,
                     exclude: Mapping[Path, Sequence[tuple[float, float]]] | None = None,
                     init: Path | None = None) -> tuple[Path, Path]:
    """Train the DiT on random crops of the catalogue for ``steps`` steps; returns (checkpoint, config).

    ``config``: the model config to train (default: :func:`demo_model_config`, whose trained autoencoder is
    loaded into the pretransform and never trained here). ``exclude`` maps a track's resolved path to
    (start_s, end_s) ranges that no training crop may overlap: the counterfactual and LDS evaluations
    retrain without chosen segments this way. Crops are drawn exactly as without exclusions, and only those
    touching excluded audio are replaced, so a retrained model differs from the reference by the removed
    data, not by a reshuffled data order. ``init``: a checkpoint of the same config to fine-tune instead of
    the seed's initialisation."""
    ae_state: dict[str, torch.Tensor] = {}
    if config is None:
        config, ae_state = demo_model_config(tracks)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_model(config)
    if ae_state:
        model.pretransform.model.load_state_dict(ae_state)
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
    start = time.monotonic()
    with adapter.training(), task(f"training the demo DiT ({steps} steps)", steps) as advance:
        for step in range(steps):
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
            advance(1)
    log.info("trained %d steps in %.0f s, last loss %.4f", steps, time.monotonic() - start, loss.item())
    meta = {"steps": str(steps), "seed": str(seed), "batch": str(batch), "lr": repr(lr)}
    if config["model"]["pretransform"]["type"] == "autoencoder":
        meta.update(autoencoder_fingerprint=autoencoder.fingerprint(tracks, adapter.sample_rate),
                    autoencoder_config=json.dumps(config["model"]["pretransform"]["config"]),
                    latent_scale=repr(config["model"]["pretransform"]["scale"]))
    return _save(model, config, out_dir, meta)


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


def _save(model: torch.nn.Module, config: dict[str, Any], out_dir: Path, meta: dict[str, str]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, cfg = out_dir / "model.safetensors", out_dir / "model_config.json"
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(ckpt) as tmp:
        save_file(state, str(tmp), metadata=meta)
    write_json(cfg, config)
    return ckpt, cfg


def shipped_model(tracks: list[Track], *, seed: int = 0) -> tuple[Path, Path] | None:
    """The shipped demo model, if it was trained on exactly these tracks from this seed (else None)."""
    ckpt = SHIPPED / "model.safetensors"
    if not ckpt.is_file():
        return None
    meta = autoencoder.checkpoint_metadata(ckpt)
    key = autoencoder.fingerprint(tracks, int(json.loads((SHIPPED / "model_config.json").read_text())["sample_rate"]))
    ours = meta.get("autoencoder_fingerprint") == key and meta.get("seed") == str(seed) and meta.get("steps") == str(DIT_STEPS)
    return (ckpt, SHIPPED / "model_config.json") if ours else None



def retrain(tracks: list[Track], out_dir: Path, *, seed: int, steps: int,
            exclude: Mapping[Path, Sequence[tuple[float, float]]], init: Path | None = None,
            config: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """The demo recipe: the catalogue's autoencoder (cached), a DiT trained for ``steps`` from ``seed``."""
    return train_demo_model(tracks, out_dir, steps=steps, seed=seed, exclude=exclude, init=init, config=config)


def generate_clip(adapter: StableAudioAdapter, prompt: str | None, *, seconds_total: float, samples: int, seed: int,
                  steps: int = 50) -> np.ndarray:
    """One clip from ``generate_diffusion_cond`` (latents decoded by the adapter, which also decodes the
    parameter-free wavelet pretransform that the toolkit's decode path cannot)."""
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # seed print, tqdm
        latents = generate_diffusion_cond(adapter.model, steps=steps, cfg_scale=3.0, batch_size=1, sample_size=samples,
                                          seed=seed, device=str(adapter.device), return_latents=True,
                                          conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": seconds_total}])
    return adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()


RECIPE = TrainingRecipe(train=retrain, generate=generate_clip)
