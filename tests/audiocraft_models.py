"""Tiny random-weight audiocraft models (MusicGen, MAGNeT) built by audiocraft's own builders and
exported as audiocraft checkpoint directories; nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch

SR = 8000
MUSICGEN_SECONDS = 0.5  # 25 EnCodec frames at 50 Hz
MAGNET_SECONDS = 1  # MAGNeT's attention masks need whole frames per segment: 50


def tiny_checkpoint(out_dir: Path, *, magnet: bool = False, seed: int = 0, dim: int = 32) -> Path:
    """An exported checkpoint dir; the RVQ is k-means initialised on noise, every LM weight perturbed
    (audiocraft zero-initialises biases and some projections) so no parameter subset is degenerate."""
    from tda_plugin.adapters.audiocraft_demo import build_models, compression_config, export_checkpoint, lm_config

    torch.manual_seed(seed)
    comp_cfg = compression_config(sample_rate=SR)
    lm_cfg = lm_config(segment_seconds=MAGNET_SECONDS if magnet else MUSICGEN_SECONDS, magnet=magnet, dim=dim)
    compression, lm = build_models(comp_cfg, lm_cfg)
    compression.train()
    with torch.no_grad():
        compression(0.3 * torch.randn(8, 1, SR))
        for p in lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    compression.eval()
    return export_checkpoint(out_dir, lm, compression, lm_cfg, comp_cfg)
