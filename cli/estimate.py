"""How long attributing a clip will take, said before it starts.

One forward pass over one index segment's draws is timed on the loaded model; the stages then scale
with the rows they run: unlearning ``windows × unlearn_draws × steps`` rows forward and backward (about
three forward passes' worth each), scoring ``candidates × draws`` rows forward (with ``--shortlist``,
``candidates × first-pass draws + shortlist × the other draws``, as tda_plugin/shortlist.py scores); an adapter
whose loss ignores its draws (MusicGen's) runs one row where others run one per draw. It is an estimate
(batching, caches and other load move it); docs/reliability.md compares it with measured times.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

#: a backward pass costs about twice a forward pass
BACKWARD_FACTOR = 3.0


@dataclass(frozen=True)
class Estimate:
    windows: int
    unlearn_s: float
    score_s: float

    @property
    def total_s(self) -> float:
        return self.unlearn_s + self.score_s


def row_seconds(attributor: Any) -> float:
    """Seconds per forward row (one segment under one draw) of the loaded model, measured."""
    from tda_plugin.adapter import loss_draws
    from tda_plugin.index.builder import segment_conditioning
    from tda_plugin.randomness import segment_stream
    from tda_plugin.scoring import losses

    index = attributor.index
    sid = min(index.segments)
    seg = index.segments[sid]
    latents = index.gather([sid], "latents")
    cond = [segment_conditioning(index.tracks[seg.track_id], seg)]
    draws = int(index.meta.settings["draws"])
    run = lambda: losses(attributor.adapter, latents, cond, [segment_stream(sid)], seed=index.meta.settings["seed"],  # noqa: E731
                         draws=draws, batch_size=draws)
    run()  # the first call pays for lazy initialisation
    times = []
    for _ in range(2):  # the faster of two: a busy machine slows one run, not the model
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times) / loss_draws(attributor.adapter, draws)


def estimate(attributor: Any, duration_s: float, settings: Any, row_s: float) -> Estimate:
    from tda_plugin.adapter import loss_draws
    from tda_plugin.shortlist import score_rows

    meta = attributor.index.meta
    windows = max(1, math.ceil(duration_s / meta.segment_seconds - 1e-9))
    un = settings.unlearn
    # a draw-free loss (MusicGen's) runs one row for all its draws
    unlearn_rows = windows * loss_draws(attributor.adapter, un.unlearn_draws) * un.steps
    index_draws = loss_draws(attributor.adapter, int(meta.settings["draws"]))
    return Estimate(windows, BACKWARD_FACTOR * unlearn_rows * row_s,
                    score_rows(settings, len(attributor.index.segments), index_draws) * row_s)


def seconds(s: float) -> str:
    from tda_plugin.progress import duration

    return duration(s)
