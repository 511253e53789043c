"""The ModelAdapter protocol: the whole model-specific part of attribution.

An adapter wraps one model of one toolkit. The core never imports a toolkit; it asks the adapter to
encode audio into the model's training representation, to build conditioning, and for the per-sample
training loss under explicit draws. Everything else (baseline cache, Fisher, unlearning, scoring,
prefilter, credits) is toolkit-agnostic.

Loss contract: :meth:`ModelAdapter.loss` returns a tensor of shape [B, D], float32, one value per
(sample, draw), each the model's own training objective for that sample reduced by a *mean* over the
unmasked elements of that sample alone, with no reduction over the batch and no dependence on other
samples in the batch. Masked-out frames (padding, silence) do not contribute.

Token models (audiocraft) encode to integer codes [B, K, T]; the core only stores, slices and passes
them back. Such an adapter may also offer ``continuous(encoded) -> [B, C, T] float`` (the codes'
embeddings), which the ``latent_stats`` embedder uses instead of the raw representation.

An adapter may also offer ``prediction(encoded, cond, draws) -> [B, D, ...] float``: the network's output
under the same draws as :meth:`ModelAdapter.loss` (what the objective compares with its target). The
output-change score (``tda eval``'s ``output_change``, after DAS) needs it; diffusion adapters offer it.

An adapter whose loss has no randomness at all (MusicGen's teacher-forced cross-entropy) sets
``draw_free = True``: every draw would repeat the same value, so :func:`loss_draws` keeps one, and indexes
and scoring pay for one forward row per segment instead of one per draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .randomness import Draws


def loss_draws(adapter: object, draws: int) -> int:
    """Draws worth computing for ``adapter``: one when its loss ignores them (``draw_free``), else ``draws``."""
    return 1 if getattr(adapter, "draw_free", False) else draws


@dataclass(frozen=True)
class Conditioning:
    """What the model was (or is) conditioned on for one example.

    ``unconditional``: condition this example on the model's own null conditioning, the branch that
    classifier-free guidance uses (and that training with condition dropout teaches), instead of its
    prompt. A copy found in the wild has no prompt; scoring it and the training segments alike under
    the null branch keeps their losses comparable (docs/method.md, "Unconditional attribution").
    Adapters that offer this set ``supports_unconditional = True``.
    """

    prompt: str | None
    start_s: float = 0.0
    total_s: float = 0.0
    #: condition on the model's null branch (classifier-free guidance's) instead of the prompt, where the
    #: adapter sets ``supports_unconditional``
    unconditional: bool = False


@runtime_checkable
class ModelAdapter(Protocol):
    """One loaded model of one toolkit, seen through what attribution needs."""

    #: adapter name as registered with the plugin manager (e.g. "stable-audio")
    name: str
    #: sample rate and channel count the model's audio representation expects
    sample_rate: int
    channels: int
    #: hash of the model's config and checkpoint; indexes record it and refuse other models
    fingerprint: str

    @property
    def module(self) -> torch.nn.Module:
        """The torch module whose named parameters :meth:`parameter_groups` refers to."""

    @property
    def device(self) -> torch.device: ...

    def default_segment_samples(self) -> int:
        """A segment length in samples that the model trains on (adapters round to what encodes cleanly)."""

    def valid_segment_samples(self, samples: int) -> int:
        """The nearest length <= ``samples`` that the model can encode without padding."""

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [B, channels, S] at ``sample_rate`` -> training representation [B, ...], deterministically."""

    def frame_mask(self, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
        """Map a [B, S] keep-mask over audio samples to a [B, frames] keep-mask over encoded frames."""

    def condition(self, conditioning: list[Conditioning]) -> Any:
        """Build the model's conditioning for a batch; passed back to :meth:`loss` unchanged.

        Each example's conditioning must depend on that example alone (not on its batch mates), and
        an example with ``unconditional=True`` gets the model's null conditioning (when the adapter
        sets ``supports_unconditional``)."""

    def loss(self, encoded: torch.Tensor, cond: Any, draws: Draws, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-(sample, draw) training loss [B, D] (see the module docstring for the exact contract)."""

    def features(self, encoded: torch.Tensor, cond: Any, draws: Draws) -> torch.Tensor:
        """Pooled internal activations [B, E] used by the "activations" embedder."""

    def parameter_groups(self) -> dict[str, list[str]]:
        """Named parameter subsets that unlearning may touch, e.g. {"blocks": [...], "cross_attn": [...]}."""

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        """Training representation -> audio [B, channels, S] (for reports and generation)."""
