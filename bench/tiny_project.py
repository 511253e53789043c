"""The tiny real-architecture project of the test suite (tests/conftest.py) and the reliability benches
(bench/reliability_common.py): a small stable-audio-tools DiT with random weights and sine-tone catalogues.

Everything is built from random weights; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 8000
SEGMENT = 4096  # 0.512 s at 8 kHz: 64 wavelet frames, 32 DiT tokens


def tiny_config(prompts: list[str], objective: str = "v") -> dict:
    from tda_plugin.adapters.stable_audio_demo import demo_config

    return demo_config(prompts, sample_rate=SR, segment_samples=SEGMENT, objective=objective, embed_dim=64, depth=2)


def write_catalogue(root: Path, n_tracks: int = 4, seconds: float = 1.6, prompts: tuple[str, ...] = ("low hum", "high beep")) -> Path:
    """Sine-tone tracks with credits; track k uses prompt k % len(prompts)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = ["path,title,artist,license,caption"]
    t = np.arange(int(seconds * SR)) / SR
    for k in range(n_tracks):
        f = 220.0 * (1.5 ** k)
        audio = 0.4 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 2.01 * f * t)
        sf.write(root / "audio" / f"t{k}.wav", audio.astype(np.float32), SR)
        rows.append(f"audio/t{k}.wav,Track {k},Artist {k % 2},CC-BY-4.0,{prompts[k % len(prompts)]}")
    (root / "tracks.csv").write_text("\n".join(rows) + "\n")
    return root


def random_model(config: dict, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write (model.safetensors, model_config.json) of ``config`` with random weights.

    stable-audio-tools zero-initialises attention outputs, which would leave whole parameter
    subsets without gradient; every weight gets a small random perturbation so none is degenerate.
    """
    from safetensors.torch import save_file

    from tda_plugin.adapters.stable_audio_adapter import build_model
    from tda_plugin.atomic import write_json

    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, cfg = out_dir / "model.safetensors", out_dir / "model_config.json"
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(ckpt))
    write_json(cfg, config)
    return ckpt, cfg
