"""Train a tiny-conv model on a tda catalogue: ``python -m tda_example_plugin.train CORPUS OUT [--steps N]``."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tda_plugin import audio as audio_io
from tda_plugin.catalog import read_catalog

from .adapter import save
from .model import TinyConv, noised, patchify


def train(corpus: Path, out_dir: Path, *, steps: int = 200, sample_rate: int = 8000, segment_samples: int = 4096,
          seed: int = 0) -> Path:
    """Fit the model to random segments of the catalogue's tracks with their captions; returns the checkpoint."""
    tracks = read_catalog(corpus)
    prompts = sorted({t.caption for t in tracks if t.caption})
    config = {"model_type": "tiny_conv", "sample_rate": sample_rate, "channels": 1, "hop": 32, "hidden": 64,
              "depth": 2, "segment_samples": segment_samples, "prompts": prompts}
    audio = [audio_io.conform(*audio_io.load(t.resolved), sample_rate, 1)[0] for t in tracks]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinyConv(config)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        picks = rng.integers(len(tracks), size=8)
        starts = [rng.integers(audio[k].shape[1] - segment_samples + 1) for k in picks]
        x0 = patchify(torch.from_numpy(np.stack([audio[k][:, s:s + segment_samples] for k, s in zip(picks, starts)])), 32)
        t, noise = torch.rand(len(picks)), torch.randn_like(x0)
        ids = model.prompt_ids([tracks[k].caption for k in picks])
        loss = (model(noised(x0, t, noise), t, ids) - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save(model, config, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(train(args.corpus, args.out, steps=args.steps, seed=args.seed))


if __name__ == "__main__":
    main()
