"""Built-in prefilter embedders, registered through the ``tda_embedders`` hook like any plugin.

* ``activations``: pooled DiT/transformer activations of the model itself under the fixed draws
  (white-box embeddings track unlearning scores better than audio similarity, Choi et al. 2025);
* ``latent_stats``: per-channel mean and standard deviation of the training representation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

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


@hookimpl
def tda_embedders() -> list[EmbedderSpec]:
    return [
        EmbedderSpec("activations", "pooled transformer activations of the model under fixed draws", activations),
        EmbedderSpec("latent_stats", "per-channel mean/std of the model's training representation", latent_stats),
    ]
