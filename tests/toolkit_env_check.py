"""Run inside a toolkit user's own environment by tests/test_toolkit_env.py (not collected by pytest).

    python toolkit_env_check.py generate CONFIG.json OUT.npy   # the toolkit builds a model and generates
    python toolkit_env_check.py project CONFIG.json DIR        # random-weight checkpoint + small catalogue

``generate`` uses only stable-audio-tools (its factory and ``generate_diffusion_cond``), so it runs the same
before and after tda-plugin is installed; the two outputs must be identical.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def model(config_path: Path) -> torch.nn.Module:
    from stable_audio_tools.models.factory import create_model_from_config

    torch.manual_seed(0)
    built = create_model_from_config(json.loads(config_path.read_text()))
    with torch.no_grad():  # the toolkit zero-initialises some outputs; every weight gets a small random part
        for p in built.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return built.eval()


def generate(config_path: Path, out: Path) -> None:
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    config = json.loads(config_path.read_text())
    built = model(config_path)
    # latents, decoded here: the wavelet pretransform has no parameters, which the toolkit's own decode step needs
    latents = generate_diffusion_cond(built, steps=3, cfg_scale=1.0, seed=0, device="cpu", return_latents=True,
                                      sample_size=config["sample_size"], batch_size=1,
                                      conditioning=[{"prompt": "low hum", "seconds_start": 0, "seconds_total": 2}])
    with torch.no_grad():
        audio = built.pretransform.decode(latents)
    np.save(out, audio.detach().float().numpy())


def project(config_path: Path, root: Path) -> None:
    import soundfile as sf
    from safetensors.torch import save_file

    (root / "model").mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().clone() for k, v in model(config_path).state_dict().items()}
    save_file(weights, str(root / "model" / "model.safetensors"))
    (root / "model" / "model_config.json").write_text(config_path.read_text())
    (root / "cat" / "audio").mkdir(parents=True, exist_ok=True)
    rows = ["path,title,artist,license,caption"]
    t = np.arange(int(1.6 * 8000)) / 8000
    for k in range(4):
        sf.write(root / "cat" / "audio" / f"t{k}.wav", (0.4 * np.sin(2 * np.pi * 220 * 1.5 ** k * t)).astype(np.float32), 8000)
        rows.append(f"audio/t{k}.wav,Track {k},Artist {k % 2},CC-BY-4.0,{('low hum', 'high beep')[k % 2]}")
    (root / "cat" / "tracks.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    {"generate": generate, "project": project}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
