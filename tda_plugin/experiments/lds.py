"""The linear datamodeling score (LDS): the field's standard ground truth for attribution.

Ilyas et al. 2022 (Datamodels) and Park et al. 2023 (TRAK) defined it; D-TRAK (Zheng et al., ICLR 2024) and
DAS (Lin et al., ICLR 2025) use it for diffusion models. M models are trained with the adapter's
:class:`~tda_plugin.registry.TrainingRecipe` on random subsets S_j holding a fraction α of the index's
segments (the rest excluded as the counterfactual excludes them: same seed and initialisation for every
model, crops drawn as with all data and only those touching excluded audio swapped). For each query,

    LDS = Spearman_j( Σ_{i∈S_j} score_i ,  −L(query; θ_j) )

where L is the query's training loss (its own fixed draws) under subset model j. A score says how much a
segment helps the query, so the subsets predicted to help most should leave the query the lowest loss:
hence the minus sign (correlating the sums with +L would flip every figure). One set of subset models
serves every query and every method, which averages out the retraining noise that one leave-K-out
comparison drowns in. With ``seeds`` > 1 each subset is trained once per seed and L averaged (as D-TRAK
and DAS do with three), and the Spearman correlation between two seeds' losses over the subsets says how
much of the ground truth is data rather than training noise (``reliability``).

Layout of ``out``: queries/ (generated clips), scores/ (each method's scores per query), losses.json
(the query losses per subset model), lds.json/.md/.png; trained models live in the model cache
(default ``out/models``), keyed by subset and recipe settings, shared with the counterfactual.
"""
from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from ..atomic import write_json
from ..attributor import Attributor
from ..catalog import read_catalog
from ..errors import TdaError
from ..index.paths import resolve
from ..index.store import read_meta
from ..progress import task
from ..registry import get_adapter_spec
from ..settings import IndexSettings, UnlearnSettings
from .methods import REGISTRY, check_patterns, open_context, select
from .metrics import linear_datamodeling_score, mean_interval, paired_test
from .outputs import interval_bars, markdown_table
from .retraining import (LOSS_SEED_OFFSET, ModelCache, Query, catalogue_segments, check_queries, excluded_ranges,
                         experiment_queries, held_out_queries, measure_costs, query_loss)
from .scores import ScoreStore, all_scores


@dataclass(frozen=True)
class Plan:
    #: an index directory (its model is the reference) or a catalogue (the recipe trains the reference)
    target: Path
    out: Path
    #: model cache (default ``out/models``)
    cache: Path | None = None
    #: model family whose recipe trains the subset models (default: the index's adapter)
    adapter: str | None = None
    subset_models: int = 32
    alpha: float = 0.5
    #: training seeds per subset (seed, seed + 1, ...); the query's loss is averaged over them
    seeds: int = 1
    steps: int = 400
    seed: int = 0
    #: loss draws per segment of the reference's index (catalogue target). 16, not the index default of 64: every
    #: method here scores every segment on every draw, so 64 would quadruple the scoring of a run planned to fit
    #: in about an hour; the LDS of a 64-draw index (``--draws 64``) is in docs/experiments/draws-64.md
    draws: int = 16
    #: draws of each query loss under each subset model
    loss_draws: int = 64
    queries: int = 16
    query_audio: Path | None = None
    methods: tuple[str, ...] = ("*",)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise TdaError("alpha (the fraction of segments each subset keeps) must be between 0 and 1")
        if self.subset_models < 3 or self.seeds < 1 or self.steps < 1 or self.loss_draws < 1:
            raise TdaError("need at least 3 subset models, 1 seed, 1 training step and 1 loss draw")
        check_queries(self.queries, self.query_audio)
        check_patterns(self.methods)

    @property
    def is_index(self) -> bool:
        return (Path(self.target) / "index.json").is_file()

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def random_subsets(ids: Sequence[int], count: int, alpha: float, seed: int) -> list[list[int]]:
    """``count`` subsets of ``ids``, each of round(α·N) ids drawn without replacement; subset j depends only on
    (seed, j), so adding subsets later keeps the first ones (and their trained models)."""
    size = max(1, round(alpha * len(ids)))
    return [sorted(int(i) for i in np.random.default_rng([seed, 0x1D5, j]).choice(ids, size=size, replace=False))
            for j in range(count)]


class Lds:
    """One LDS run (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        if plan.is_index:
            meta = read_meta(plan.target)
            self.corpus = resolve(meta.corpus, Path(plan.target), meta.origin or None)
            self.spec = get_adapter_spec(plan.adapter or meta.adapter)
        else:
            self.corpus = Path(plan.target)
            self.spec = get_adapter_spec(plan.adapter or "stable-audio")
        self.tracks = read_catalog(self.corpus)
        self.cache = ModelCache(plan.cache or plan.out / "models", self.spec, self.tracks)
        self.losses_path = plan.out / "losses.json"
        self.losses: dict[str, dict[str, float]] = json.loads(self.losses_path.read_text()) if self.losses_path.is_file() else {}

    # -- the reference, its queries and the subsets ------------------------------------------------------
    def reference(self) -> Attributor:
        plan = self.plan
        if plan.is_index:
            return Attributor.from_index(plan.target)
        key = self.cache.train(seed=plan.seed, steps=plan.steps, exclude={}, note={"role": "reference"})
        return self.cache.reference_index(key, self.corpus, self._index_settings())

    def queries(self, att: Attributor) -> list[Query]:
        plan = self.plan
        return experiment_queries(self.cache.recipe, att, self.tracks, generated=plan.queries, seed=plan.seed,
                                  folder=plan.out / "queries", held_out=plan.query_audio)

    def subsets(self, att: Attributor) -> list[list[int]]:
        return random_subsets(sorted(att.index.segments), self.plan.subset_models, self.plan.alpha, self.plan.seed)

    def _model_key(self, att: Attributor, kept: list[int], seed: int) -> str:
        removed = sorted(set(att.index.segments) - set(kept))
        return self.cache.key(seed=seed, steps=self.plan.steps, exclude=excluded_ranges(att, removed))

    # -- estimate ------------------------------------------------------------------------------------------
    def _built_reference(self) -> Attributor | None:
        """The reference's attributor if it exists already (an index target, or a cached reference and index)."""
        plan = self.plan
        if plan.is_index:
            return Attributor.from_index(plan.target)
        key = self.cache.key(seed=plan.seed, steps=plan.steps, exclude={})
        return self.reference() if self.cache.has_index(key, self._index_settings()) else None

    def _index_settings(self) -> IndexSettings:
        return IndexSettings(seed=self.plan.seed, draws=self.plan.draws)

    def estimate(self) -> list[tuple[str, float]]:
        """(part, seconds) of what is still to do, from timing probes on this machine (trains 25 probe steps);
        the scoring line is an upper bound (stored scores are not subtracted)."""
        plan = self.plan
        lines: list[tuple[str, float]] = []
        att = self._built_reference()
        if att is not None:
            missing = sum(not self.cache.has(self._model_key(att, kept, plan.seed + s))
                          for kept in self.subsets(att) for s in range(plan.seeds))
            costs = measure_costs(self.cache.recipe, self.spec, self.tracks, plan.seed, plan.draws, model=att.adapter,
                                  train=missing > 0)
            n, draws = len(att.index.segments), int(att.index.meta.settings["draws"])
        else:
            costs = measure_costs(self.cache.recipe, self.spec, self.tracks, plan.seed, plan.draws)
            n, draws = catalogue_segments(self.tracks, costs.segment_seconds), plan.draws
            lines.append(("reference model and its index", costs.training(plan.steps, 1) + 6 * n * costs.segment_forward))
            missing = plan.subset_models * plan.seeds
        queries = plan.queries + (len(held_out_queries(plan.query_audio)) if plan.query_audio else 0)
        passes = unlearning_passes(plan.methods)
        lines += [
            (f"{missing} subset models × {plan.steps} steps", costs.training(plan.steps, missing)),
            (f"scores (at most): {queries} queries × {passes} unlearning passes, one gradient pass",
             queries * passes * costs.unlearning(n, UnlearnSettings.unlearn_draws, draws) + costs.gradient_pass(n)),
            (f"query losses: {queries} queries × {plan.subset_models * plan.seeds} models",
             queries * plan.subset_models * plan.seeds * costs.segment_forward * plan.loss_draws / draws)]
        if any(fnmatch.fnmatchcase("output_change", p) for p in plan.methods):
            lines.append((f"output change: {queries + 1} forward passes over the catalogue",
                          (queries + 1) * n * costs.segment_forward))
        return lines

    # -- run -----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        plan = self.plan
        started = time.monotonic()
        att = self.reference()
        ctx = open_context(att, plan.methods)
        methods = select(ctx, plan.methods)
        queries = self.queries(att)
        scores = all_scores(ctx, methods, queries, ScoreStore(plan.out, ctx))
        subsets = self.subsets(att)
        ids = sorted(att.index.segments)
        masks = np.array([np.isin(ids, kept) for kept in subsets], dtype=np.float64)
        losses, models = self._losses(att, queries, subsets)  # [seeds, M, Q]
        mean_losses = losses.mean(axis=0)
        per_query = {m.name: [linear_datamodeling_score(scores[m.name][q], masks, mean_losses[:, q])
                              for q in range(len(queries))] for m in methods}
        sources = [q.source for q in queries]
        doc = {**ctx.header("lds"), "wall_s": round(time.monotonic() - started, 1), "plan": plan.to_dict(),
               "queries": [q.describe() for q in queries], "methods": {m.name: m.cache_key for m in methods},
               "subsets": subsets, "models": models, "losses": losses.tolist(), "per_query": per_query, "costs": ctx.costs,
               "summary": summarise(per_query, sources), "ground_truth": ground_truth(losses)}
        return doc

    def _losses(self, att: Attributor, queries: list[Query], subsets: list[list[int]]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The query losses [seeds, M, Q] under every subset model (trained first unless cached)."""
        plan = self.plan
        loss_seed = int(att.index.meta.settings["seed"]) + LOSS_SEED_OFFSET
        tag = f"s{loss_seed}-d{plan.loss_draws}"
        out = np.zeros((plan.seeds, len(subsets), len(queries)))
        models = []
        with task("subset models", plan.seeds * len(subsets)) as advance:
            for s in range(plan.seeds):
                for j, kept in enumerate(subsets):
                    removed = sorted(set(att.index.segments) - set(kept))
                    key = self.cache.train(seed=plan.seed + s, steps=plan.steps, exclude=excluded_ranges(att, removed),
                                           note={"role": "lds subset", "subset": j, "alpha": plan.alpha})
                    have = self.losses.setdefault(key, {})
                    todo = [q for q in queries if f"{q.key}/{tag}" not in have]
                    if todo:
                        model = self.cache.load(key)
                        for q in todo:
                            assert q.encoded is not None
                            have[f"{q.key}/{tag}"] = query_loss(model, q.encoded, loss_seed, plan.loss_draws)
                        write_json(self.losses_path, self.losses)
                    out[s, j] = [have[f"{q.key}/{tag}"] for q in queries]
                    models.append({"key": key, "subset": j, "seed": plan.seed + s, "cpu_s": self.cache.record(key)["cpu_s"]})
                    advance(1)
        return out, models


def unlearning_passes(patterns: Sequence[str]) -> int:
    """How many distinct unlearning passes per query the selected methods need (normalisations share one)."""
    keys = set()
    chosen = {m.name for m in REGISTRY.values() if any(fnmatch.fnmatchcase(m.name, p) for p in patterns)}
    chosen |= {p for name in list(chosen) for p in REGISTRY[name].parts}  # a derived method needs its parts
    for m in REGISTRY.values():
        if "attribute" in m.settings and m.name in chosen:
            a = dict(m.settings["attribute"])
            a["unlearn"] = {k: v for k, v in a["unlearn"].items() if k != "normalize"}
            keys.add(json.dumps([a, m.settings.get("prompt")], sort_keys=True, default=str))
    return len(keys)


#: the method every other is tested against: ``tda attribute``'s default
DEFAULT = "unlearning"


def summarise(per_query: dict[str, list[float]], sources: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: mean LDS over queries with its bootstrap 95 % interval, overall and per query source, and (when the
    default was measured too) the paired Wilcoxon signed-rank test against the default over queries, two-sided."""
    out = {}
    for name, values in per_query.items():
        row: dict[str, Any] = mean_interval(values)
        row["by_source"] = {src: mean_interval([v for v, s in zip(values, sources) if s == src])["mean"]
                            for src in sorted(set(sources))}
        if DEFAULT in per_query and name != DEFAULT:
            row["vs_default"] = versus(values, per_query[DEFAULT])
        out[name] = row
    return out


def versus(values: Sequence[float], default: Sequence[float]) -> dict[str, float]:
    """The paired test of ``values`` against the default's, query by query: mean difference with its interval and the
    two-sided Wilcoxon p (the one convention every command reports)."""
    t = paired_test(values, default)
    return {"diff_mean": t["diff_mean"], "diff_low": t["diff_low"], "diff_high": t["diff_high"],
            "p_two_sided": t["p_two_sided"]}


def ground_truth(losses: np.ndarray) -> dict[str, float]:
    """How much the subset models' query losses say about data rather than noise: their spread over subsets
    relative to the mean, and (two or more seeds) the mean Spearman correlation between two seeds' losses."""
    mean = losses.mean(axis=0)  # [M, Q]
    out = {"loss_mean": float(mean.mean()), "loss_sd_over_subsets": float(mean.std(axis=0).mean())}
    if losses.shape[0] >= 2:
        rs = [stats.spearmanr(losses[0, :, q], losses[1, :, q]).statistic for q in range(losses.shape[2])]
        out["reliability"] = float(np.nanmean(rs))
    return out


def _versus_cells(t: dict[str, float] | None) -> list[str]:
    """The two Markdown cells of a paired test against the default ("–" for the default itself)."""
    if t is None:
        return ["–", "–"]
    p = t["p_two_sided"]
    return [f"{t['diff_mean']:+.3f}", "–" if not np.isfinite(p) else f"{p:.2g}"]


def render(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary, plan = doc["summary"], doc["plan"]
    sources = sorted({q["source"] for q in doc["queries"]})
    rows = [[name, s["mean"], f"[{s['low']:.3f}, {s['high']:.3f}]", *(s["by_source"].get(src, float("nan")) for src in sources),
             *_versus_cells(s.get("vs_default")), s["n"]]
            for name, s in sorted(summary.items(), key=lambda kv: -np.nan_to_num(kv[1]["mean"], nan=-9))]
    gt = doc["ground_truth"]
    note = (f"ground truth: query loss {gt['loss_mean']:.4g}, spread over subsets {gt['loss_sd_over_subsets']:.3g}"
            + (f", seed-to-seed Spearman {gt['reliability']:.3f}" if "reliability" in gt else ""))
    md = (f"Linear datamodeling score: {plan['subset_models']} subset models (α = {plan['alpha']}, {plan['seeds']} seed(s), "
          f"{plan['steps']} steps), {len(doc['queries'])} queries, {doc['segments']} segments\n\n"
          + markdown_table(["method", "LDS", "95 % interval", *(f"LDS ({s})" for s in sources),
                            f"− {DEFAULT}", "p (two-sided)", "queries"], rows)
          + f"\n{note}\n")

    return md, {"methods": interval_bars({r[0]: summary[r[0]] for r in rows}, "tab:blue",
                                         "LDS (mean over queries, 95 % bootstrap interval)")}

