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


def tiny_mbd_checkpoint(out_dir: Path, *, seed: int = 0, n_bands: int = 2) -> Path:
    """A MultiBandDiffusion package (``mbd.th``) as ``loaders.load_diffusion_models`` reads it, with its EnCodec:
    one tiny DiffusionUnet per band, each band's processor fitted (so scoring does not change it)."""
    from omegaconf import OmegaConf

    from audiocraft.models.builders import get_diffusion_model, get_processor
    from tda_plugin.adapters.audiocraft_demo import build_models, compression_config, export_checkpoint, lm_config

    torch.manual_seed(seed)
    comp_cfg = compression_config(sample_rate=SR)
    compression, lm = build_models(comp_cfg, lm_config())
    compression.train()
    with torch.no_grad():
        compression(0.3 * torch.randn(8, 1, SR))
    compression.eval()
    export_checkpoint(out_dir, lm, compression, lm_config(), comp_cfg)
    (out_dir / "state_dict.bin").unlink()  # only the EnCodec: the decoder's conditioning
    pkg: dict = {"sample_rate": SR, "n_bands": n_bands}
    for band in range(n_bands):
        cfg = OmegaConf.create({
            "channels": 1, "sample_rate": SR, "dataset": {"segment_duration": 0.5},
            "schedule": {"beta_t0": 1e-4, "beta_t1": 0.02, "num_steps": 20, "variance": "beta", "clip": 5.0,
                         "rescale": 1.0, "repartition": "power", "noise_scale": 1.0},
            "diffusion_unet": {"hidden": 8, "depth": 2, "growth": 2, "max_channels": 16, "emb_all_layers": False,
                               "cross_attention": False, "bilstm": False, "transformer": False, "codec_dim": 32},
            "processor": {"use": True, "name": "multi_band_processor", "n_bands": 4, "num_samples": 8, "power_std": 1.0},
            "filter": {"use": True, "n_bands": n_bands, "idx_band": band, "cutoffs": None},
            "resampling": {"use": False, "target_sr": SR},
            "loss": {"kind": "mse", "norm_power": 0.5}})
        unet = get_diffusion_model(cfg)
        processor = get_processor(cfg.processor, sample_rate=SR)
        processor.project_sample(0.3 * torch.randn(8, 1, SR))  # fits its band statistics
        pkg[band] = {"cfg": cfg, "model_state": unet.state_dict(), "processor_state": processor.state_dict()}
    torch.save(pkg, out_dir / "mbd.th")
    return out_dir
