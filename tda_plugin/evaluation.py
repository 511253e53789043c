"""Behavioural checks against known answers (docs/design.md, "Ground truths"), shared by tests, bench/ and `tda eval`.

* self: a training segment cut out of its track must rank itself first;
* planted copies: the segment with 20 dB SNR noise (:func:`add_noise`; bench/edits.py adds a pitch shift) must
  credit its source track first;
* prompt swap: a segment's audio under another style's prompt: do the credits follow the audio or the prompt?

The generated-clip check (clips generated with a style's prompt must credit that style's artist most) is
bench/behaviour.py's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .attributor import AttributionResult, Attributor
from .credits import TRACK_CREDITS, build_credits
from .settings import AttributeSettings

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
#: a result's (credits, artists) sections
Credited = tuple[list[dict], list[dict]]


def add_noise(x: np.ndarray, sr: int, rng: np.random.Generator, snr_db: float = 20.0) -> np.ndarray:
    noise = rng.standard_normal(x.shape).astype(np.float32)
    gain = np.sqrt(np.mean(x**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (x + gain * noise).astype(np.float32)


@dataclass
class CheckOutcome:
    name: str
    hits: int = 0
    total: int = 0
    ranks: list[int] = field(default_factory=list)
    #: (first-ranked segment id, the query's source track id) per query, where the check has a source
    tops: list[tuple[int, int]] = field(default_factory=list)
    #: hits had the credits gathered each track's segments by each rule (credits.TRACK_CREDITS), from the same scores
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"check": self.name, "hits": self.hits, "total": self.total, "rate": round(self.rate, 4)}
        if self.ranks:
            out["mean_rank"] = round(float(np.mean(self.ranks)), 3)
        if self.by_rule:
            out["hits_by_track_credit"] = dict(self.by_rule)
        return out

    def count(self, result: AttributionResult, by_rule: dict[str, Credited],
              hit: Callable[[list[dict], list[dict]], bool]) -> None:
        """One more query: ``hit(credits, artists)`` as the result says, and as each track-credit rule would have
        said from the same scores (``by_rule``: :func:`credits_by_rule` of the result)."""
        self.total += 1
        self.hits += hit(result.credits, result.artists)
        for rule, credited in by_rule.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + hit(*credited)


def credits_by_rule(att: Attributor, result: AttributionResult) -> dict[str, Credited]:
    """(credits, artists) of ``result``'s scores under each track-credit rule."""
    ranked = sorted(result.scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return {rule: build_credits(ranked, att.index.segments, att.index.tracks, len(result.segments), rule)[1:]
            for rule in TRACK_CREDITS}


def spread_segments(att: Attributor, count: int) -> list[int]:
    """``count`` segment ids spread evenly over the catalogue (every track order, every position)."""
    ids = sorted(att.index.segments)
    step = max(1, len(ids) // count)
    return ids[::step][:count]


def segment_audio(att: Attributor, segment_id: int) -> np.ndarray:
    return att.index.segment_audio(segment_id)


def segment_checks(att: Attributor, ids: list[int], settings: AttributeSettings, transforms: dict[str, Transform | None],
                   seed: int = 0, with_prompt: bool = True) -> list[CheckOutcome]:
    """For each segment and transform: attribute the (transformed) cut-out with the segment's own conditioning,
    or, ``with_prompt=False``, as a copy found in the wild: no prompt and no timing (``settings.conditioning``
    then decides how it is scored; "auto" scores it on the null branch, ``settings.BRANCHES``).

    "self" (no transform) counts rank-1 of the segment itself; the others count the source track credited first
    (also under each track-credit rule). Every outcome records the source segment's own rank, and which segment
    came first (``top``), so hub segments show (:func:`hub`).
    """
    rng = np.random.default_rng(seed)
    outcomes = {name: CheckOutcome(name) for name in transforms}
    sr = att.index.meta.sample_rate
    for sid in ids:
        seg = att.index.segments[sid]
        track = att.index.tracks[seg.track_id]
        clip = segment_audio(att, sid)
        for name, transform in transforms.items():
            query = clip if transform is None else transform(clip, sr, rng)
            if with_prompt:
                result = att.attribute(query, sr, prompt=track.caption, settings=settings,
                                       seconds_start=seg.start_s, seconds_total=track.duration_s)
            else:
                result = att.attribute(query, sr, prompt=None, settings=settings)
            ranked = sorted(result.scores, key=lambda k: (-result.scores[k], k))
            out = outcomes[name]
            out.tops.append((ranked[0], seg.track_id))
            out.ranks.append(ranked.index(sid) + 1 if sid in result.scores else len(ranked) + 1)  # the source's own rank
            if transform is None:
                out.total += 1
                out.hits += ranked[0] == sid
            else:
                out.count(result, credits_by_rule(att, result),
                          lambda credits, _, t=seg.track_id: bool(credits) and credits[0]["track_id"] == t)
    return list(outcomes.values())


def latent_neighbour_checks(att: Attributor, ids: list[int], transforms: dict[str, Transform | None],
                            seed: int = 0) -> list[CheckOutcome]:
    """The same probes as :func:`segment_checks` (same order, same noise), answered by no attribution at all: is
    the probe's encoded representation nearest its source segment's (L2 over latents; for a token model's codes,
    the number of differing tokens)? This says how far an edit moved the copy in the space the model's loss is
    computed in, so a failed check can be laid at the method's door or at the representation's."""
    rng = np.random.default_rng(seed)
    sr = att.index.meta.sample_rate
    all_ids = sorted(att.index.segments)
    catalogue = att.index.gather(all_ids, "latents").flatten(1)  # as the build encoded them
    outcomes = {name: CheckOutcome(f"{name.split(':')[0]}: nearest its source segment in the model's latent space")
                for name, transform in transforms.items() if transform is not None}
    for sid in ids:
        clip = segment_audio(att, sid)
        for name, transform in transforms.items():
            if transform is None:  # a segment is its own nearest neighbour: nothing to learn
                continue
            query = transform(clip, sr, rng)
            with torch.no_grad():
                z = att.adapter.encode(torch.from_numpy(query)[None]).flatten(1)
            tokens = not torch.is_floating_point(z)
            distance = (catalogue != z).sum(dim=1) if tokens else (catalogue.float() - z.float()).norm(dim=1)
            rank = int((distance < distance[all_ids.index(sid)]).sum()) + 1
            out = outcomes[name]
            out.total += 1
            out.ranks.append(rank)
            out.hits += rank == 1
    return list(outcomes.values())


def prompt_swap_check(att: Attributor, ids: list[int], settings: AttributeSettings) -> tuple[CheckOutcome, CheckOutcome]:
    """Audio of one style, prompt of another (the prompt-steering trap, docs/design.md): do credits follow the audio or the prompt?

    Returns (source artist credited first, prompted artist credited first).
    """
    captions = sorted({t.caption for t in att.index.tracks.values() if t.caption})
    artist_of = {t.caption: t.artist for t in att.index.tracks.values()}
    audio_first, prompt_first = CheckOutcome("prompt swap: audio's artist first"), CheckOutcome("prompt swap: prompt's artist first")
    sr = att.index.meta.sample_rate
    for sid in ids:
        seg = att.index.segments[sid]
        track = att.index.tracks[seg.track_id]
        other = captions[(captions.index(track.caption) + 1) % len(captions)]
        result = att.attribute(segment_audio(att, sid), sr, prompt=other, settings=settings,
                               seconds_start=seg.start_s, seconds_total=track.duration_s)
        by_rule = credits_by_rule(att, result)
        for out, artist in ((audio_first, track.artist), (prompt_first, artist_of[other])):
            out.count(result, by_rule, lambda _, artists, a=artist: bool(artists) and artists[0]["artist"] == a)
    return audio_first, prompt_first
