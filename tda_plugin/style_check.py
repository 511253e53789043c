"""Has the model learned its catalogue? An independent check, with no model and no attribution in it.

Credits for a clip mean little when the model that made it has not learned its catalogue: its clips
then sound like no artist in particular (docs/design.md, "Ground truths"). This check places each generated
clip among the catalogue's own audio by a k-nearest-neighbour vote over plain audio features
(MFCC and chroma statistics, :func:`tda_plugin.embedders.audio_features`) of crops of the training
tracks, searched with FAISS. It never looks at the model or at the attribution, so "the clip sounds
like the prompted artist" and "the prompted artist is credited first" are two separate figures.

Its own accuracy is measured too (:meth:`StyleClassifier.held_out_accuracy`): each crop is placed
with every crop of its own track left out, so a classifier that only recognises recordings, not
artists, would show it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import faiss
import numpy as np

from . import audio as audio_io
from .embedders import audio_features


class CreditedAudio(Protocol):
    """A catalogue track as tracks.csv (:class:`~tda_plugin.catalog.Track`) or an index gives it."""

    @property
    def resolved(self) -> str | Path: ...

    @property
    def artist(self) -> str: ...

#: neighbours that vote
K = 5


@dataclass
class StyleClassifier:
    """Feature vectors of catalogue crops, with each crop's artist and track."""

    features: np.ndarray  # [n, F] float32
    artists: list[str]
    tracks: list[int]
    sample_rate: int

    @classmethod
    def from_tracks(cls, tracks: Sequence[CreditedAudio], sample_rate: int, crop_samples: int) -> "StyleClassifier":
        """Crops of ``crop_samples`` every half crop from every track, mono at ``sample_rate``."""
        feats, artists, ids = [], [], []
        for k, t in enumerate(tracks):
            data, sr = audio_io.load(Path(t.resolved))
            mono, _ = audio_io.conform(data, sr, sample_rate, 1)
            for start in range(0, mono.shape[1] - crop_samples + 1, max(1, crop_samples // 2)):
                feats.append(audio_features(mono[0, start:start + crop_samples], sample_rate))
                artists.append(t.artist)
                ids.append(k)
        return cls(np.stack(feats).astype(np.float32), artists, ids, sample_rate)

    def _vote(self, query: np.ndarray, exclude_track: int | None = None) -> str:
        keep = np.arange(len(self.artists)) if exclude_track is None else \
            np.flatnonzero(np.asarray(self.tracks) != exclude_track)
        index = faiss.IndexFlatL2(self.features.shape[1])
        index.add(self.features[keep])
        _, found = index.search(query[None].astype(np.float32), min(K, len(keep)))
        votes = Counter(self.artists[keep[j]] for j in found[0] if j >= 0)
        best = max(votes.values())
        # ties go to the nearest neighbour among the tied artists
        return next(self.artists[keep[j]] for j in found[0] if votes[self.artists[keep[j]]] == best)

    def predict(self, audio: np.ndarray, sample_rate: int) -> str:
        """The artist whose catalogue audio ``audio`` ([channels, samples] or [samples]) sounds most like."""
        mono, _ = audio_io.conform(np.atleast_2d(np.asarray(audio, dtype=np.float32)), sample_rate, self.sample_rate, 1)
        return self._vote(audio_features(mono[0], self.sample_rate))

    def held_out_accuracy(self) -> float:
        """Fraction of crops placed with their own artist when their whole track is left out of the vote."""
        hits = [self._vote(f, exclude_track=t) == a for f, a, t in zip(self.features, self.artists, self.tracks)]
        return float(np.mean(hits))


@dataclass(frozen=True)
class StyleFit:
    """How many generated clips sound like the artist they were prompted for."""

    hits: int
    total: int
    classifier_accuracy: float

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"hits": self.hits, "total": self.total, "rate": round(self.rate, 4),
                "classifier_held_out_accuracy": round(self.classifier_accuracy, 4)}


def style_fit(classifier: StyleClassifier, clips: Sequence[tuple[np.ndarray, int, str]]) -> StyleFit:
    """``clips``: (audio, sample rate, prompted artist) each."""
    hits = sum(classifier.predict(audio, sr) == artist for audio, sr, artist in clips)
    return StyleFit(int(hits), len(clips), classifier.held_out_accuracy())
