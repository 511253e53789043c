"""One line around stable-audio-tools' own generate call: clips attributed, saved, tagged, ledgered; vetoes hold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tda_plugin import Attributor, AttributeSettings, UnlearnSettings, hookimpl, plugins
from tda_plugin.adapters.stable_audio_generation import credited
from tda_plugin.errors import AttributionRefused, ReleaseVetoed
from tda_plugin.sinks import SinkOptions
from tda_plugin.sinks.ledger import Ledger
from tda_plugin.sinks.read import read_credits

from .conftest import SEGMENT

SETTINGS = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), candidates="all", top=3)
COND = [{"prompt": "low hum", "seconds_start": 0, "seconds_total": 1.0},
        {"prompt": "high beep", "seconds_start": 0, "seconds_total": 1.0}]


class Guard:
    """A memorisation guard registered at run time, plus a before-hook that records what it saw."""

    def __init__(self, max_share: float, refuse: bool = False) -> None:
        self.max_share, self.refuse, self.seen = max_share, refuse, []

    @hookimpl
    def tda_before_attribution(self, query):
        self.seen.append(query)
        return "no attributions today" if self.refuse else None

    @hookimpl
    def tda_after_attribution(self, result):
        top = result["credits"][0]
        return f"top credit {top['title']} has {top['share']:.0%}" if top["share"] > self.max_share else None


@pytest.fixture()
def guard():
    pm = plugins.get_plugin_manager()
    added = []

    def register(g: Guard) -> Guard:
        pm.register(g, name=f"guard{len(added)}")
        added.append(g)
        return g
    yield register
    for g in added:
        pm.unregister(g)


def _generate(tmp_path: Path, attributor: Attributor, **config):
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    generate = credited(attributor, settings=SETTINGS, **config)(generate_diffusion_cond)
    # the wavelet pretransform has no parameters, which the toolkit's own decode step trips over: ask for latents
    return generate(attributor.adapter.model, steps=4, cfg_scale=1.0, conditioning=COND, batch_size=2,
                    sample_size=SEGMENT, seed=3, return_latents=True)


def test_generated_clips_are_saved_tagged_and_ledgered(tmp_path: Path, tiny_index: Path, guard) -> None:
    att = Attributor.from_index(tiny_index)
    seen = guard(Guard(max_share=1.0)).seen
    latents, clips = _generate(tmp_path, att, save_to=str(tmp_path / "out" / "clip_{i}.flac"), sinks=("tags", "ledger"),
                               options=SinkOptions(ledger=tmp_path / "credits.sqlite"))
    assert latents.shape == (2, 64, SEGMENT // 64)
    assert [c.path for c in clips] == [tmp_path / "out" / "clip_0.flac", tmp_path / "out" / "clip_1.flac"]
    assert [q["prompt"] for q in seen] == ["low hum", "high beep"] and seen[0]["sample_rate"] == 8000
    audio = att.adapter.decode(latents).clamp(-1, 1).numpy()
    for clip in clips:
        saved, sr = sf.read(str(clip.path), dtype="float32", always_2d=True)
        assert sr == 8000 and np.abs(saved.T - audio[clip.index]).max() < 2e-4  # 16-bit FLAC of the generated clip
        doc, where = read_credits(clip.path)
        assert where == f"tags of {clip.path}" and doc == clip.result.to_dict() and doc["query"]["path"] == str(clip.path)
        assert [r.sink for r in clip.receipts] == ["tags", "ledger"] and len(clip.credits) >= 1
    with Ledger(tmp_path / "credits.sqlite") as ledger:
        rows = list(ledger.rows())
    assert {r.generated for r in rows} == {str(c.path) for c in clips}
    assert len(rows) == sum(len(c.credits) for c in clips) and {r.model_fingerprint for r in rows} == {att.adapter.fingerprint}


def test_a_veto_releases_nothing_and_says_why(tmp_path: Path, tiny_index: Path, guard) -> None:
    att = Attributor.from_index(tiny_index)
    guard(Guard(max_share=0.0))  # every clip's top credit has a positive share
    with pytest.raises(ReleaseVetoed, match=r"2 of 2 generated clip\(s\) not released: clip 0: top credit") as caught:
        _generate(tmp_path, att, save_to=str(tmp_path / "out" / "clip_{i}.wav"), sinks=("sidecar", "ledger"),
                  options=SinkOptions(ledger=tmp_path / "credits.sqlite"))
    assert all(c.vetoes and c.path is None and not c.receipts for c in caught.value.clips)
    assert not (tmp_path / "out").exists() and not (tmp_path / "credits.sqlite").exists()
    _, clips = _generate(tmp_path, att, on_veto="keep")  # or: hand the clips back, marked
    assert all(c.vetoes and c.result.to_dict()["vetoes"] == c.vetoes for c in clips)


def test_a_before_hook_refuses_the_query(tmp_path: Path, tiny_index: Path, guard) -> None:
    att = Attributor.from_index(tiny_index)
    guard(Guard(max_share=1.0, refuse=True))
    with pytest.raises(AttributionRefused, match="refused by a plugin: no attributions today"):
        _generate(tmp_path, att)


def test_file_sinks_without_saving_fail_before_generating(tiny_index: Path) -> None:
    from tda_plugin.errors import TdaError

    att = Attributor.from_index(tiny_index)
    with pytest.raises(TdaError, match="save the clips"):
        credited(att, sinks=("tags",))(lambda *a, **k: pytest.fail("generated anyway"))
