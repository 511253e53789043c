"""How much of a clip's first credit is the method's own random numbers: a bootstrap over the loss draws.

Every score averages a segment's loss change over the index's D fixed draws (timestep and noise), so a
second index seed, with other draws, can put another track first (docs/experiments/second-seed.md: 3 of 8 generated demo
clips at 16 draws, though never another artist). Resampling those D per-draw changes with replacement, and
crediting each resample by the credits' own rules, says how often each track and each artist would have come
first had the draws been others; it costs one small matrix product, not another scoring pass. Measured
against a second seed on 40 queries of two models: every first track (23) and every first artist (35) that
was first in at least :data:`SETTLED` of the resamples came first under the second seed too; every
disagreement between the seeds lay below it; on held-out queries at 64 draws, every flagged first credit held
(artists 32/32, tracks 25/25, both seeds' flags; docs/experiments/settled-flag.md). The
bootstrap sees the scoring draws only, not the query's unlearning draws, so it can say that a credit is
unsettled, never that one is right.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .credits import TrackCredit

#: bootstrap resamples of the draws
RESAMPLES = 1000
#: share of resamples from which a first credit is read as settled (the calibration above)
SETTLED = 0.9
#: draws resampled together: the D draws' timesteps are stratified, one per stratum of (0, 1) in draw order
#: (tda_plugin/randomness.py), so each resample draws with replacement within bands of this many consecutive
#: strata and keeps the index's spread over the noise schedule (a plain bootstrap could pile its draws on one end)
BAND = 8


def estimable(draws: int) -> bool:
    """Whether resampling ``draws`` draws can say anything: with one draw every resample is the result itself."""
    return draws >= 2


def stratified_picks(draws: int, resamples: int, seed: int) -> torch.Tensor:
    """[resamples, draws] draw indices: resample r's draw j is drawn with replacement from j's band of :data:`BAND`
    consecutive strata (one band when there are fewer than 2 × BAND draws). Deterministic for a seed."""
    bands = max(1, draws // BAND)
    band_of = torch.arange(draws) * bands // draws
    gen = torch.Generator().manual_seed(int(seed))
    picks = torch.empty(resamples, draws, dtype=torch.long)
    for b in range(bands):
        members = torch.nonzero(band_of == b).flatten()
        picks[:, members] = members[torch.randint(len(members), (resamples, len(members)), generator=gen)]
    return picks


def first_shares(change: torch.Tensor, factor: torch.Tensor, track_ids: Sequence[int], artist_of: Mapping[int, str],
                 top: int, track_credit: TrackCredit, seed: int, resamples: int = RESAMPLES,
                 segment_ids: Sequence[int] | None = None) -> tuple[dict[int, float], dict[str, float]]:
    """Per track and per artist, the share of bootstrap resamples of the draws in which it is credited first.

    ``change``: [n, D] per-draw loss changes of the scored segments; ``factor``: [n], what turns a mean change
    into a score (1 / sensitivity, or 1); ``track_ids``: each segment's track; ``artist_of``: each track's artist;
    ``segment_ids``: each row's segment (default: the row number), which breaks ties as the credits break them.
    Each resample credits as :func:`tda_plugin.credits.build_credits` does (the ``top`` best segments, positive
    scores, their sum or their max per track, an artist the sum of its tracks', ties to the lower track id and
    the first artist name); a resample in which no score is positive credits no one. Resamples keep the draws'
    timestep strata (:func:`stratified_picks`). Deterministic for a seed (a CPU generator), so a result is
    reproducible. Empty for fewer than two draws (:func:`estimable`): nothing can be said, and nothing is.
    """
    n, draws = change.shape
    if n == 0 or not estimable(draws):
        return {}, {}
    picks = stratified_picks(draws, resamples, seed)
    if segment_ids is not None:  # rows by segment id, so that a stable sort breaks ties by id
        rows_by_id = sorted(range(n), key=lambda j: segment_ids[j])
        change, factor = change[rows_by_id], factor[rows_by_id]
        track_ids = [track_ids[j] for j in rows_by_id]
    weights = torch.zeros(draws, resamples, dtype=torch.float64)
    weights.scatter_add_(0, picks.T, torch.full((draws, resamples), 1.0 / draws, dtype=torch.float64))
    scores = (change.detach().cpu().double() @ weights) * factor.detach().cpu().double()[:, None]  # [n, resamples]
    tracks = sorted({int(t) for t in track_ids})
    artists = sorted({artist_of[t] for t in tracks})
    # the ``top`` best rows of each resample, equal scores by row (segment id) as build_credits ranks them
    order = torch.sort(-scores, dim=0, stable=True).indices[:min(top, n)]
    best, rows = scores.gather(0, order), order
    credit = torch.zeros(len(tracks), resamples, dtype=torch.float64)
    credit.scatter_reduce_(0, torch.tensor([tracks.index(int(t)) for t in track_ids])[rows], best.clamp_min(0.0),
                           reduce="sum" if track_credit == "sum" else "amax")
    by_artist = torch.zeros(len(artists), resamples, dtype=torch.float64)
    by_artist.index_add_(0, torch.tensor([artists.index(artist_of[t]) for t in tracks]), credit)
    return _firsts(credit, tracks, resamples), _firsts(by_artist, artists, resamples)


def _firsts(credit: torch.Tensor, names: Sequence[Any], resamples: int) -> dict[Any, float]:
    """How often each row holds the column's largest positive credit (the first maximum on a tie: the order
    in which credits break ties)."""
    peak, first = credit.max(dim=0)
    counts = torch.bincount(first[peak > 0], minlength=len(names))
    return {name: float(c) / resamples for name, c in zip(names, counts.tolist()) if c}


def settled(ranked: Sequence[dict[str, Any]]) -> bool:
    """Whether the first of a result's credits (or artists) is settled: first in at least :data:`SETTLED` of the
    resamples."""
    return bool(ranked) and float(ranked[0].get("first_share", 0.0)) >= SETTLED
