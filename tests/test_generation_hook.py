"""The stable-audio-tools generation hook returns the toolkit's output together with credits."""
from __future__ import annotations

from pathlib import Path

import torch

from tda_plugin import Attributor, AttributeSettings, UnlearnSettings
from tda_plugin.adapters.stable_audio_generation import generate_with_credits

from .conftest import SEGMENT


def test_generate_with_credits(tiny_index: Path) -> None:
    att = Attributor.from_index(tiny_index)
    settings = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), candidates="all", top=3)
    cond = [{"prompt": "low hum", "seconds_start": 0, "seconds_total": 1.0},
            {"prompt": "high beep", "seconds_start": 0, "seconds_total": 1.0}]
    audio, results = generate_with_credits(att, settings=settings, steps=4, cfg_scale=1.0, conditioning=cond,
                                           batch_size=2, sample_size=SEGMENT, seed=3, device="cpu", return_latents=True)
    # the wavelet pretransform has no parameters, which the toolkit's own decode step trips over: ask for latents
    assert audio.shape == (2, 64, SEGMENT // 64) and torch.isfinite(audio).all()
    assert [r.query["prompt"] for r in results] == ["low hum", "high beep"]
    assert all(r.query["seconds_total"] == 1.0 for r in results)
    assert all(len(r.segments) == 3 for r in results)
