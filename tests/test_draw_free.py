"""An adapter whose loss ignores its draws (``draw_free``, MusicGen's) is run and estimated at one row per segment."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from cli.estimate import estimate
from tda_plugin.adapter import Conditioning, loss_draws
from tda_plugin.randomness import Draws
from tda_plugin.scoring import losses
from tda_plugin.settings import AttributeSettings


class CountingAdapter:
    """A loss of the segment alone ([B, D], the same in every draw unless ``drawn``) that records each call's rows."""

    device = torch.device("cpu")

    def __init__(self, draw_free: bool) -> None:
        self.draw_free = draw_free
        self.calls: list[tuple[int, int]] = []

    def condition(self, conditioning: list[Conditioning]) -> list[Conditioning]:
        return conditioning

    def loss(self, encoded: torch.Tensor, cond: list[Conditioning], draws: Draws, mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((encoded.shape[0], draws.count))
        return encoded.pow(2).mean(dim=(1, 2))[:, None].expand(-1, draws.count)


def test_a_draw_free_loss_runs_one_row_per_segment_with_the_same_values() -> None:
    encoded = torch.randn(10, 3, 5)
    conds, streams = [Conditioning("p")] * 10, [f"s{i}" for i in range(10)]
    free, drawn = CountingAdapter(True), CountingAdapter(False)
    a = losses(free, encoded, conds, streams, seed=0, draws=16, batch_size=32)
    b = losses(drawn, encoded, conds, streams, seed=0, draws=16, batch_size=32)
    assert a.shape == b.shape == (10, 16) and torch.equal(a, b)
    assert free.calls == [(10, 1)]  # every segment in one forward of one draw
    assert drawn.calls == [(2, 16)] * 5  # 32 rows per forward: two segments of 16 draws
    sub = losses(free, encoded, conds, streams, seed=0, draws=16, batch_size=32, subset=[0, 5, 9])
    assert torch.equal(sub, a[:, :3])
    assert loss_draws(free, 64) == 1 and loss_draws(drawn, 64) == 64 and loss_draws(object(), 64) == 64


def test_the_estimate_counts_one_row_where_a_draw_free_loss_runs_one() -> None:
    meta = SimpleNamespace(segment_seconds=2.0, settings={"draws": 64})
    index = SimpleNamespace(meta=meta, segments=dict.fromkeys(range(100)))
    settings = AttributeSettings(candidates="all")
    free = estimate(SimpleNamespace(index=index, adapter=CountingAdapter(True)), 4.0, settings, 1.0)
    drawn = estimate(SimpleNamespace(index=index, adapter=CountingAdapter(False)), 4.0, settings, 1.0)
    assert free.windows == drawn.windows == 2
    assert free.unlearn_s * settings.unlearn.unlearn_draws == drawn.unlearn_s > 0
    assert free.score_s * 64 == drawn.score_s == 100 * 64
