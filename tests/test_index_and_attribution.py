"""Index building, resumption and exact, order-independent scoring on a tiny random model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tda_plugin import Attributor, AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.adapters.stable_audio import load
from tda_plugin.audio import load as load_audio
from tda_plugin.errors import TdaError
from tda_plugin.index import builder
from tda_plugin.index.builder import build_index
from tda_plugin.index.store import Index

from .conftest import SEGMENT, SR

SMALL = AttributeSettings(UnlearnSettings(unlearn_draws=4, alpha=1e-7), candidates="all", top=5)


def test_index_layout_and_info(tiny_index: Path) -> None:
    for name in ("index.json", "catalog.sqlite", "baseline.safetensors", "fisher.safetensors", "vectors.faiss"):
        assert (tiny_index / name).is_file()
    info = Index(tiny_index).info()
    assert info["tracks"] == 4 and info["artists"] == 2 and info["draws"] == 4
    assert info["segments"] == 4 * (int(1.6 * SR) // SEGMENT)
    base = load_file(str(tiny_index / "baseline.safetensors"))
    assert base["losses"].shape == (info["segments"], 4) and torch.isfinite(base["losses"]).all()
    assert (base["sensitivity.blocks"] > 0).all()


def test_baseline_equals_fresh_losses(tiny_index: Path, tiny_model: tuple[Path, Path]) -> None:
    """The cached baseline is exactly what the scorer computes for the same segments and draws."""
    from tda_plugin.index.builder import segment_conditioning
    from tda_plugin.randomness import segment_stream
    from tda_plugin.scoring import losses

    index = Index(tiny_index)
    adapter = load(tiny_model[0], model_config=tiny_model[1])
    ids = sorted(index.segments)
    conds = [segment_conditioning(index.tracks[index.segments[i].track_id], index.segments[i]) for i in ids]
    fresh = losses(adapter, index.gather(ids, "latents"), conds, [segment_stream(i) for i in ids], seed=0, draws=4)
    assert torch.allclose(fresh, index.baseline_rows(ids), rtol=1e-6, atol=1e-7)


def _query(catalogue: Path) -> np.ndarray:
    data, _ = load_audio(catalogue / "audio" / "t1.wav")
    return data[:, :SEGMENT]


def test_attribution_result_schema(tiny_index: Path, tiny_catalogue: Path) -> None:
    result = Attributor.from_index(tiny_index).attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=SMALL,
                                                         path="q.wav").to_dict()
    assert set(result) == {"query", "model", "method", "segments", "credits", "artists", "copies", "vetoes"}
    assert result["vetoes"] == []  # no plugin vetoed its release
    assert result["query"]["path"] == "q.wav" and result["query"]["prompt"] == "high beep"
    for key in ("mode", "alpha", "steps", "subset", "draws", "unlearn_draws", "candidates", "seed"):
        assert key in result["method"]
    seg = result["segments"][0]
    assert set(seg) >= {"rank", "segment_id", "track_id", "path", "title", "artist", "start_s", "end_s", "score"}
    assert seg["path"].startswith("audio/t")  # as the catalogue gave it
    assert abs((seg["start_s"] / (SEGMENT / SR)) - round(seg["start_s"] / (SEGMENT / SR))) < 1e-9
    credit = result["credits"][0]
    assert set(credit) >= {"rank", "track_id", "path", "title", "artist", "license", "score", "share"}
    assert abs(sum(c["share"] for c in result["credits"]) - 1.0) < 1e-6
    assert abs(sum(a["share"] for a in result["artists"]) - 1.0) < 1e-6
    json.dumps(result)


def test_scores_bit_identical_on_rerun(tiny_index: Path, tiny_catalogue: Path) -> None:
    att = Attributor.from_index(tiny_index)
    a = att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=SMALL).scores
    b = att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=SMALL).scores
    assert a == b


def test_scores_do_not_depend_on_batch_size_or_order(tiny_index: Path, tiny_catalogue: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    att = Attributor.from_index(tiny_index)
    q = _query(tiny_catalogue)
    ref = att.attribute(q, SR, prompt="high beep", settings=SMALL).scores
    small_batch = AttributeSettings(SMALL.unlearn, candidates="all", top=5, batch_size=4)
    other = att.attribute(q, SR, prompt="high beep", settings=small_batch).scores
    original = att.candidates
    monkeypatch.setattr(att, "candidates", lambda query, settings: list(reversed(original(query, settings))))
    reordered = att.attribute(q, SR, prompt="high beep", settings=SMALL).scores
    for scores in (other, reordered):
        assert scores.keys() == ref.keys()
        for k in ref:
            assert scores[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9)
        assert sorted(scores, key=lambda k: -scores[k]) == sorted(ref, key=lambda k: -ref[k])


def test_prefilter_limits_candidates(tiny_index: Path, tiny_catalogue: Path) -> None:
    att = Attributor.from_index(tiny_index)
    few = AttributeSettings(SMALL.unlearn, candidates=3, top=3)
    result = att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=few)
    assert len(result.scores) == 3 and result.method["scored"] == 3


def test_ascent_mode_and_subsets(tiny_index: Path, tiny_catalogue: Path) -> None:
    att = Attributor.from_index(tiny_index)
    for un in (UnlearnSettings(mode="ascent", steps=3, unlearn_draws=4, alpha=1e-7, ewc=0.5),
               UnlearnSettings(subset="cross_attn_kv", unlearn_draws=4, alpha=1e-7),
               UnlearnSettings(subset="self_attn", unlearn_draws=4, normalize="none", alpha=1e-7)):
        result = att.attribute(_query(tiny_catalogue), SR, prompt="high beep",
                               settings=AttributeSettings(un, candidates="all", conditioning="prompt"))
        assert all(np.isfinite(v) for v in result.scores.values())
        assert any(v != 0 for v in result.scores.values())
        assert 0 < result.method["relative_step"] < 0.1
        assert result.method["subset"] == un.subset and result.method["mode"] == un.mode


def test_query_timesteps_change_only_the_forgetting(tiny_index: Path, tiny_catalogue: Path) -> None:
    """(0, 1) is the default objective bit for bit; a narrower range moves the step, and is validated."""
    from dataclasses import replace

    att = Attributor.from_index(tiny_index)
    ranked = {}
    for span in ((0.0, 1.0), (0.5, 1.0)):
        settings = replace(SMALL, unlearn=replace(SMALL.unlearn, query_timesteps=span))
        ranked[span] = att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=settings).scores
    assert ranked[(0.0, 1.0)] == att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=SMALL).scores
    assert ranked[(0.5, 1.0)] != ranked[(0.0, 1.0)]
    assert UnlearnSettings(query_timesteps=[0.2, 0.9]).query_timesteps == (0.2, 0.9)
    for bad in ((0.5, 0.5), (-0.1, 1.0), (0.0, 2.0), (1.0,)):
        with pytest.raises(TdaError, match="query timesteps"):
            UnlearnSettings(query_timesteps=bad)


def test_parameters_restored_after_attribution(tiny_index: Path, tiny_catalogue: Path) -> None:
    att = Attributor.from_index(tiny_index)
    before = {k: v.clone() for k, v in att.adapter.module.state_dict().items()}
    att.attribute(_query(tiny_catalogue), SR, prompt="high beep", settings=SMALL)
    after = att.adapter.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_build_resumes_after_interruption(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path,
                                          tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the build after its first shard; rerunning finishes it, identical to an uninterrupted build."""
    ckpt, cfg = tiny_model
    adapter = load(ckpt, model_config=cfg)
    settings = IndexSettings(draws=4, fisher_segments=6, shard_size=4)
    out = tmp_path / "idx"
    real = builder._build_shard
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(builder, "_build_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_catalogue, out, adapter, checkpoint=ckpt, model_config=cfg, settings=settings)
    assert not json.loads((out / "index.json").read_text())["complete"]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(builder, "_build_shard", real)
    report = build_index(tiny_catalogue, out, adapter, checkpoint=ckpt, model_config=cfg, settings=settings)
    assert report.resumed_shards == 1
    for name in ("baseline.safetensors", "fisher.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(tiny_index / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for shard in sorted((tiny_index / "shards").iterdir()):
        a, b = load_file(str(out / "shards" / shard.name)), load_file(str(shard))
        assert all(torch.equal(a[k], b[k]) for k in a)
