"""`tda eval`: known answers on constructed cases, and every command end to end on the tiny index."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.errors import TdaError
from tda_plugin.experiments import metrics
from tda_plugin.experiments.grid import consistency, points, read_grid
from tda_plugin.experiments.self_influence import SelfInfluence
from tda_plugin.experiments.targets import covering_targets

from .tiny_recipe import NAME, tiny_recipe  # noqa: F401  (fixture)

runner = CliRunner()


def test_perfect_attribution_gives_rank_one_and_full_overlap() -> None:
    scores = {0: 0.9, 1: 0.5, 2: 0.1, 3: -0.2}
    assert metrics.rank_of(scores, 0) == 1 and metrics.rank_of(scores, 3) == 4
    assert metrics.topk_overlap(scores, dict(scores), 2) == 1.0
    assert metrics.topk_overlap(scores, {0: 0.0, 1: 0.1, 2: 0.5, 3: 0.9}, 2) == 0.0
    c = metrics.correlations(scores, {k: 2 * v + 1 for k, v in scores.items()})
    assert c == pytest.approx({"pearson": 1.0, "spearman": 1.0, "kendall": 1.0})
    assert metrics.concentration({0: 3.0, 1: 1.0, 2: -5.0}, ks=(1, 2)) == {"top1_share": 0.75, "top2_share": 1.0}


def test_identical_grid_points_are_fully_consistent() -> None:
    a = SelfInfluence({"p": 1}, {7: {7: 1.0, 8: 0.3, 9: 0.1}, 8: {7: 0.2, 8: 0.9, 9: 0.4}})
    b = SelfInfluence({"p": 2}, {7: {7: 1.0, 8: 0.3, 9: 0.1}, 8: {7: 0.2, 8: 0.9, 9: 0.4}})
    reversed_ = SelfInfluence({"p": 3}, {t: {k: -v for k, v in sc.items()} for t, sc in a.scores.items()})
    mats = consistency([a, b, reversed_], k=1)
    assert mats["spearman"][0, 1] == pytest.approx(1.0) and mats["top1_overlap"][0, 1] == 1.0
    assert mats["spearman"][0, 2] == pytest.approx(-1.0) and mats["top1_overlap"][0, 2] == 0.0


def test_covering_targets_pick_one_segment_per_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8, dtype=np.float32)
    x = np.concatenate([c + 0.01 * rng.standard_normal((5, 8)).astype(np.float32) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = list(range(100, 120))
    picked = covering_targets(x, ids, 4)
    assert sorted({(i - 100) // 5 for i in picked}) == [0, 1, 2, 3]
    with pytest.raises(TdaError):
        covering_targets(x, ids, 21)


def test_grid_file_axes_and_points(tmp_path: Path) -> None:
    f = tmp_path / "grid.toml"
    f.write_text('subset = ["blocks", "cross_attn_kv"]\nsteps = [1, 3]\nmask_silence = false\nmask_score = true\n')
    pts = points(read_grid(f))
    assert len(pts) == 4 and all(p.mask_score for p in pts)
    assert {(p.label["subset"], p.unlearn.mode, p.unlearn.steps, p.unlearn.mask_silence) for p in pts} == {
        ("blocks", "newton", 1, False), ("blocks", "ascent", 3, False),
        ("cross_attn_kv", "newton", 1, False), ("cross_attn_kv", "ascent", 3, False)}
    f.write_text('query_timesteps = [0.5, 1]\n')  # a lone range is one point
    assert [p.unlearn.query_timesteps for p in points(read_grid(f))] == [(0.5, 1.0)]
    f.write_text('query_timesteps = [[0, 1], [0.5, 1]]\n')
    assert [p.unlearn.query_timesteps for p in points(read_grid(f))] == [(0.0, 1.0), (0.5, 1.0)]
    f.write_text('subset = ["blocks"]\nlearning_rate = [1]\n')
    with pytest.raises(TdaError, match="learning_rate"):
        read_grid(f)


def test_scoring_masks_leave_silence_out(tiny_index: Path, tmp_path: Path) -> None:
    """Masked scoring of an unmasked catalogue equals the index's exact scores; silent frames change nothing."""
    from tda_plugin import Attributor
    from tda_plugin.experiments.score_mask import MaskedScorer
    from tda_plugin.settings import UnlearnSettings

    att = Attributor.from_index(tiny_index)
    scorer = MaskedScorer(att)
    assert bool(scorer.masks.all())  # sine tones: nothing silent, so masks keep every frame
    un = UnlearnSettings(unlearn_draws=4)
    sid = sorted(att.index.segments)[0]
    from tda_plugin.evaluation import segment_audio

    query = att.encode_query(segment_audio(att, sid), att.index.meta.sample_rate, "low hum")
    names, delta, _, _ = att.forget(query, un)
    masked = scorer.scores(names, delta, un)
    _, exact = att.exact_scores(sorted(att.index.segments), names, delta, un, 64)
    assert np.allclose([masked[i] for i in sorted(masked)], exact.numpy(), rtol=1e-5, atol=1e-7)
    scorer.masks[:, : scorer.masks.shape[1] // 2] = False  # now half of every segment is "silent"
    scorer.baseline = scorer._losses()
    assert not np.allclose([v for _, v in sorted(scorer.scores(names, delta, un).items())], exact.numpy())


def _run(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--out") + 1])
    name = args[1]
    for suffix in (".json", ".md"):
        assert (out / f"{name}{suffix}").is_file()
    assert list(out.glob(f"{name}-*.png"))
    return json.loads((out / f"{name}.json").read_text())


def test_self_influence_and_grid_commands(tiny_index: Path, tmp_path: Path) -> None:
    doc = _run(["eval", "self-influence", str(tiny_index), "--out", str(tmp_path), "--targets", "2",
                "--subset", "blocks", "--subset", "cross_attn", "-k", "3", "--unlearn-draws", "4"])
    n = doc["segments"]
    assert len(doc["targets"]) == 2 and [s["setting"] for s in doc["settings"]] == [{"subset": "blocks"}, {"subset": "cross_attn"}]
    for s in doc["settings"]:
        f = s["figures"]
        assert 1.0 <= f["R"] <= n and 0.0 <= f["rank1"] <= 1.0 and 0.0 <= f["precision@3"] <= 1.0
        assert {"sim_top3.activations", "sim_bot3.latent_stats"} <= set(f)
    grid = tmp_path / "grid.toml"
    grid.write_text('subset = ["blocks"]\nrelative_step = [1e-3, 1e-2]\nunlearn_draws = [4]\nmask_score = [false, true]\n')
    doc = _run(["eval", "grid", str(tiny_index), "--grid", str(grid), "--out", str(tmp_path), "--targets", "2", "-k", "3"])
    spearman = np.array(doc["consistency"]["spearman"])
    assert spearman.shape == (4, 4) and np.allclose(np.diag(spearman), 1.0) and np.allclose(spearman, spearman.T)
    assert [s["mask_score"] for s in doc["settings"]] == [False, False, True, True]  # axes vary in AXES order


def _clip(folder: Path, prompt: str | None) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(6000) / 8000
    sf.write(folder / "gen.wav", (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 8000)
    if prompt:
        (folder / "gen.credits.json").write_text(json.dumps({"query": {"prompt": prompt}}))
    return folder


def test_compare_and_prefilter_commands(tiny_index: Path, tmp_path: Path) -> None:
    queries = _clip(tmp_path / "q", "low hum")
    doc = _run(["eval", "compare", str(tiny_index), "--queries", str(queries), "--out", str(tmp_path), "--unlearn-draws", "4"])
    assert doc["queries"][0]["prompt"] == "low hum"
    assert "gradient_sketch" not in doc["embedders"] and {"activations", "latent_stats"} <= set(doc["embedders"])
    assert set(doc["summary"]["correlation"]) == set(doc["embedders"])
    assert set(doc["summary"]["concentration"]) == {"unlearning", *doc["embedders"]}
    doc = _run(["eval", "prefilter", str(tiny_index), "--queries", str(queries), "--noisy-copies", "2",
                "--out", str(tmp_path), "--fractions", "0.1,1.0"])
    table = doc["table"]
    assert table["queries"][0] == "gen.wav" and len(table["queries"]) == 3
    assert {"gradient_sketch", "first_order", "activations", "latent_stats"} <= set(table["recall"])
    for per_k in table["recall"].values():  # the whole catalogue as candidates holds every exact top-k
        assert per_k["10"]["1.0"] == 1.0 and "100" not in per_k  # k >= N says nothing


def test_latent_neighbour_check_knows_its_answers(tiny_index: Path) -> None:
    from tda_plugin import Attributor
    from tda_plugin.evaluation import latent_neighbour_checks, segment_audio

    att = Attributor.from_index(tiny_index)
    firsts = {}
    for sid in sorted(att.index.segments):
        firsts.setdefault(att.index.segments[sid].track_id, sid)
    ids = sorted(firsts.values())
    planted = segment_audio(att, ids[-1])  # every probe replaced by one segment's audio: only that one is found
    kept, replaced = latent_neighbour_checks(att, ids, {"self": None, "kept: x": lambda x, sr, rng: x.copy(),
                                                        "replaced: y": lambda x, sr, rng: planted})
    assert (kept.hits, kept.total, kept.ranks) == (len(ids), len(ids), [1] * len(ids))
    assert replaced.hits == 1 and replaced.ranks[-1] == 1 and min(replaced.ranks[:-1]) >= 2
    assert kept.name.startswith("kept: nearest its source segment")


def test_eval_errors_are_one_line(tiny_index: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "compare", str(tiny_index), "--queries", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code == 3 and "no audio files" in result.output


def test_training_crops_avoid_excluded_ranges(tmp_path: Path) -> None:
    from tda_plugin.adapters.stable_audio_demo import _allowed_offsets
    from tda_plugin.catalog import Track

    track = Track(0, "a.wav", tmp_path / "a.wav", "A", "X", "CC0", None)
    latents = torch.zeros(64, 20)  # 20 frames of 0.1 s; crops of 4 frames
    allowed, = _allowed_offsets([(track, latents, 2.0)], 4, 0.1, {tmp_path / "a.wav": [(0.5, 0.9)]})
    assert allowed == [0, 1, 9, 10, 11, 12, 13, 14, 15, 16]  # crops [off, off+4) * 0.1 s never touch [0.5, 0.9)


def test_counterfactual_end_to_end_from_scratch_then_fine_tuned(tmp_path: Path, tiny_recipe) -> None:  # noqa: F811
    """Removals by unlearning, one similarity embedder and shared random sets, two seeds, two K; then the
    fine-tuning counterfactual on the same model cache (its reference is reused, not retrained)."""
    from .conftest import write_catalogue
    from .test_lds import _held_out

    corpus = write_catalogue(tmp_path / "cat", n_tracks=2, seconds=2.1)
    common = ["--cache", str(tmp_path / "models"), "--adapter", NAME, "--queries", "1", "--query-audio",
              str(_held_out(tmp_path / "held")), "--k", "1,2", "--seeds", "2", "--random-sets", "2", "--steps", "2",
              "--draws", "2", "--loss-draws", "2", "--method", "similar:latent_stats", "--method", "first_order"]
    out = tmp_path / "cf"
    doc = _run(["eval", "counterfactual", str(corpus), "--out", str(out), *common, "--finetune-steps", "0"])
    methods = {"first_order", "random", "similar:latent_stats"}
    assert set(doc["summary"]) == methods and all(set(v) == {"1", "2"} for v in doc["summary"].values())
    for r in doc["runs"]:
        assert len(r["removed"]) == r["k"] and r["seed"] in (0, 1) and np.isfinite(r["delta_loss"])
        assert (r["delta_clip_db"] is None) == (r["source"] == "held-out")
    per = {(r["method"], r["k"], r["seed"]) for r in doc["runs"]}
    assert per == {(m, k, s) for m in methods for k in (1, 2) for s in (0, 1)}
    random_runs = [r for r in doc["runs"] if r["method"] == "random"]
    assert len(random_runs) == 2 * 2 * 2 * 2  # sets × K × seeds × queries: every query measured on every random set
    assert len({tuple(r["removed"]) for r in random_runs}) <= 4  # ... from 2 sets per K, not one per query
    fo = doc["summary"]["first_order"]["2"]
    assert fo["n"] == 2 and "p_greater" in fo["vs_random"] and "similar:latent_stats" in fo["vs"]
    assert set(doc["noise"]) == {"1", "2"} and np.isfinite(doc["noise"]["2"]["random_sd"])
    scratch = [t for t in tiny_recipe.trained if str(tmp_path / "models") in str(t["out"])]
    assert sum(not t["exclude"] for t in scratch) == 2  # one reference per seed, the first shared with attribution
    tuned = _run(["eval", "counterfactual", str(corpus), "--out", str(out), *common, "--finetune-steps", "2"])
    new = [t for t in tiny_recipe.trained if str(tmp_path / "models") in str(t["out"])][len(scratch):]
    assert new and all(t["init"] is not None and t["steps"] == 2 for t in new)
    assert {r["method"] for r in tuned["runs"]} == methods and tuned["plan"]["finetune_steps"] == 2
    assert all(r["regime"].startswith("finetune-2") for r in tuned["runs"])


def test_a_recipe_that_cannot_fine_tune_fails_before_any_training(tmp_path: Path, tiny_recipe,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tuning is the counterfactual's default; a recipe whose train() takes no ``init`` is told at once."""
    from dataclasses import replace

    from tda_plugin.experiments import counterfactual
    from tda_plugin.registry import get_adapter_spec

    from .conftest import write_catalogue

    spec = get_adapter_spec(NAME)
    from_scratch_only = replace(spec.recipe, train=lambda tracks, out_dir, *, seed, steps, exclude: None)
    monkeypatch.setattr(counterfactual, "get_adapter_spec", lambda name: replace(spec, recipe=from_scratch_only))
    corpus = write_catalogue(tmp_path / "cat", n_tracks=2, seconds=2.1)
    with pytest.raises(TdaError, match="--finetune-steps 0"):
        counterfactual.Counterfactual(counterfactual.Plan(corpus, tmp_path / "cf", NAME, queries=1))
    counterfactual.Counterfactual(counterfactual.Plan(corpus, tmp_path / "cf", NAME, queries=1, finetune_steps=0))
    assert not tiny_recipe.trained


def test_retraining_without_nothing_reproduces_the_model(tmp_path: Path) -> None:
    """The recipe is deterministic; excluding a range changes the weights (only through the swapped crops)."""
    from safetensors.torch import load_file

    from tda_plugin.adapters.stable_audio_demo import retrain
    from tda_plugin.catalog import read_catalog

    from .conftest import tiny_config, write_catalogue

    tracks = read_catalog(write_catalogue(tmp_path / "cat", n_tracks=2, seconds=4.2))
    config = tiny_config(sorted({t.caption or "" for t in tracks}))
    a = load_file(str(retrain(tracks, tmp_path / "a", seed=3, steps=2, exclude={}, config=config)[0]))
    b = load_file(str(retrain(tracks, tmp_path / "b", seed=3, steps=2, exclude={}, config=config)[0]))
    c = load_file(str(retrain(tracks, tmp_path / "c", seed=3, steps=2, exclude={tracks[0].resolved: [(0.0, 4.2)]},
                              config=config)[0]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
