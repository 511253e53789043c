"""Built-in prefilter embedders, registered through the ``tda_embedders`` hook like any plugin.

* ``activations``: pooled DiT/transformer activations of the model itself under the fixed draws
  (white-box embeddings track unlearning scores better than audio similarity, Choi et al. 2025);
* ``latent_stats``: per-channel mean and standard deviation of the training representation;
* ``mfcc_chroma``: audio similarity (MFCC and chroma statistics of the decoded segment), the
  model-agnostic baseline;
* ``gradient_sketch``: a random projection of the segment's Fisher-preconditioned loss gradient
  (tda_plugin/sketch.py), whose inner product with the query's sketch is the first-order unlearning
  score itself. It needs the index's Fisher, so the builder computes it in the per-segment gradient
  pass of the sensitivity stage and the attributor from the query's unlearning step
  (:class:`GradientEmbedderSpec`), not through ``embed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import TdaError
from .hookspecs import hookimpl
from .randomness import make_draws
from .registry import EmbedderSpec

if TYPE_CHECKING:
    from .adapter import ModelAdapter

#: draws used to embed (few: embeddings only rank candidates)
EMBED_DRAWS = 2


def activations(adapter: "ModelAdapter", encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor:
    return adapter.features(encoded, cond, make_draws(seed, streams, EMBED_DRAWS)).float().cpu()


def latent_stats(adapter: "ModelAdapter", encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor:
    # token models expose their codes' continuous embeddings (statistics of code indices mean nothing)
    continuous = getattr(adapter, "continuous", None)
    x = (continuous(encoded) if continuous is not None else encoded).float().flatten(2)
    return torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1).cpu()


#: MFCCs per frame (the 0th, loudness, is left out: level says little about who made the music)
N_MFCC = 20


def audio_features(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean/std over frames of MFCCs 1..19 and of the chroma of mono audio ``y``, each block L2-normalised:
    timbre and pitch content, with no model involved (also the independent style check's features)."""
    try:
        import librosa
    except ImportError:
        raise TdaError("audio features need librosa: pip install 'tda-plugin[features]'") from None

    y = np.ascontiguousarray(y, dtype=np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=N_MFCC)[1:]
    chroma = librosa.feature.chroma_stft(y=y, sr=sample_rate, tuning=0.0)
    blocks = [mfcc.mean(axis=1), mfcc.std(axis=1), chroma.mean(axis=1), chroma.std(axis=1)]
    return np.concatenate([b / max(float(np.linalg.norm(b)), 1e-12) for b in blocks])


def mfcc_chroma(adapter: "ModelAdapter", encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor:
    """:func:`audio_features` of the decoded audio."""
    audio = adapter.decode(encoded).float().mean(dim=1).cpu().numpy()  # mono
    return torch.from_numpy(np.stack([audio_features(y, adapter.sample_rate) for y in audio])).float()


@dataclass(frozen=True)
class GradientEmbedderSpec(EmbedderSpec):
    """An embedder computed from per-segment gradients and the Fisher (see tda_plugin/sketch.py)."""


def _needs_gradients(adapter: "ModelAdapter", encoded: torch.Tensor, cond: Any, streams: list[str], seed: int) -> torch.Tensor:
    raise TdaError("the gradient sketch is computed from the index's Fisher in the gradient pass, not by embed()")


GRADIENT_SKETCH = GradientEmbedderSpec(
    "gradient_sketch", "random projection of the Fisher-preconditioned loss gradient (first-order unlearning score)",
    _needs_gradients)


def uses_gradients(spec: EmbedderSpec) -> bool:
    return isinstance(spec, GradientEmbedderSpec)


@hookimpl
def tda_embedders() -> list[EmbedderSpec]:
    return [
        GRADIENT_SKETCH,
        EmbedderSpec("activations", "pooled transformer activations of the model under fixed draws", activations),
        EmbedderSpec("latent_stats", "per-channel mean/std of the model's training representation", latent_stats),
        EmbedderSpec("mfcc_chroma", "MFCC and chroma statistics of the decoded audio", mfcc_chroma),
    ]
