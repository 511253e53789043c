"""Generation-script hooks: audiocraft's own generate calls return the audio plus one result per clip."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from tda_plugin import Attributor, AttributeSettings
from tda_plugin.adapters.audiocraft import load
from tda_plugin.adapters.audiocraft_generation import gen_model, generate, generate_continuation
from tda_plugin.index.builder import build_index
from tda_plugin.settings import IndexSettings

from .audiocraft_models import tiny_checkpoint
from .conftest import write_catalogue

SETTINGS = AttributeSettings(candidates=3, top=2)


def _attributor(root: Path, magnet: bool) -> Attributor:
    ckpt = tiny_checkpoint(root / "model", magnet=magnet)
    corpus = write_catalogue(root / "catalogue", seconds=2.2)
    adapter = load(ckpt)
    build_index(corpus, root / "index", adapter, checkpoint=ckpt, settings=IndexSettings(draws=2, fisher_segments=3))
    return Attributor.from_index(root / "index", adapter=adapter)


def test_musicgen_generate_and_continuation_return_credits(tmp_path: Path) -> None:
    att = _attributor(tmp_path, magnet=False)
    model = gen_model(att)
    model.set_generation_params(duration=att.index.meta.segment_seconds, top_k=10)
    torch.manual_seed(0)
    audio, results = generate(att, model, ["low hum", "high beep"], settings=SETTINGS)
    assert audio.shape[:2] == (2, 1) and len(results) == 2
    assert [r.query["prompt"] for r in results] == ["low hum", "high beep"]
    assert all(r.credits and r.model["adapter"] == "audiocraft" for r in results)
    assert "includes_prompt_audio" not in results[0].to_dict()["query"]

    prompt = audio[:1, :, : audio.shape[-1] // 2]
    cont, (result,) = generate_continuation(att, model, prompt, att.adapter.sample_rate, ["low hum"], settings=SETTINGS)
    assert cont.shape[-1] >= prompt.shape[-1]
    query = result.to_dict()["query"]
    assert query["includes_prompt_audio"] is True
    assert query["prompt_audio_s"] == pytest.approx(prompt.shape[-1] / att.adapter.sample_rate)


def test_magnet_generate_returns_credits(tmp_path: Path) -> None:
    att = _attributor(tmp_path, magnet=True)
    model = gen_model(att)
    model.set_generation_params(decoding_steps=[2, 1, 1, 1])
    torch.manual_seed(0)
    audio, (result,) = generate(att, model, ["high beep"], settings=SETTINGS)
    assert audio.shape[:2] == (1, 1) and result.credits
    if audio.shape[-1] < att.index.meta.segment_samples:  # padded to one segment, and said so
        assert result.query["padded_s"] > 0


def test_credited_generate_saves_clips_and_runs_sinks(tmp_path: Path) -> None:
    """The one-line wrapper: audiocraft's generate, each clip saved with its credits in tags and a sidecar."""
    import json

    import soundfile as sf

    from tda_plugin.adapters.audiocraft_generation import credited
    from tda_plugin.errors import TdaError
    from tda_plugin.sinks.read import read_credits

    att = _attributor(tmp_path, magnet=False)
    model = gen_model(att)
    model.set_generation_params(duration=att.index.meta.segment_seconds, top_k=10)
    generate = credited(att, model, settings=SETTINGS, save_to=str(tmp_path / "out" / "clip_{i}.flac"),
                        sinks=("tags", "sidecar"))
    torch.manual_seed(0)
    wav, clips = generate(["low hum", "high beep"])
    assert torch.is_tensor(wav) and wav.shape[0] == 2 and len(clips) == 2
    for clip, prompt in zip(clips, ["low hum", "high beep"]):
        assert clip.path is not None and clip.path.suffix == ".flac" and clip.path.is_file()
        assert sf.info(str(clip.path)).samplerate == att.adapter.sample_rate
        stored, source = read_credits(clip.path)
        assert stored["query"]["prompt"] == prompt and stored["query"]["representation"] == "generated tokens"
        assert stored["credits"] == json.loads(json.dumps(clip.credits))
        assert {r.sink for r in clip.receipts} == {"tags", "sidecar"}
    with pytest.raises(TdaError, match="generate_audio"):
        credited(att, model, "generate_audio")
