"""Train the stable-audio demo model that ships in the repository: ``python -m tda_plugin.demo.ship``.

The shipped model is what ``make demo`` and the tests that need a trained model use, so that what the demo
shows does not depend on how busy the machine is. It is the demo recipe run once, for its fixed step
budgets, on the synthetic catalogue of seed 0: the autoencoder (:data:`.stable_audio_autoencoder.RECIPE`)
and then the DiT (:data:`.stable_audio_demo.DIT_STEPS`). ``tda demo --train`` runs the same recipe.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..adapters.stable_audio_demo import SHIPPED, train_demo_model
from ..catalog import read_catalog
from .synth import synthesise_catalogue


def ship(out: Path = SHIPPED, *, seed: int = 0) -> Path:
    """Train the demo model on the seed's synthetic catalogue and write it to ``out``; returns ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        synthesise_catalogue(Path(tmp) / "catalogue", seed=seed)
        train_demo_model(read_catalog(Path(tmp) / "catalogue"), out, seed=seed)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(ship(args.out, seed=args.seed))
