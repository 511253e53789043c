"""Masking during scoring (Choi et al. 2025's grid axis): training segments scored on their non-silent frames only.

The index caches each segment's loss over all its frames; with scoring masks both the "before" and
the "after" loss skip the segment's silent frames (the same silence detector the query uses), so a
segment that is half silence is judged on its music. The masked baseline is computed once per run.
The sensitivities that normalise scores stay those of the index (unmasked).
"""
from __future__ import annotations

import torch

from .. import audio as audio_io
from ..attributor import Attributor
from ..evaluation import segment_audio
from ..fisher import named_parameters
from ..index.builder import segment_conditioning
from ..randomness import segment_stream
from ..scoring import losses
from ..settings import UnlearnSettings
from ..unlearn import applied
from .metrics import Scores


class MaskedScorer:
    """Exact scores of every segment with silent frames masked out of its loss."""

    def __init__(self, att: Attributor, batch_size: int = 64) -> None:
        self.att, self.batch_size = att, batch_size
        self.ids = sorted(att.index.segments)
        meta = att.index.meta
        frames = int(meta.encoded_shape[-1])
        hop = max(1, meta.segment_samples // frames)
        rows = []
        for sid in self.ids:
            wav = torch.from_numpy(segment_audio(att, sid))[None]
            rows.append(att.adapter.frame_mask(audio_io.silence_mask(wav, hop), frames)[0])
        self.masks = torch.stack(rows)
        self.baseline = self._losses()

    def _losses(self) -> torch.Tensor:
        index, meta = self.att.index, self.att.index.meta
        segs = [index.segments[i] for i in self.ids]
        return losses(self.att.adapter, index.gather(self.ids, "latents"),
                      [segment_conditioning(index.tracks[s.track_id], s) for s in segs],
                      [segment_stream(i) for i in self.ids], seed=meta.settings["seed"], draws=meta.settings["draws"],
                      batch_size=self.batch_size, masks=self.masks)

    def scores(self, names: list[str], delta: list[torch.Tensor], un: UnlearnSettings) -> Scores:
        with applied(named_parameters(self.att.adapter, names), delta):
            after = self._losses()
        tau = (after - self.baseline).mean(dim=1)
        return dict(zip(self.ids, self.att.normalised(self.ids, tau, un).tolist()))
