"""The per-artist ground truth (tda_plugin/experiments/artists.py): the agreement on planted answers, and
`tda eval artists` end to end on the tests' tiny recipe (with its models reused on a rerun)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.experiments.artists import agreement, summarise

from .test_lds import _held_out
from .tiny_recipe import NAME, tiny_recipe  # noqa: F401

runner = CliRunner()


def test_agreement_on_planted_answers() -> None:
    truth = np.array([0.03, 0.01, 0.0, -0.002])
    assert agreement(np.array([0.6, 0.3, 0.1, 0.0]), truth) == {"spearman": pytest.approx(1.0), "top_hit": 1.0}
    reversed_ = agreement(np.array([0.0, 0.1, 0.3, 0.6]), truth)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["top_hit"] == 0.0
    # paying nobody, or everybody alike, orders nothing: no information, and no top artist
    assert agreement(np.zeros(4), truth) == {"spearman": 0.0, "top_hit": 0.0}
    assert agreement(np.full(4, 0.25), truth)["spearman"] == 0.0


def test_summary_tests_each_method_against_the_default() -> None:
    rng = np.random.default_rng(0)
    good = [{"spearman": float(v), "top_hit": 1.0} for v in rng.uniform(0.5, 0.9, 10)]
    bad = [{"spearman": float(v), "top_hit": float(i < 3)} for i, v in enumerate(rng.uniform(-0.2, 0.2, 10))]
    summary = summarise({"unlearning": good, "random": bad})
    assert summary["unlearning"]["top_hits"] == 10 and "vs_default" not in summary["unlearning"]
    assert summary["random"]["top_hits"] == 3 and summary["random"]["vs_default"]["p_two_sided"] < 0.01
    assert summary["random"]["vs_default"]["diff_mean"] < 0


def test_eval_artists_end_to_end_then_reused(tmp_path: Path, tiny_recipe) -> None:  # noqa: F811
    from .conftest import write_catalogue

    corpus = write_catalogue(tmp_path / "cat", n_tracks=4, seconds=1.2)  # two artists, two tracks each
    args = ["eval", "artists", str(corpus), "--out", str(tmp_path / "art"), "--cache", str(tmp_path / "models"),
            "--adapter", NAME, "--steps", "2", "--finetune-steps", "1", "--seeds", "2", "--draws", "2",
            "--loss-draws", "2", "--queries", "0", "--query-audio", str(_held_out(tmp_path / "held")),
            "--method", "unlearning:prompt", "--method", "similar:latent_stats", "--method", "random"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "art" / "artists.json").read_text())
    assert doc["artists"] == ["Artist 0", "Artist 1"] and len(doc["truth"]) == 1 and len(doc["truth"][0]) == 2
    # the reference, and per seed its full-data fine-tune and one fine-tune without each artist (the estimate's
    # timing probes train elsewhere)
    cached = [t for t in tiny_recipe.trained if (tmp_path / "models") in Path(t["out"]).parents]
    assert len(cached) == 1 + 2 * 3 and len(doc["models"]) == 6
    removed = [t["exclude"] for t in cached[1:]]
    assert sum(not r for r in removed) == 2 and all(len(r) in (0, 2) for r in removed)  # an artist's two tracks
    assert set(doc["summary"]) == {"unlearning:prompt", "similar:latent_stats", "random"}
    assert doc["truth_summary"]["seed_sd"] is not None and (tmp_path / "art" / "artists.md").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len([t for t in tiny_recipe.trained if (tmp_path / "models") in Path(t["out"]).parents]) == 7  # all reused
    assert json.loads((tmp_path / "art" / "artists.json").read_text())["truth"] == doc["truth"]
