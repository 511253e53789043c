"""The shortlist's two passes: a subset of draws reproduces those draws exactly, the shortlisted scores are the
exhaustive ones, and the bench's replay of a setting (bench/query_trace.py, staged_top) is what attribution reports."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.query_trace import exhaustive_top, exhaustive_trace, staged_top
from tda_plugin import Attributor, AttributeSettings, UnlearnSettings
from tda_plugin.audio import load as load_audio
from tda_plugin.index.builder import segment_conditioning
from tda_plugin.randomness import make_draws, segment_stream
from tda_plugin.recall import Query
from tda_plugin.scoring import losses
from tda_plugin.shortlist import first_pass_draws

from .conftest import SEGMENT, SR

UN = UnlearnSettings(unlearn_draws=4)


def test_first_pass_draws_spread_over_the_strata() -> None:
    assert first_pass_draws(16, 4) == [2, 6, 10, 14]
    assert first_pass_draws(16, 1) == [8] and first_pass_draws(4, 9) == [0, 1, 2, 3]


def test_a_subset_of_draws_reproduces_those_draws(tiny_index: Path) -> None:
    att = Attributor.from_index(tiny_index)
    ids = sorted(att.index.segments)[:5]
    conds = [segment_conditioning(att.index.tracks[att.index.segments[i].track_id], att.index.segments[i]) for i in ids]
    streams = [segment_stream(i) for i in ids]
    full = losses(att.adapter, att.index.gather(ids, "latents"), conds, streams, seed=0, draws=4)
    part = losses(att.adapter, att.index.gather(ids, "latents"), conds, streams, seed=0, draws=4, subset=[1, 3])
    assert torch.allclose(part, full[:, [1, 3]], rtol=1e-6, atol=1e-7)
    assert make_draws(0, ["a"], 4, [1, 3]).normal([2]).equal(make_draws(0, ["a"], 4).normal([2])[:, [1, 3]])


@pytest.fixture(scope="module")
def query(tiny_catalogue: Path) -> Query:
    data, _ = load_audio(tiny_catalogue / "audio" / "t1.wav")
    return Query("t1", data[:, :SEGMENT], SR, "high beep")


def test_shortlisted_scores_are_the_exhaustive_scores(tiny_index: Path, query: Query) -> None:
    att = Attributor.from_index(tiny_index)
    n = len(att.index.segments)
    every = att.attribute(query.audio, SR, prompt=query.prompt, settings=AttributeSettings(UN, candidates="all", conditioning="prompt"))
    short = att.attribute(query.audio, SR, prompt=query.prompt,
                          settings=AttributeSettings(UN, candidates=n, shortlist=3, shortlist_draws=2, top=3,
                                                    conditioning="prompt"))
    assert short.method["scored"] == 3 and short.method["candidates_scored"] == n and len(every.scores) == n
    for sid, score in short.scores.items():  # the same per-draw numbers, summed in another order and batching:
        # τ is a difference of float32 losses at this random model's resolution, so the last digits move with the
        # batch and the thread count (2.3e-4 relative under one thread), still far below the segments' differences
        assert score == pytest.approx(every.scores[sid], rel=1e-3)


def test_replayed_settings_report_what_attribution_reports(tiny_index: Path, query: Query) -> None:
    att = Attributor.from_index(tiny_index)
    prompted = AttributeSettings(UN, candidates="all", conditioning="prompt")  # what the trace replays: the prompted scorer
    trace = exhaustive_trace(att, query, settings=prompted, marks=[6])
    members = set(trace.ids)
    assert set(trace.seconds) == {"fixed", "scoring_6", f"scoring_{len(members)}"}
    exact = att.attribute(query.audio, SR, prompt=query.prompt, settings=replace(prompted, top=3))
    assert exhaustive_top(trace, members, k=3) == [s["segment_id"] for s in exact.segments]
    for candidates, shortlist in ((5, 2), (len(members), 3), (4, None)):
        settings = replace(prompted, candidates=candidates, shortlist=shortlist, shortlist_draws=2, top=3)
        got = att.attribute(query.audio, SR, prompt=query.prompt, settings=settings)
        assert staged_top(trace, members, candidates=candidates, shortlist=shortlist, shortlist_draws=2, k=3) == \
            [s["segment_id"] for s in got.segments]
    assert np.isfinite(trace.change).all() and trace.change.shape == (len(members), 4)
