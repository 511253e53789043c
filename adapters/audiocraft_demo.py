"""The audiocraft demo's model: a small MusicGen-architecture LM over a small EnCodec.

Both are built by audiocraft's own builders (``get_compression_model``, ``get_lm_model``) from
OmegaConf configs shaped like MusicGen's (SEANet + RVQ EnCodec; transformer LM with the delay
interleaving pattern and cross-attention on the prompt), scaled down to train on 2 CPU cores in
minutes. The prompt conditioner is audiocraft's offline ``lut`` conditioner with the ``noop``
tokenizer (one learned embedding per prompt) instead of T5, which needs a download.

Training follows the toolkit's solvers: EnCodec first (reconstruction L1 + multi-scale mel loss +
the quantizer's commitment penalty, the non-adversarial part of ``CompressionSolver``), then the LM
with MusicGen's cross-entropy and classifier-free-guidance dropout, on frozen codes. Saved the way
audiocraft exports checkpoints (``utils/export.py``): ``state_dict.bin`` + ``compression_state_dict.bin``.
"""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tda_plugin import audio as audio_io
from tda_plugin.adapter import Conditioning
from tda_plugin.atomic import atomic_path
from tda_plugin.catalog import Track
from tda_plugin.progress import task
from tda_plugin.randomness import make_draws

from .audiocraft import AudiocraftLMAdapter
from .audiocraft_toolkit import COMPRESSION_FILE, LM_FILE, quiet, toolkit

log = logging.getLogger(__name__)


def compression_config(*, sample_rate: int = 8000, ratios: tuple[int, ...] = (8, 5, 4), n_q: int = 4, bins: int = 64,
                       dimension: int = 32, n_filters: int = 8) -> dict[str, Any]:
    """An EnCodec (SEANet + RVQ) config as ``builders.get_compression_model`` reads it."""
    return {
        "device": "cpu", "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": dimension, "channels": 1, "causal": False, "n_filters": n_filters, "n_residual_layers": 1,
                   "ratios": list(ratios), "activation": "ELU", "activation_params": {"alpha": 1.0}, "norm": "none",
                   "norm_params": {}, "kernel_size": 7, "last_kernel_size": 7, "residual_kernel_size": 3, "dilation_base": 2,
                   "pad_mode": "constant", "true_skip": True, "compress": 2, "lstm": 0, "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": n_q, "q_dropout": False, "bins": bins, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 10,
                "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0, "orthogonal_reg_active_codes_only": False},
    }


def lm_config(*, n_q: int = 4, card: int = 64, segment_seconds: float = 2.0, dim: int = 64, num_layers: int = 2,
              num_heads: int = 2, magnet: bool = False, span_len: int = 3) -> dict[str, Any]:
    """A MusicGen (or MAGNeT) LM config as ``builders.get_lm_model`` / audiocraft's loaders read it."""
    cfg: dict[str, Any] = {
        "device": "cpu", "dtype": "float32", "lm_model": "transformer_lm_magnet" if magnet else "transformer_lm",
        "transformer_lm": {
            "dim": dim, "num_heads": num_heads, "num_layers": num_layers, "hidden_scale": 2, "n_q": n_q, "card": card,
            "dropout": 0.0, "emb_lr": None, "activation": "gelu", "norm_first": True, "bias_ff": False, "bias_attn": False,
            "bias_proj": False, "past_context": None, "causal": not magnet, "custom": False, "memory_efficient": False,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin", "xpos": False,
            "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
            "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False, "qk_layer_norm_cross": False,
            "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False},
        "codebooks_pattern": ({"modeling": "parallel", "parallel": {"empty_initial": 0}} if magnet else
                              {"modeling": "delay", "delay": {"delays": list(range(n_q)), "flatten_first": 0, "empty_initial": 0}}),
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.1, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "lut", "lut": {"n_bins": 256, "dim": 32, "tokenizer": "noop"}}},
        "dataset": {"segment_duration": segment_seconds},
    }
    if magnet:
        cfg["transformer_lm"].update({"subcodes_context": 5, "custom": True, "memory_efficient": True})  # as MAGNeT's configs
        cfg["masking"] = {"span_len": span_len}
    return cfg


def build_models(comp_cfg: dict[str, Any], lm_cfg: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(compression model, LM) from audiocraft's builders (MAGNeT: with the loader's extra LM settings)."""
    ac = toolkit()
    from omegaconf import OmegaConf

    comp = OmegaConf.create(comp_cfg)
    lm = OmegaConf.create(lm_cfg)
    with quiet():
        compression = ac.builders.get_compression_model(comp)
        if lm.lm_model == "transformer_lm_magnet":  # what loaders.load_lm_model_magnet sets before building
            ac.set_efficient_attention_backend("torch")
            lm.transformer_lm.compression_model_framerate = int(compression.frame_rate)
            lm.transformer_lm.segment_duration = lm.dataset.segment_duration
            lm.transformer_lm.span_len = lm.masking.span_len
        model = ac.builders.get_lm_model(lm)
    return compression, model


def export_checkpoint(out_dir: Path, lm: torch.nn.Module, compression: torch.nn.Module,
                      lm_cfg: dict[str, Any], comp_cfg: dict[str, Any]) -> Path:
    """Write ``state_dict.bin`` + ``compression_state_dict.bin`` as audiocraft's ``utils/export.py`` does."""
    import audiocraft
    from omegaconf import OmegaConf

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, module, cfg in ((COMPRESSION_FILE, compression, comp_cfg), (LM_FILE, lm, lm_cfg)):
        pkg = {"best_state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
               "xp.cfg": OmegaConf.to_yaml(OmegaConf.create(cfg)), "version": audiocraft.__version__, "exported": True}
        with atomic_path(out_dir / name) as tmp:
            torch.save(pkg, str(tmp))
    return out_dir


def _load_tracks(tracks: list[Track], sample_rate: int, min_samples: int) -> list[tuple[Track, torch.Tensor, float]]:
    out = []
    for t in tracks:
        data, rate = audio_io.load(t.resolved)
        data, _ = audio_io.conform(data, rate, sample_rate, 1)
        if data.shape[1] >= min_samples:
            out.append((t, torch.from_numpy(np.ascontiguousarray(data)), data.shape[1] / sample_rate))
    return out


def train_compression(compression: torch.nn.Module, audio: list[torch.Tensor], *, seconds: float, rng: random.Random,
                      crop: int, batch: int = 8, lr: float = 3e-3, max_steps: int | None = None) -> int:
    """EnCodec's non-adversarial objective: L1 + multi-scale mel + commitment; kmeans initialises the RVQ."""
    from audiocraft.losses import MultiScaleMelSpectrogramLoss

    with quiet():  # torchaudio warns that the smallest scale has empty mel filters
        mel = MultiScaleMelSpectrogramLoss(sample_rate=compression.sample_rate, range_start=6, range_end=9, n_mels=32)
    opt = torch.optim.Adam(compression.parameters(), lr=lr, betas=(0.5, 0.9))
    compression.train()
    start, step = time.monotonic(), 0
    while time.monotonic() - start < seconds and (max_steps is None or step < max_steps):
        crops = []
        for _ in range(batch):
            a = audio[rng.randrange(len(audio))]
            off = rng.randrange(0, a.shape[-1] - crop + 1)
            crops.append(a[:, off:off + crop])
        x = torch.stack(crops)
        with quiet():
            q = compression(x)
        loss = (q.x - x).abs().mean() + mel(q.x, x) + (q.penalty if q.penalty is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    compression.eval().requires_grad_(False)
    log.info("EnCodec: %d steps, last loss %.4f", step, float(loss.detach()))
    return step


def train_demo_model(tracks: list[Track], out_dir: Path, *, minutes: float, seed: int = 0, sample_rate: int = 8000,
                     segment_seconds: float = 2.0, codec_share: float = 0.25, batch: int = 16, lr: float = 2e-3,
                     magnet: bool = False, max_steps: int | None = None, codec_steps: int | None = None,
                     lm_overrides: dict[str, Any] | None = None) -> Path:
    """Train EnCodec for ``codec_share`` of the budget, then the LM on random crops with their prompts;
    returns the checkpoint directory. Step caps (``codec_steps``, ``max_steps``) make the result
    independent of machine speed when the budget is generous (``minutes=inf`` needs both)."""
    if math.isinf(minutes) and (codec_steps is None or max_steps is None):
        raise ValueError("an unbounded training budget needs both step caps (codec_steps and max_steps)")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    comp_cfg = compression_config(sample_rate=sample_rate)
    lm_cfg = lm_config(segment_seconds=segment_seconds, magnet=magnet, **(lm_overrides or {}))
    compression, lm = build_models(comp_cfg, lm_cfg)
    seg = int(segment_seconds * sample_rate)
    loaded = _load_tracks(tracks, sample_rate, seg)
    budget = minutes * 60.0
    with task("training demo EnCodec", 1) as advance:
        train_compression(compression, [a for _, a, _ in loaded], seconds=budget * codec_share, rng=rng, crop=seg,
                          max_steps=codec_steps)
        advance(1)
    adapter = AudiocraftLMAdapter(lm, compression, _omega(lm_cfg), fingerprint="training")
    codes = [(t, adapter.encode(a[None, :, : adapter.valid_segment_samples(a.shape[-1])])[0]) for t, a, _ in loaded]
    frames = adapter.encode(torch.zeros(1, 1, seg)).shape[-1]
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    lm_budget = budget * (1 - codec_share)
    # progress in steps under a step cap (the demo's: its budget is unbounded), else in seconds of the budget
    label, total = (f"{max_steps} steps", max_steps) if max_steps is not None else (f"{lm_budget / 60:.1f} min", int(lm_budget))
    start, step = time.monotonic(), 0
    with adapter.training(), task(f"training demo LM ({label})", total) as advance:
        while (elapsed := time.monotonic() - start) < lm_budget and (max_steps is None or step < max_steps):
            crops, conds = [], []
            for _ in range(batch):
                t, c = codes[rng.randrange(len(codes))]
                off = rng.randrange(0, c.shape[-1] - frames + 1)
                crops.append(c[:, off:off + frames])
                conds.append(Conditioning(t.caption))
            # as MusicGenSolver: classifier-free-guidance and attribute dropout on the attributes, then the provider
            attrs = lm.att_dropout(lm.cfg_dropout(adapter.attributes(conds)))
            d = make_draws(seed * 1_000_003 + step, [f"train/{i}" for i in range(batch)], 1)
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / 50)
            loss = adapter.loss(torch.stack(crops), adapter.condition_tensors(attrs), d).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            step += 1
            advance(1 if max_steps is not None else int(time.monotonic() - start) - int(elapsed))
    log.info("LM: %d steps, last loss %.4f", step, float(loss.detach()))
    return export_checkpoint(out_dir, lm, compression, lm_cfg, comp_cfg)


def _omega(cfg: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(cfg)
