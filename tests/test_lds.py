"""The LDS and the powered counterfactual: their arithmetic on known answers, and `tda eval lds` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.experiments import methods
from tda_plugin.experiments.counterfactual import noise_floor, summarise
from tda_plugin.experiments.lds import random_subsets, unlearning_passes
from tda_plugin.experiments.metrics import linear_datamodeling_score, mean_interval, paired_test
from tda_plugin.settings import AttributeSettings, UnlearnSettings

from .tiny_recipe import NAME, tiny_recipe  # noqa: F401  (fixture)

runner = CliRunner()


def test_lds_of_an_additive_model_is_one_for_its_true_scores_and_zero_for_shuffled_ones() -> None:
    """Each query's loss is exactly additive in the training segments it saw: L_j = c − Σ_{i∈S_j} β_i."""
    rng = np.random.default_rng(0)
    n, m, queries = 60, 64, 40
    masks = np.array([np.isin(np.arange(n), s) for s in random_subsets(list(range(n)), m, 0.5, seed=3)], dtype=float)
    assert masks.sum(axis=1).tolist() == [30.0] * m
    exact, shuffled = [], []
    for _ in range(queries):
        beta = rng.standard_normal(n)  # β_i > 0: segment i helps (its presence lowers the loss)
        losses = 2.0 - masks @ beta
        exact.append(linear_datamodeling_score(beta, masks, losses))
        shuffled.append(linear_datamodeling_score(rng.permutation(beta), masks, losses))
        assert linear_datamodeling_score(-beta, masks, losses) == pytest.approx(-1.0)
    assert exact == pytest.approx([1.0] * queries)
    summary = mean_interval(shuffled)
    assert abs(summary["mean"]) < 0.1 and summary["low"] < 0 < summary["high"]
    assert np.isnan(linear_datamodeling_score(np.zeros(n), masks, losses))  # nothing to rank


def test_random_subsets_are_seeded_and_stable_when_more_are_added() -> None:
    ids = list(range(10, 30))
    a, b = random_subsets(ids, 4, 0.25, seed=1), random_subsets(ids, 6, 0.25, seed=1)
    assert a == b[:4] and all(len(s) == 5 and set(s) <= set(ids) for s in b)
    assert random_subsets(ids, 4, 0.25, seed=2) != a


def test_paired_test_and_intervals_on_known_answers() -> None:
    base = np.linspace(0.02, 0.05, 16)
    better = paired_test(base + 0.01 + 0.001 * np.arange(16), base)  # every pair ahead, no ties: exact p = 2^-16
    assert better["p_greater"] == pytest.approx(2.0 ** -16) and better["p_two_sided"] == pytest.approx(2.0 ** -15)
    assert better["diff_mean"] == pytest.approx(0.0175) and better["wins"] == 1.0
    assert np.isnan(paired_test(base, base)["p_greater"])  # no difference at all: no test
    assert mean_interval([0.3, 0.3, 0.3]) == {"mean": 0.3, "low": 0.3, "high": 0.3, "n": 3}
    assert np.isnan(mean_interval([0.3])["low"])


def _run(query: int, method: str, k: int, seed: int, delta: float, set_: int | None = None) -> dict:
    return {"query_key": f"q{query}", "method": method, "k": k, "seed": seed, "set": set_, "delta_loss": delta,
            "delta_clip_db": None}


def test_counterfactual_summary_tests_methods_against_random_and_similarity() -> None:
    runs = []
    for q in range(16):
        for seed in (0, 1):
            for r, d in enumerate((0.02, 0.04)):  # random sets: mean 0.03, SD 0.0141 per query and seed
                runs.append(_run(q, "random", 8, seed, d + 0.001 * q + 0.002 * seed, r))
            runs.append(_run(q, "unlearning", 8, seed, 0.05 + 0.001 * q + 0.002 * seed))
            runs.append(_run(q, "similar:mfcc", 8, seed, 0.05 + 0.001 * q + 0.002 * seed))
    summary = summarise(runs)
    unl = summary["unlearning"]["8"]
    assert unl["mean"] == pytest.approx(0.0585) and unl["n"] == 16
    assert unl["vs_random"]["diff_mean"] == pytest.approx(0.02) and unl["vs_random"]["p_greater"] < 0.001
    assert np.isnan(unl["vs"]["similar:mfcc"]["p_greater"])  # identical to the baseline
    assert "vs" not in summary["similar:mfcc"]["8"] and "vs_random" in summary["similar:mfcc"]["8"]
    noise = noise_floor(runs)["8"]  # every removal: the two seeds 0.002 apart
    assert noise["random_sd"] == pytest.approx(np.std([0.02, 0.04], ddof=1))
    assert noise["seed_sd"] == pytest.approx(np.std([0.0, 0.002], ddof=1))


def _held_out(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(1.2 * 8000)) / 8000
    sf.write(folder / "h.wav", (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    (folder / "queries.csv").write_text("path,prompt,seconds_total\nh.wav,low hum,1.2\n")
    return folder


@pytest.fixture()
def cheap_unlearning():
    """A registered unlearning variant with few draws (the registry's one-line extension), removed afterwards."""
    methods.register_unlearning("unlearning:test", AttributeSettings(UnlearnSettings(unlearn_draws=4, normalize="none")))
    yield "unlearning:test"
    methods.REGISTRY.pop("unlearning:test")


def _invoke(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--out") + 1])
    assert (out / "lds.md").is_file() and list(out.glob("lds-*.png"))
    return json.loads((out / "lds.json").read_text())


def test_lds_end_to_end_then_reused_from_the_index(tmp_path: Path, tiny_recipe, cheap_unlearning) -> None:  # noqa: F811
    from .conftest import write_catalogue

    corpus = write_catalogue(tmp_path / "cat", n_tracks=2, seconds=2.1)
    common = ["--out", str(tmp_path / "lds"), "--cache", str(tmp_path / "models"), "--adapter", NAME,
              "--subset-models", "3", "--steps", "2", "--draws", "2", "--loss-draws", "2", "--queries", "1",
              "--query-audio", str(_held_out(tmp_path / "held")), "--method", cheap_unlearning,
              "--method", "first_order*", "--method", "gradient_sketch", "--method", "similar:latent_stats", "--method", "random"]
    doc = _invoke(["eval", "lds", str(corpus), *common])
    names = {cheap_unlearning, "first_order", "first_order:none", "gradient_sketch", "similar:latent_stats", "random"}
    assert set(doc["summary"]) == names and [q["source"] for q in doc["queries"]] == ["generated", "held-out"]
    assert len(doc["subsets"]) == 3 and all(len(s) == doc["segments"] // 2 for s in doc["subsets"])
    assert np.array(doc["losses"]).shape == (1, 3, 2) and np.isfinite(doc["losses"]).all()
    for values in doc["per_query"].values():
        assert len(values) == 2 and all(np.isnan(v) or -1 <= v <= 1 for v in values)
    trained = [t for t in tiny_recipe.trained if str(tmp_path / "models") in str(t["out"])]
    assert len(trained) == 4  # the reference and three subset models; each subset excludes the other half
    assert all(len(t["exclude"]) >= 1 for t in trained[1:])
    index = next((tmp_path / "models").glob("*/index-*"))
    again = _invoke(["eval", "lds", str(index), *common])  # the reference's own index: everything is reused
    assert [t for t in tiny_recipe.trained if str(tmp_path / "models") in str(t["out"])] == trained
    assert again["per_query"] == doc["per_query"] and again["losses"] == doc["losses"]

    grid = tmp_path / "grid.toml"
    grid.write_text("unlearn_draws = [2, 4]\nrelative_step = [1e-3]\n")
    (tmp_path / "steps.toml").write_text("steps = [2]\nunlearn_draws = [2]\n")
    try:  # grid points join the methods; the subset models and their losses are reused
        with_grid = _invoke(["eval", "lds", str(index), *common[:-10], "--method", "random", "--grid", str(grid),
                             "--grid", str(tmp_path / "steps.toml")])
    finally:
        for name in [n for n in methods.REGISTRY if n.startswith("grid:")]:
            methods.REGISTRY.pop(name)
    assert set(with_grid["summary"]) == {"random", "grid:relative_step=0.001,unlearn_draws=2",
                                         "grid:relative_step=0.001,unlearn_draws=4", "grid:steps=2,unlearn_draws=2"}
    assert with_grid["losses"] == doc["losses"] and with_grid["per_query"]["random"] == doc["per_query"]["random"]
    assert [t for t in tiny_recipe.trained if str(tmp_path / "models") in str(t["out"])] == trained
    grid.write_text("mask_score = [true]\n")
    bad = runner.invoke(app, ["eval", "lds", str(index), *common, "--grid", str(grid), "--estimate-only"])
    assert bad.exit_code == 3 and "mask_score" in bad.output


def test_lds_estimate_only_and_errors(tmp_path: Path, tiny_recipe) -> None:  # noqa: F811
    from .conftest import write_catalogue

    corpus = write_catalogue(tmp_path / "cat", n_tracks=2, seconds=2.1)
    result = runner.invoke(app, ["eval", "lds", str(corpus), "--out", str(tmp_path / "o"), "--adapter", NAME,
                                 "--estimate-only", "--steps", "2", "--queries", "1"])
    assert result.exit_code == 0, result.output
    assert "LDS evaluation: about" in result.output and "subset models" in result.output
    assert not (tmp_path / "o" / "lds.json").exists()
    bad = runner.invoke(app, ["eval", "lds", str(corpus), "--out", str(tmp_path / "o"), "--alpha", "1.5"])
    assert bad.exit_code == 3 and "alpha" in bad.output
    missing = runner.invoke(app, ["eval", "lds", str(corpus), "--out", str(tmp_path / "o"), "--adapter", NAME,
                                  "--query-audio", str(tmp_path), "--queries", "0", "--estimate-only"])
    assert missing.exit_code == 3 and "queries.csv" in missing.output
    probes = len(tiny_recipe.trained)
    for command in ("lds", "counterfactual"):  # a misspelt method fails before any estimate or training
        typo = runner.invoke(app, ["eval", command, str(corpus), "--out", str(tmp_path / "o"), "--adapter", NAME,
                                   "--method", "unlearning", "--method", "simlar:*", "--estimate-only"])
        assert typo.exit_code == 3 and "'simlar:*'" in typo.output and "known: unlearning" in typo.output, typo.output
    from tda_plugin.errors import TdaError
    from tda_plugin.experiments import counterfactual, lds

    for plan in (lds.Plan, counterfactual.Plan):  # the same check for Python API users, at the plan
        with pytest.raises(TdaError, match="simlar"):
            plan(corpus, tmp_path / "o", methods=("simlar:*",))
    assert len(tiny_recipe.trained) == probes


def test_output_change_is_the_squared_change_of_the_output_second_order_in_the_step(tiny_index: Path,
                                                                                  tiny_catalogue: Path) -> None:
    """The DAS-style score is ||JΔ||² to leading order: ×4 for a step twice as large, ×¼ for one half as large."""
    from tda_plugin import Attributor
    from tda_plugin.audio import load as load_audio
    from tda_plugin.experiments.context import Context
    from tda_plugin.experiments.retraining import Query, encode

    from .conftest import SEGMENT, SR

    att = Attributor.from_index(tiny_index)
    data, _ = load_audio(tiny_catalogue / "audio" / "t1.wav")
    query = encode(att, Query("t1", "held-out", data[:, :SEGMENT], SR, "high beep"))
    _, _, alpha, _ = att.forget(query.encoded, UnlearnSettings(unlearn_draws=2))

    def scores(a: float) -> np.ndarray:
        fresh = Query("t1", "held-out", query.audio, SR, query.prompt, encoded=query.encoded)
        got = methods.output_change(UnlearnSettings(alpha=a, unlearn_draws=2))(Context(att, {}), [fresh])[0]
        return np.array([got[i] for i in sorted(got)])

    half, one, two = scores(alpha / 2), scores(alpha), scores(2 * alpha)
    assert one.shape == (len(att.index.segments),) and (one > 0).all()
    assert np.allclose(two / one, 4.0, rtol=0.02) and np.allclose(half / one, 0.25, rtol=0.02)
    assert "output_change" in methods.matching(["output_change"])


def test_gated_credits_the_audios_top_by_the_prompted_scores_and_is_derived_from_stored_parts(tmp_path: Path) -> None:
    """The gate keeps the segments the audio ranks best (ties to the lower id) and scores them by their positive
    prompted score, every other segment 0; ``all_scores`` combines it from its parts, scoring and storing them
    once, so a second call scores nothing."""
    from types import SimpleNamespace

    from tda_plugin.experiments.retraining import Query
    from tda_plugin.experiments.scores import ScoreStore, all_scores

    prompted = np.array([5.0, -1.0, 3.0, 9.0, 2.0])
    audio = np.array([0.1, 0.9, 0.5, 0.0, 0.5])
    assert methods.gated(3)([prompted, audio]).tolist() == [0.0, 0.0, 3.0, 0.0, 2.0]  # kept 1, 2, 4; 1 not positive
    calls: list[str] = []

    def fixed(name: str, row: np.ndarray):
        def score(ctx, q):
            calls.append(name)
            return dict(enumerate(row.tolist()))
        return score

    try:
        methods.register("test:p", fixed("p", prompted))
        methods.register("test:a", fixed("a", audio))
        gate = methods.register_derived("test:gate", ("test:p", "test:a"), methods.gated(2), settings={"keep": 2})
        assert gate.cache_key != methods.register_derived("test:g3", ("test:p", "test:a"), methods.gated(3)).cache_key
        index = SimpleNamespace(segments=dict.fromkeys(range(5)),
                                meta=SimpleNamespace(fingerprint="f", settings={}, corpus_hash="c"))
        ctx = SimpleNamespace(att=SimpleNamespace(index=index))
        store, query = ScoreStore(tmp_path, ctx), Query("q", "held-out", np.zeros((1, 8), np.float32), 8000, "x")
        for _ in range(2):
            got = all_scores(ctx, [gate], [query], store)
            assert got["test:gate"][0].tolist() == [0.0, 0.0, 3.0, 0.0, 0.0]
        assert calls == ["p", "a"]  # the parts once, then from the store
        assert unlearning_passes(["unlearning"]) == 2  # the prompted pass and the audio's
    finally:
        for name in ("test:p", "test:a", "test:gate", "test:g3"):
            methods.REGISTRY.pop(name, None)


def test_lds_summary_tests_every_method_against_the_default_two_sided() -> None:
    from scipy import stats

    from tda_plugin.experiments.lds import render, summarise

    rng = np.random.default_rng(3)
    default = rng.uniform(0.3, 0.7, 12)
    per_query = {"unlearning": default.tolist(), "trak:exact": (default - 0.1 + 0.02 * rng.normal(size=12)).tolist(),
                 "random": rng.normal(0, 0.05, 12).tolist()}
    summary = summarise(per_query, ["generated"] * 12)
    assert "vs_default" not in summary["unlearning"]
    for name in ("trak:exact", "random"):
        t = summary[name]["vs_default"]
        d = np.array(per_query[name]) - default
        assert t["p_two_sided"] == pytest.approx(stats.wilcoxon(d).pvalue) and t["diff_mean"] == pytest.approx(d.mean())
    doc = {"summary": summary, "plan": {"subset_models": 8, "alpha": 0.5, "seeds": 1, "steps": 10}, "segments": 20,
           "queries": [{"source": "generated"}] * 12, "ground_truth": {"loss_mean": 1.0, "loss_sd_over_subsets": 0.1}}
    md, _ = render(doc)
    assert "p (two-sided)" in md and f"{summary['trak:exact']['vs_default']['p_two_sided']:.2g}" in md
