"""Train a demo model that ships in the repository: ``python -m tda_plugin.demo.ship [--adapter audiocraft]``.

The shipped model is what ``make demo`` and the tests that need a trained model use, so that what the demo
shows does not depend on how busy the machine is. It is the demo recipe run once, for its fixed step
budgets, on the synthetic catalogue of seed 0: the autoencoder (:data:`.stable_audio_autoencoder.RECIPE`)
and then the DiT (:data:`.stable_audio_demo.DIT_STEPS`). ``tda demo --train`` runs the same recipe.
``TRAINING.md`` beside the weights records the recipe, the versions and the time it took.

``--adapter audiocraft`` does the same for the MusicGen-architecture demo model
(:data:`.audiocraft_demo.RECIPE`: EnCodec, then the LM), written to ``adapters/audiocraft_demo_model/``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import torch

from ..adapters import audiocraft_demo
from ..adapters import stable_audio_autoencoder as autoencoder
from ..adapters.stable_audio_demo import DIT_STEPS, SHIPPED, train_demo_model
from ..atomic import atomic_path
from ..catalog import Track, read_catalog
from .synth import synthesise_catalogue


@contextmanager
def synthetic_tracks(seed: int) -> Iterator[list[Track]]:
    """The seed's synthetic catalogue, in a folder that lives as long as the context (what the shipped models train on)."""
    with tempfile.TemporaryDirectory() as tmp:
        synthesise_catalogue(Path(tmp) / "catalogue", seed=seed)
        yield read_catalog(Path(tmp) / "catalogue")


def ship(out: Path = SHIPPED, *, seed: int = 0) -> Path:
    """Train the demo model on the seed's synthetic catalogue and write it, with TRAINING.md, to ``out``."""
    start = time.monotonic()
    with synthetic_tracks(seed) as tracks:
        _, config = train_demo_model(tracks, out, seed=seed)
        key = autoencoder.fingerprint(tracks, int(json.loads(config.read_text())["sample_rate"]))
    write_training_note(out, seed=seed, seconds=time.monotonic() - start, fingerprint=key)
    return out


def write_training_note(out: Path, *, seed: int, seconds: float, fingerprint: str) -> Path:
    """TRAINING.md: how the shipped weights were made, so anyone can make them again."""
    text = f"""# The shipped demo model

`model.safetensors` + `model_config.json`: a stable-audio-tools `diffusion_cond` DiT over a trained Oobleck
autoencoder (`adapters/stable_audio_autoencoder.py`), trained on the synthetic catalogue of
`tda_plugin/demo/synth.py` (seed {seed}: 8 artists, 24 tracks, 8 kHz mono). It is what `make demo` and the
tests that need a trained model use. Made with:

    make demo-model        # = .venv/bin/python -m tda_plugin.demo.ship

- autoencoder: {json.dumps(autoencoder.RECIPE)}
- DiT: {DIT_STEPS} steps, batch 8, 2 draws per crop, AdamW lr 1e-3 (100-step warm-up), gradient clip 1.0,
  classifier-free-guidance dropout 0.1, seed {seed}
- catalogue fingerprint (tracks + sample rate + autoencoder recipe): `{fingerprint}`; the checkpoint's
  metadata records it, and the demo uses the shipped model only when its catalogue has this fingerprint
- torch {version("torch")}, stable-audio-tools {version("stable-audio-tools")}, {platform.machine()},
  {torch.get_num_threads()} threads: {seconds / 60:.0f} minutes in all

Training is deterministic on one machine for a given seed and step budget; another CPU or torch build may
round differently, so a retrained model is equivalent, not bit-identical.
"""
    path = out / "TRAINING.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def ship_audiocraft(out: Path = audiocraft_demo.SHIPPED, *, seed: int = 0) -> Path:
    """Train the audiocraft demo model on the seed's synthetic catalogue and write it, with TRAINING.md, to ``out``."""
    start = time.monotonic()
    with synthetic_tracks(seed) as tracks:
        audiocraft_demo.train_demo_model(tracks, out, seed=seed)
    key = audiocraft_demo.checkpoint_fingerprint(out)  # what train_demo_model recorded
    assert key is not None
    write_audiocraft_note(out, seed=seed, seconds=time.monotonic() - start, fingerprint=key)
    return out


def write_audiocraft_note(out: Path, *, seed: int, seconds: float, fingerprint: str) -> Path:
    """TRAINING.md for the audiocraft demo model: how it was made, so anyone can make it again."""
    recipe = audiocraft_demo.RECIPE
    text = f"""# The shipped audiocraft demo model

`state_dict.bin` + `compression_state_dict.bin`: a MusicGen-architecture model exported as audiocraft's
`utils/export.py` does (loadable with `audiocraft.models.loaders`), built by audiocraft's builders
(`adapters/audiocraft_demo.py`): an EnCodec (SEANet + RVQ, 8 kHz mono, 50 Hz, 4 codebooks of 64 codes) and a
transformer LM with the delay pattern and a `lut` prompt conditioner, trained on the synthetic catalogue of
`tda_plugin/demo/synth.py` (seed {seed}: 8 artists, 24 tracks). `tda demo --adapter audiocraft` uses it.
Made with:

    make demo-model-audiocraft        # = .venv/bin/python -m tda_plugin.demo.ship --adapter audiocraft

- EnCodec: SEANet {json.dumps(recipe["codec"])}, trained {json.dumps(recipe["codec_training"])}: L1 + multi-scale
  mel (scales 2^{recipe["codec_training"]["mel_scales"][0]}..2^{recipe["codec_training"]["mel_scales"][1] - 1}) +
  commitment, Adam betas (0.5, 0.9), batch 8 crops of 2 s; the RVQ's kmeans init and dead-code expiry
- LM: {json.dumps(recipe["lm"])}, trained {json.dumps(recipe["lm_training"])}: MusicGen's cross-entropy on
  2 s crops of the frozen codes, classifier-free-guidance dropout 0.1, AdamW betas (0.9, 0.95), 50-step
  warm-up, gradient clip 1.0, seed {seed}
- catalogue fingerprint (recipe + seed + tracks): `{fingerprint}`; `state_dict.bin` records it under
  `tda_demo`, and the demo uses the shipped model only when its catalogue and recipe have this fingerprint
- torch {version("torch")}, audiocraft {version("audiocraft")}, {platform.machine()},
  {torch.get_num_threads()} thread(s): {seconds / 60:.0f} minutes in all

Training is deterministic on one machine for a given seed, step budget and thread count; another CPU,
torch build or thread count rounds differently, so a retrained model is equivalent, not bit-identical.
"""
    path = out / "TRAINING.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


SHIPPERS = {"stable-audio": (ship, SHIPPED), "audiocraft": (ship_audiocraft, audiocraft_demo.SHIPPED)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", choices=sorted(SHIPPERS), default="stable-audio")
    parser.add_argument("--out", type=Path, default=None, help="default: the adapter's shipped-model folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, default_out = SHIPPERS[args.adapter]
    print(train(args.out or default_out, seed=args.seed))
