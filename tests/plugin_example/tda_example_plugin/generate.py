"""Sample clips from a tiny-conv model (deterministic DDIM): ``python -m tda_example_plugin.generate MODEL_DIR OUT.wav``."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import soundfile as sf
import torch

from .adapter import load
from .model import TinyConv, unpatchify


@torch.no_grad()
def sample(model: TinyConv, prompts: list[str], *, samples: int, hop: int = 32, steps: int = 16, seed: int = 0) -> torch.Tensor:
    """Audio [B, 1, samples], one clip per prompt: the toolkit-style generate call the wrapper goes around."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(prompts), hop, samples // hop, generator=gen)
    ids = model.prompt_ids(list(prompts))
    ts = torch.linspace(0.999, 0.0, steps + 1)
    for t, t_next in zip(ts[:-1], ts[1:]):
        a, s = math.cos(0.5 * math.pi * t), math.sin(0.5 * math.pi * t)
        eps = model(x, t.repeat(len(prompts)), ids)
        x0 = ((x - s * eps) / a).clamp(-1, 1)
        x = math.cos(0.5 * math.pi * t_next) * x0 + math.sin(0.5 * math.pi * t_next) * eps
    return unpatchify(x, 1).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--prompt", default="")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    adapter = load(args.model_dir / "model.safetensors")
    audio = sample(adapter.model, [args.prompt], samples=2 * adapter.default_segment_samples(), seed=args.seed)
    sf.write(str(args.out), audio[0, 0].numpy(), adapter.sample_rate)


if __name__ == "__main__":
    main()
