"""Edits that the benches plant copies with, besides :func:`tda_plugin.evaluation.add_noise` (which the product's
`tda eval` uses too): a duration-preserving pitch shift, which needs torchaudio, a bench-only dependency."""
from __future__ import annotations

import numpy as np
import torch


def pitch_shift(x: np.ndarray, sr: int, rng: np.random.Generator, semitones: float = 1.0) -> np.ndarray:
    """Duration-preserving pitch shift (torchaudio's phase vocoder + resampling)."""
    import torchaudio.functional as AF

    y = AF.pitch_shift(torch.from_numpy(x), sr, n_steps=semitones).numpy()
    return y[..., : x.shape[-1]].astype(np.float32)
