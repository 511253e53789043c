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

The demo recipe (:data:`RECIPE`) was trained once on the synthetic catalogue of seed 0 and ships in
``audiocraft_demo_model/`` (``python -m tda_plugin.demo.ship --adapter audiocraft``); ``state_dict.bin``
records the recipe, the seed and the catalogue's fingerprint, and the demo uses it only when they match
(:func:`shipped_model`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tda_plugin import audio as audio_io
from tda_plugin.adapter import Conditioning
from tda_plugin.atomic import atomic_path
from tda_plugin.catalog import Track, hash_tracks
from tda_plugin.progress import task
from tda_plugin.randomness import make_draws

from .audiocraft import AudiocraftLMAdapter
from .audiocraft_toolkit import COMPRESSION_FILE, LM_FILE, quiet, toolkit

log = logging.getLogger(__name__)

#: the shipped demo model, trained with :data:`RECIPE` on the synthetic catalogue of seed 0
SHIPPED = Path(__file__).with_name("audiocraft_demo_model")
#: the demo's model and training (docs/audiocraft.md, "The demo"). An EnCodec of 8 filters trained for 200 steps
#: with a 32-band mel loss reconstructed crops that the independent style check placed at chance (6 of 48), and
#: its LM's clips sounded like the prompted artist in 1 of 8; 16 filters, a 64-dimensional latent, 1 500
#: steps at a lower rate and a 64-band mel loss on longer windows gave 41 of 48 (bench/audiocraft_codec.py).
#: The LM is wider and deeper. The shipped model was trained on one thread (its TRAINING.md), as torch's CPU sums
#: depend on the thread count.
RECIPE: dict[str, Any] = {
    "codec": {"n_filters": 16, "dimension": 64},
    "codec_training": {"steps": 1500, "lr": 1e-3, "n_mels": 64, "mel_scales": [7, 11]},
    "lm": {"dim": 128, "num_layers": 4, "num_heads": 4},
    "lm_training": {"steps": 5000, "batch": 16, "lr": 2e-3},
}


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
                      lm_cfg: dict[str, Any], comp_cfg: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Write ``state_dict.bin`` + ``compression_state_dict.bin`` as audiocraft's ``utils/export.py`` does;
    ``meta`` goes under ``tda_demo`` in ``state_dict.bin`` (audiocraft's loaders read only their own keys)."""
    import audiocraft
    from omegaconf import OmegaConf

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, module, cfg in ((COMPRESSION_FILE, compression, comp_cfg), (LM_FILE, lm, lm_cfg)):
        pkg = {"best_state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
               "xp.cfg": OmegaConf.to_yaml(OmegaConf.create(cfg)), "version": audiocraft.__version__, "exported": True}
        if meta is not None and name == LM_FILE:
            pkg["tda_demo"] = meta
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


def codes_used(compression: torch.nn.Module, audio: list[torch.Tensor]) -> list[int]:
    """How many distinct codes each codebook gives ``audio`` (whole tracks, cut to whole frames): a codec that
    collapsed to a few codes cannot tell its catalogue's segments apart."""
    hop = compression.sample_rate // compression.frame_rate
    used: list[set[int]] = [set() for _ in range(compression.num_codebooks)]
    with torch.no_grad():
        for a in audio:
            codes, _ = compression.encode(a[None, :, : a.shape[-1] - a.shape[-1] % hop])
            for k, book in enumerate(used):
                book.update(codes[0, k].tolist())
    return [len(book) for book in used]


def with_steps(recipe: dict[str, Any], codec_steps: int, lm_steps: int) -> dict[str, Any]:
    """``recipe`` with other step budgets (a shorter run of the same recipe, as the quick tests train)."""
    out = json.loads(json.dumps(recipe))
    out["codec_training"]["steps"], out["lm_training"]["steps"] = codec_steps, lm_steps
    return out


def train_compression(compression: torch.nn.Module, audio: list[torch.Tensor], *, steps: int, rng: random.Random,
                      crop: int, lr: float, n_mels: int, mel_scales: list[int], batch: int = 8) -> float:
    """EnCodec's non-adversarial objective: L1 + multi-scale mel + commitment; kmeans initialises the RVQ on
    the first batch and dead codes are re-seeded from later ones (the quantizer's own EMA updates).
    Returns the last loss."""
    from audiocraft.losses import MultiScaleMelSpectrogramLoss

    with quiet():  # torchaudio warns that the smallest scale has empty mel filters
        mel = MultiScaleMelSpectrogramLoss(sample_rate=compression.sample_rate, range_start=mel_scales[0],
                                           range_end=mel_scales[1], n_mels=n_mels)
    opt = torch.optim.Adam(compression.parameters(), lr=lr, betas=(0.5, 0.9))
    compression.train()
    with task(f"training demo EnCodec ({steps} steps)", steps) as advance:
        for _ in range(steps):
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
            advance(1)
    compression.eval().requires_grad_(False)
    return float(loss.detach())


def train_demo_model(tracks: list[Track], out_dir: Path, *, recipe: dict[str, Any] = RECIPE, seed: int = 0,
                     sample_rate: int = 8000, segment_seconds: float = 2.0) -> Path:
    """Train EnCodec, then the LM on random crops of its codes with their prompts, each for the recipe's
    step budget (not a wall-clock one, so that machine load does not change the model); returns the
    checkpoint directory, whose ``state_dict.bin`` records the recipe, the seed and the catalogue fingerprint."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    comp_cfg = compression_config(sample_rate=sample_rate, **recipe["codec"])
    lm_cfg = lm_config(segment_seconds=segment_seconds, **recipe["lm"])
    compression, lm = build_models(comp_cfg, lm_cfg)
    seg = int(segment_seconds * sample_rate)
    loaded = _load_tracks(tracks, sample_rate, seg)
    codec_loss = train_compression(compression, [a for _, a, _ in loaded], rng=rng, crop=seg, **recipe["codec_training"])
    log.info("EnCodec: %d steps, last loss %.4f", recipe["codec_training"]["steps"], codec_loss)
    adapter = AudiocraftLMAdapter(lm, compression, _omega(lm_cfg), fingerprint="training")
    codes = [(t, adapter.encode(a[None, :, : adapter.valid_segment_samples(a.shape[-1])])[0]) for t, a, _ in loaded]
    frames = adapter.encode(torch.zeros(1, 1, seg)).shape[-1]
    train_lm(lm, adapter, codes, frames=frames, rng=rng, seed=seed, **recipe["lm_training"])
    meta = {"fingerprint": fingerprint(tracks, recipe, seed), "seed": seed, "recipe": json.dumps(recipe, sort_keys=True)}
    return export_checkpoint(out_dir, lm, compression, lm_cfg, comp_cfg, meta=meta)


def train_lm(lm: torch.nn.Module, adapter: AudiocraftLMAdapter, codes: list[tuple[Track, torch.Tensor]], *, frames: int,
             rng: random.Random, seed: int, steps: int, batch: int, lr: float) -> None:
    """MusicGen's cross-entropy on random crops of the catalogue's codes with their prompts, as
    ``MusicGenSolver``: classifier-free-guidance and attribute dropout, a 50-step warm-up, gradient clip 1."""
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    with adapter.training(), task(f"training demo LM ({steps} steps)", steps) as advance:
        for step in range(steps):
            crops, conds = [], []
            for _ in range(batch):
                t, c = codes[rng.randrange(len(codes))]
                off = rng.randrange(0, c.shape[-1] - frames + 1)
                crops.append(c[:, off:off + frames])
                conds.append(Conditioning(t.caption))
            attrs = lm.att_dropout(lm.cfg_dropout(adapter.attributes(conds)))
            d = make_draws(seed * 1_000_003 + step, [f"train/{i}" for i in range(batch)], 1)
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / 50)
            loss = adapter.loss(torch.stack(crops), adapter.condition_tensors(attrs), d).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            advance(1)
    log.info("LM: %d steps, last loss %.4f", steps, float(loss.detach()))


def _omega(cfg: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(cfg)


def fingerprint(tracks: list[Track], recipe: dict[str, Any], seed: int) -> str:
    """sha256 over the recipe, the seed and every track's audio bytes (in catalogue order): what a model
    trained by :func:`train_demo_model` is a function of (on one machine and torch build)."""
    header = json.dumps({"recipe": recipe, "seed": seed}, sort_keys=True).encode()
    return hash_tracks(hashlib.sha256(header), tracks).hexdigest()


def checkpoint_fingerprint(ckpt_dir: Path) -> str | None:
    """The catalogue fingerprint a demo checkpoint was trained for (None: not a demo checkpoint)."""
    path = ckpt_dir / LM_FILE
    if not path.is_file():
        return None
    return torch.load(str(path), map_location="cpu", weights_only=True).get("tda_demo", {}).get("fingerprint")


def shipped_model(tracks: list[Track], *, seed: int = 0, recipe: dict[str, Any] = RECIPE) -> Path | None:
    """The shipped demo model's directory if it was trained with this recipe and seed on exactly these
    tracks (else None: the caller trains one)."""
    key = checkpoint_fingerprint(SHIPPED)
    return SHIPPED if key is not None and key == fingerprint(tracks, recipe, seed) else None
