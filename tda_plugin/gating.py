"""The gated conditioning: the segments a clip's *audio* points to, credited by its *prompt* (docs/method.md).

A conditioning enters a score twice, in the clip's unlearning step and in the segments' losses. On the behaviour
probes (docs/experiments/prompt-swap-and-branches.md) a step on the model's null branch (``audio``) decided
*which* material a clip holds, and a wrong prompt could not move it, while the step under the clip's own prompt
(``prompt``) ordered that material best. The gate takes both: the ``keep`` segments the audio ranks best (the credits' own top), each credited by its
prompted score where that is positive, nothing for the rest. ``tda attribute --conditioning gated`` and the
experiments' ``unlearning`` method (the default, derived) share these two functions, so what is measured is what runs.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .shortlist import top_ids


def kept(ids: Sequence[int], audio: torch.Tensor, keep: int) -> list[int]:
    """The ``keep`` ids the audio's scores rank best, ties by id (the order attribution reports)."""
    return top_ids(ids, audio, keep)


def credited(prompted: torch.Tensor) -> torch.Tensor:
    """The gated score of the kept segments: their prompted score where positive, else 0 (a segment forgetting the
    clip did not make worse earns nothing, as in :mod:`.credits`)."""
    return prompted.clamp(min=0)
