"""The first credit's bootstrap over the loss draws (tda_plugin/stability.py): its rule against build_credits, its
known answers, and what an attribution records."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tda_plugin import Attributor, AttributeSettings, UnlearnSettings
from tda_plugin.credits import build_credits
from tda_plugin.index.catalog_db import SegmentRow, TrackRow
from tda_plugin.stability import BAND, estimable, first_shares, settled, stratified_picks

from .conftest import SEGMENT, SR


def _catalogue(track_ids: list[int], artist_of: dict[int, str]) -> tuple[dict[int, SegmentRow], dict[int, TrackRow]]:
    tracks = {t: TrackRow(track_id=t, path=f"{t}.wav", resolved=f"{t}.wav", title=str(t), artist=artist_of[t], license="",
                          caption=None, duration_s=1.0) for t in set(track_ids)}
    segments = {i: SegmentRow(segment_id=i, track_id=t, seg_index=0, start_s=0.0, end_s=1.0, shard=0)
                for i, t in enumerate(track_ids)}
    return segments, tracks


@pytest.mark.parametrize("rule", ["max", "sum"])
@pytest.mark.parametrize("ties", [True, False])
def test_each_resample_credits_as_build_credits_does(rule: str, ties: bool) -> None:
    """The vectorised rules equal build_credits run on every resample (same picks), negatives and (for tracks) ties
    included; artists are compared without ties, where summing shares or scores could round them apart."""
    rng = np.random.default_rng(1)
    draws, resamples, top = 20, 200, 4
    track_ids = [3, 3, 1, 2, 2, 5, 1, 4]
    artist_of = {1: "b", 2: "a", 3: "b", 4: "c", 5: "a"}
    change = torch.tensor(rng.normal(0.0, 1.0, (len(track_ids), draws)))
    factor = torch.tensor(rng.uniform(0.5, 2.0, len(track_ids)))
    if ties:  # real ties in every resample: segments of other tracks with the very same per-draw changes
        change[4], change[6], change[7] = change[0], change[0], change[2]
        factor = torch.ones(len(track_ids))
    segments, tracks = _catalogue(track_ids, artist_of)
    first_tracks, first_artists = first_shares(change, factor, track_ids, artist_of, top, rule, seed=7,
                                               resamples=resamples)
    picks = stratified_picks(draws, resamples, seed=7)
    expected_tracks: dict[int, float] = {}
    expected_artists: dict[str, float] = {}
    for row in picks:
        score = change.double()[:, row].mean(dim=1) * factor.double()
        ranked = sorted(enumerate(score.tolist()), key=lambda kv: (-kv[1], kv[0]))
        _, credits, artists = build_credits(ranked, segments, tracks, top, rule)
        if credits:
            expected_tracks[credits[0]["track_id"]] = expected_tracks.get(credits[0]["track_id"], 0) + 1 / resamples
            expected_artists[artists[0]["artist"]] = expected_artists.get(artists[0]["artist"], 0) + 1 / resamples
    assert first_tracks == pytest.approx(expected_tracks)
    if not ties or rule == "max":  # summed shares of tied artists can round apart; maxima cannot
        assert first_artists == pytest.approx(expected_artists)


def test_resamples_keep_the_timestep_strata() -> None:
    picks = stratified_picks(64, 500, seed=3)
    band = torch.arange(64) // BAND
    assert torch.equal(band[picks], band.expand(500, 64))  # every draw is replaced by one of its own band
    assert len(set(picks[:, 0].tolist())) > 1  # and the bands are resampled
    assert torch.equal(picks, stratified_picks(64, 500, seed=3))
    small = stratified_picks(6, 2000, seed=0)  # fewer than 2 bands' worth: the plain bootstrap
    assert set(small.flatten().tolist()) == set(range(6))


def test_one_draw_is_not_estimable() -> None:
    assert not estimable(1) and estimable(2)
    assert first_shares(torch.ones(3, 1), torch.ones(3), [1, 2, 2], {1: "x", 2: "y"}, 10, "max", seed=0) == ({}, {})


def test_known_answers() -> None:
    steady = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0], [1.5, 1.5, 1.5, 1.5]])
    one_each = {1: "x", 2: "y"}
    assert first_shares(steady, torch.ones(3), [1, 2, 2], one_each, 10, "max", seed=0) == ({1: 1.0}, {"x": 1.0})
    assert first_shares(steady, torch.ones(3), [1, 2, 2], one_each, 10, "sum", seed=0) == ({2: 1.0}, {"y": 1.0})
    # an artist sums its tracks: two tracks of 1 and 1.5 outweigh another artist's single 2 even under "max"
    assert first_shares(steady, torch.ones(3), [1, 2, 3], {1: "x", 2: "y", 3: "y"}, 10, "max", seed=0) == \
        ({1: 1.0}, {"y": 1.0})
    assert first_shares(-steady, torch.ones(3), [1, 2, 2], one_each, 10, "max", seed=0) == ({}, {})  # nothing positive
    # draw 0 puts track 1 far ahead, draw 1 far behind: track 1 is first only in resamples that pick draw 0 twice
    coin = torch.tensor([[10.0, -10.0], [0.5, 0.5]])
    tracks, artists = first_shares(coin, torch.ones(2), [1, 2], one_each, 10, "max", seed=0, resamples=4000)
    assert tracks[1] == pytest.approx(0.25, abs=0.03) and tracks[2] == pytest.approx(0.75, abs=0.03)
    assert artists == {"x": tracks[1], "y": tracks[2]}
    assert first_shares(coin, torch.ones(2), [1, 2], one_each, 10, "max", seed=0, resamples=4000) == (tracks, artists)
    assert settled([{"first_share": 0.9}]) and not settled([{"first_share": 0.89}]) and not settled([])


def test_attribution_records_how_settled_its_first_credit_is(tiny_index: Path, tiny_catalogue: Path) -> None:
    from tda_plugin.audio import load as load_audio

    query = load_audio(tiny_catalogue / "audio" / "t1.wav")[0][:, :SEGMENT]
    att = Attributor.from_index(tiny_index)
    settings = AttributeSettings(UnlearnSettings(unlearn_draws=4, alpha=1e-7), candidates="all", top=5,
                                 conditioning="prompt")  # every segment's changes: the prompted scorer, ungated
    result = att.attribute(query, SR, prompt="high beep", settings=settings).to_dict()
    assert result["method"]["stability"]["resamples"] == 1000 and result["method"]["stability"]["settled_at"] == 0.9
    for section in ("credits", "artists"):
        shares = [c["first_share"] for c in result[section]]
        assert all(0.0 <= s <= 1.0 for s in shares) and sum(shares) <= 1.0 + 1e-9
    # the first credit's share is what the bootstrap of the same loss changes says (the full data put it first)
    ids = sorted(att.index.segments)
    names, delta, _, _ = att.forget(att.encode_query(query, SR, "high beep", True), settings.unlearn)
    change = att.loss_changes(ids, names, delta, 64)
    factor = att.normalised(ids, torch.ones(len(ids)), settings.unlearn)
    tracks, artists = first_shares(change, factor, [att.index.segments[i].track_id for i in ids],
                                   {t: row.artist for t, row in att.index.tracks.items()}, 5, "max", seed=0)
    assert result["credits"][0]["first_share"] == pytest.approx(tracks[result["credits"][0]["track_id"]])
    assert result["artists"][0]["first_share"] == pytest.approx(artists[result["artists"][0]["artist"]])


def test_threshold_calibration_counts_both_directions_and_picks_the_smallest_clean_threshold() -> None:
    """bench/settled_threshold.py: a flag counts against the other seed's answer, in both directions."""
    from bench.settled_threshold import choose, sweep

    a = [{"track": (1, 0.97), "artist": ("x", 1.0)}, {"track": (2, 0.7), "artist": ("y", 0.92)}]
    b = [{"track": (1, 0.8), "artist": ("x", 1.0)}, {"track": (3, 0.6), "artist": ("y", 0.95)}]
    rows = {r["threshold"]: r for r in sweep(a, b)}
    # at 0.65 the second query's track is flagged on a (0.7) but b put another track first
    assert rows[0.65]["track"] == {"flagged": 3, "held": 2, "of": 4, "lower_95": rows[0.65]["track"]["lower_95"]}
    assert rows[0.75]["track"]["flagged"] == 2 and rows[0.75]["track"]["held"] == 2
    assert rows[0.9]["artist"]["flagged"] == 4 and rows[0.9]["artist"]["held"] == 4
    assert choose(list(rows.values())) == 0.75  # at 0.70 the 0.7 flag still fails
