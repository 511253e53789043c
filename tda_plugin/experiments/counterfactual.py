"""Counterfactual retraining (Wang et al. 2024, §5.1), with the queries, seeds and tests to tell methods apart.

A reference model is trained from scratch with the adapter's :class:`~tda_plugin.registry.TrainingRecipe` (fixed
seed and step budget), indexed, and queried: Q clips it generates (prompts spread over the catalogue's
captions) and any held-out audio (``query_audio``). For each query and each K, every method of the registry
(:mod:`.methods`: ``unlearning``, ``similar:<embedder>``, ...) names the K segments it credits most. Random
removal does not depend on the query, so R random sets per K are drawn once and serve every query. Each
removal is then trained for every training seed:

* ``finetune`` (default, ``finetune_steps`` > 0): starting from the reference, fine-tuned for F steps with and
  without the removed segments (same seed); Δloss = L(without) − L(with). Cheaper per model, and the two
  models share their whole history up to the fine-tuning, so the noise floor is an order lower (measured in
  docs/experiments/counterfactual.md: low enough to tell methods apart on 16 queries); but the removed data was seen during
  pre-training, so effects are smaller too;
* ``scratch`` (``finetune_steps`` = 0): from the same initialisation and crop order as that seed's full-data
  reference, for the same step budget; Δloss = L(query; without) − L(query; that seed's reference).

Reported per method and K: the mean Δloss over queries (each query's Δ averaged over seeds; random: over
seeds and sets) with a 95 % bootstrap interval; Wilcoxon signed-rank tests, paired over queries, of every
method against random and of every non-similarity method against each similarity baseline; the noise floor
(spread of Δloss over random sets, and between seeds); optionally Δclip, the log-spectral distance (dB) of
the clip a model regenerates (same prompt and seed) to the one its seed's reference regenerates.

Honest savings: equal removal sets share one model (any query, method, run, or the LDS, through the shared
model cache); the random sets' models are measured on every query; each seed's reference serves every
removal; scores, losses and clip distances are stored as they finish, so an interrupted run resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import write_json
from ..attributor import Attributor
from ..catalog import read_catalog
from ..errors import TdaError
from ..progress import task
from ..registry import get_adapter_spec
from ..settings import UnlearnSettings
from .methods import check_patterns, matching, open_context, select
from .metrics import mean_interval, paired_test
from .outputs import markdown_table
from .retraining import (LOSS_SEED_OFFSET, ModelCache, Query, can_fine_tune, catalogue_segments, check_queries,
                         excluded_ranges, experiment_queries, held_out_queries, measure_costs, median_cpu, query_loss)
from .scores import ScoreStore, all_scores

RANDOM = "random"


@dataclass(frozen=True)
class Plan:
    corpus: Path
    out: Path
    adapter: str = "stable-audio"
    queries: int = 16
    ks: tuple[int, ...] = (2, 8)
    steps: int = 1500
    seed: int = 0
    #: loss draws of the reference's index: 16, not the index default of 64, for the budget (as in the LDS's plan)
    draws: int = 16
    #: training seeds per removal (seed, seed + 1, ...), each with its own reference
    seeds: int = 2
    #: random removal sets per K, shared by every query
    random_sets: int = 4
    query_audio: Path | None = None
    #: F > 0: fine-tune the reference for F steps with and without the removed data; 0: retrain from scratch.
    #: Fine-tuning is the default because its noise floor is an order lower (docs/experiments/counterfactual.md)
    finetune_steps: int = 50
    loss_draws: int = 64
    #: methods that choose what to remove (registry patterns); random removal is always added
    methods: tuple[str, ...] = ("unlearning", "similar:*")
    #: also measure Δclip (one generation per model and generated query)
    regenerate: bool = True
    #: model cache (default ``out/models``)
    cache: Path | None = None

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1 or self.seeds < 1 or self.random_sets < 1 or self.steps < 1:
            raise TdaError("K, seeds, random sets and steps must all be at least 1")
        if self.finetune_steps < 0 or self.loss_draws < 1:
            raise TdaError("fine-tuning steps must be >= 0 and loss draws >= 1")
        check_queries(self.queries, self.query_audio)
        check_patterns(self.methods)

    @property
    def regime(self) -> str:
        """What a Δloss was measured under: runs of another regime in the same folder are kept apart."""
        base = f"scratch-{self.steps}" if not self.finetune_steps else f"finetune-{self.finetune_steps}-from-{self.steps}"
        return f"{base}-d{self.loss_draws}"

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of log-magnitude STFTs (dB), channels averaged: how much a regenerated clip changed."""
    def spec(x: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1, np.asarray(x).shape[-1]).mean(axis=0))
        mag = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
        return 20 * torch.log10(mag + 1e-5)

    return float(torch.sqrt(torch.mean((spec(a) - spec(b)) ** 2)))


def top_k(scores: np.ndarray, ids: Sequence[int], k: int) -> list[int]:
    """The k best ids (ties by id, as attribution reports them), in id order."""
    order = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))
    return sorted(ids[j] for j in order[:k])


def random_sets(ids: Sequence[int], ks: Sequence[int], count: int, seed: int) -> dict[tuple[int, int], list[int]]:
    """(K, r) -> K ids drawn without replacement; set r of K depends only on (seed, K, r), not on any query."""
    return {(k, r): sorted(int(i) for i in np.random.default_rng([seed, 0xC0F, k, r]).choice(ids, size=k, replace=False))
            for k in ks for r in range(count)}


@dataclass(frozen=True)
class Use:
    """One measurement a removal model serves: query ``q`` under ``method`` (set ``r`` for random) at K."""

    q: int
    method: str
    k: int
    r: int | None = None


class Counterfactual:
    """One counterfactual run in ``plan.out``: queries/, scores/, results.json; models in the model cache."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.spec = get_adapter_spec(plan.adapter)
        self.tracks = read_catalog(plan.corpus)
        self.cache = ModelCache(plan.cache or plan.out / "models", self.spec, self.tracks)
        if plan.finetune_steps and not can_fine_tune(self.cache.recipe):
            raise TdaError(f"the training recipe of {plan.adapter!r} cannot fine-tune (its train() takes no init): "
                           "run with --finetune-steps 0 (retraining from scratch)")
        self.results_path = plan.out / "results.json"
        self.results: dict[str, Any] = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {}

    # -- models ----------------------------------------------------------------------------------------
    def base_key(self) -> str:
        return self.cache.reference_key(seed=self.plan.seed, steps=self.plan.steps)

    def reference(self) -> Attributor:
        """The model attributions are computed on (trained from scratch with the plan's seed), and its index."""
        return self.cache.reference(self.plan.corpus, seed=self.plan.seed, steps=self.plan.steps, draws=self.plan.draws)

    def _train_args(self, seed: int, exclude: Any) -> dict[str, Any]:
        plan = self.plan
        if plan.finetune_steps:
            return {"seed": seed, "steps": plan.finetune_steps, "exclude": exclude, "init": self.base_key()}
        return {"seed": seed, "steps": plan.steps, "exclude": exclude}

    def _model(self, seed: int, exclude: Any, role: str) -> str:
        return self.cache.train(**self._train_args(seed, exclude), note={"role": role, "regime": self.plan.regime})

    def _has_model(self, seed: int, exclude: Any) -> bool:
        return self.cache.has(self.cache.key(**self._train_args(seed, exclude)))

    # -- estimate --------------------------------------------------------------------------------------
    def estimate(self) -> list[tuple[str, float]]:
        """(part, seconds) still to do, from timing probes on this machine; method models are an upper bound
        (equal removal sets share a model, which is only known once the queries are scored)."""
        plan = self.plan
        steps = plan.finetune_steps or plan.steps
        seeds = [plan.seed + s for s in range(plan.seeds)]
        lines: list[tuple[str, float]] = []
        att = self.reference() if self.cache.has_reference(seed=plan.seed, steps=plan.steps, draws=plan.draws) else None
        if att is None:
            costs = measure_costs(self.cache.recipe, self.spec, self.tracks, plan.seed, plan.draws)
            n = catalogue_segments(self.tracks, costs.segment_seconds)
            lines.append(("reference model and its index", costs.training(plan.steps, 1) + 6 * n * costs.segment_forward))
            fixed = len(seeds) * (1 + plan.random_sets * len(plan.ks))
        else:
            costs = measure_costs(self.cache.recipe, self.spec, self.tracks, plan.seed, plan.draws, model=att.adapter)
            n = len(att.index.segments)
            sets = random_sets(sorted(att.index.segments), plan.ks, plan.random_sets, plan.seed).values()
            fixed = sum(not self._has_model(s, {}) for s in seeds) + \
                sum(not self._has_model(s, excluded_ranges(att, ids)) for s in seeds for ids in sets)
        queries = plan.queries + (len(held_out_queries(plan.query_audio)) if plan.query_audio else 0)
        method_count = len([m for m in matching(plan.methods) if m != RANDOM])
        per_method = queries * len(plan.ks) * len(seeds)
        mode = f"fine-tuned {steps} steps" if plan.finetune_steps else f"trained {steps} steps"
        lines += [
            (f"{fixed} seed references and random-removal models, {mode}", costs.training(steps, fixed)),
            (f"at most {per_method * method_count} method removal models ({method_count} methods), {mode}",
             costs.training(steps, per_method * method_count)),
            (f"scores: {queries} queries", queries * costs.unlearning(n, UnlearnSettings.unlearn_draws, plan.draws))]
        if plan.regenerate:
            gens = plan.queries * len(seeds) * (1 + len(plan.ks) * (plan.random_sets + method_count))
            lines.append((f"{gens} regenerated clips", gens * costs.generation))
        return lines

    # -- run -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        plan = self.plan
        started = time.monotonic()
        att = self.reference()
        ctx = open_context(att, plan.methods)
        methods = [m for m in select(ctx, plan.methods) if m.name != RANDOM]
        queries = self._queries(att)
        scores = all_scores(ctx, methods, queries, ScoreStore(plan.out, ctx))
        ids = sorted(att.index.segments)
        jobs: dict[tuple[int, ...], list[Use]] = {}
        for m in methods:
            for qi in range(len(queries)):
                for k in plan.ks:
                    jobs.setdefault(tuple(top_k(scores[m.name][qi], ids, k)), []).append(Use(qi, m.name, k))
        for (k, r), removed in random_sets(ids, plan.ks, plan.random_sets, plan.seed).items():
            uses = jobs.setdefault(tuple(removed), [])
            uses += [Use(qi, RANDOM, k, r) for qi in range(len(queries))]
        self._measure(att, queries, jobs)
        runs = [self.results[self._record_key(queries[u.q], u, plan.seed + s)]
                for uses in jobs.values() for u in uses for s in range(plan.seeds)]
        return {**ctx.header("counterfactual"), "wall_s": round(time.monotonic() - started, 1), "plan": plan.to_dict(),
                "queries": [q.describe() for q in queries], "methods": {m.name: m.cache_key for m in methods},
                "runs": runs, "summary": summarise(runs), "noise": noise_floor(runs),
                "models": {"removal_models": len({r["model"] for r in runs}), "seed_references": len({r["reference"] for r in runs}),
                           "cpu_s_median": median_cpu(self.cache, sorted({r["model"] for r in runs}))}}

    def _queries(self, att: Attributor) -> list[Query]:
        plan = self.plan
        return experiment_queries(self.cache.recipe, att, self.tracks, generated=plan.queries, seed=plan.seed,
                                  folder=plan.out / "queries", held_out=plan.query_audio)

    def _record_key(self, q: Query, use: Use, seed: int) -> str:
        method = use.method if use.r is None else f"{RANDOM}{use.r}"
        return f"{self.plan.regime}/{q.key}/k{use.k}/{method}/s{seed}"

    def _measure(self, att: Attributor, queries: list[Query], jobs: dict[tuple[int, ...], list[Use]]) -> None:
        """Train (or reuse) every removal model for every seed and measure the queries it serves."""
        plan = self.plan
        loss_seed = plan.seed + LOSS_SEED_OFFSET
        todo = [(s, removed, uses) for s in range(plan.seeds) for removed, uses in sorted(jobs.items())
                if any(self._record_key(queries[u.q], u, plan.seed + s) not in self.results for u in uses)]
        with task("removal models", len(todo)) as advance:
            for s in range(plan.seeds):
                seed = plan.seed + s
                mine = [(removed, uses) for t, removed, uses in todo if t == s]
                if not mine:
                    continue
                ref_key = self._model(seed, {}, "seed reference")
                ref = self.cache.load(ref_key)
                ref_loss = [query_loss(ref, q.encoded, loss_seed, plan.loss_draws) for q in queries]
                ref_clip: dict[int, np.ndarray] = {}
                for removed, uses in mine:
                    key = self._model(seed, excluded_ranges(att, removed), "removal")
                    model = self.cache.load(key)
                    for use in uses:
                        q = queries[use.q]
                        rkey = self._record_key(q, use, seed)
                        if rkey in self.results:
                            continue
                        loss = query_loss(model, q.encoded, loss_seed, plan.loss_draws)
                        clip_db = None
                        if plan.regenerate and q.seed is not None:
                            if use.q not in ref_clip:
                                ref_clip[use.q] = self._regenerate(ref, att, q)
                            clip_db = log_spectral_distance(self._regenerate(model, att, q), ref_clip[use.q])
                        self.results[rkey] = {
                            "regime": plan.regime, "query": use.q, "query_key": q.key, "source": q.source, "prompt": q.prompt,
                            "k": use.k, "method": use.method, "set": use.r, "seed": seed, "removed": list(removed),
                            "model": key, "reference": ref_key, "loss": loss, "reference_loss": ref_loss[use.q],
                            "delta_loss": loss - ref_loss[use.q], "delta_clip_db": clip_db}
                    write_json(self.results_path, self.results)
                    advance(1)

    def _regenerate(self, model: Any, att: Attributor, q: Query) -> np.ndarray:
        return self.cache.recipe.generate(model, q.prompt, seconds_total=float(q.seconds_total or 0.0),
                                          samples=att.index.meta.segment_samples, seed=int(q.seed or 0))


def per_query(runs: Sequence[dict[str, Any]], field: str = "delta_loss") -> dict[tuple[str, int], dict[str, float]]:
    """(method, K) -> query key -> the query's mean ``field`` over seeds (and, for random, over sets)."""
    acc: dict[tuple[str, int], dict[str, list[float]]] = {}
    for r in runs:
        if r.get(field) is not None:
            acc.setdefault((r["method"], r["k"]), {}).setdefault(r["query_key"], []).append(r[field])
    return {mk: {q: float(np.mean(v)) for q, v in by_q.items()} for mk, by_q in acc.items()}


def _paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    common = sorted(set(a) & set(b))
    return paired_test([a[q] for q in common], [b[q] for q in common])


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """method -> K -> mean Δloss over queries with its interval, Δclip, the paired test against random and
    (non-similarity methods) against each similarity baseline."""
    loss, clip = per_query(runs), per_query(runs, "delta_clip_db")
    methods = sorted({m for m, _ in loss}, key=lambda m: (m != RANDOM, m.startswith("similar:"), m))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in methods:
        for k in sorted({k for mm, k in loss if mm == m}):
            row: dict[str, Any] = {**mean_interval(list(loss[(m, k)].values())),
                                   "delta_clip_db": float(np.mean(list(clip[(m, k)].values()))) if (m, k) in clip else None}
            if m != RANDOM and (RANDOM, k) in loss:
                row["vs_random"] = _paired(loss[(m, k)], loss[(RANDOM, k)])
            if m != RANDOM and not m.startswith("similar:"):
                row["vs"] = {b: _paired(loss[(m, k)], loss[(b, k)]) for b in methods
                             if b.startswith("similar:") and (b, k) in loss}
            out.setdefault(m, {})[str(k)] = row
    return out


def noise_floor(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """K -> the spread of Δloss that no attribution explains: over the random sets of one query and seed (SD), and
    between training seeds of one removal and query (SD over seeds, mean over removals)."""
    out: dict[str, dict[str, float]] = {}
    for k in sorted({r["k"] for r in runs}):
        sets: dict[tuple[str, int], list[float]] = {}
        seeds: dict[tuple[str, str, Any], list[float]] = {}
        for r in runs:
            if r["k"] != k:
                continue
            if r["method"] == RANDOM:
                sets.setdefault((r["query_key"], r["seed"]), []).append(r["delta_loss"])
            seeds.setdefault((r["query_key"], r["method"], r["set"]), []).append(r["delta_loss"])
        out[str(k)] = {
            "random_sd": float(np.mean([np.std(v, ddof=1) for v in sets.values() if len(v) > 1])) if any(len(v) > 1 for v in sets.values()) else float("nan"),
            "seed_sd": float(np.mean([np.std(v, ddof=1) for v in seeds.values() if len(v) > 1])) if any(len(v) > 1 for v in seeds.values()) else float("nan"),
            "random_mean": float(np.mean([np.mean(v) for v in sets.values()])) if sets else float("nan")}
    return out


def render(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary, plan = doc["summary"], doc["plan"]

    def p(v: float) -> str:
        return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"

    rows, versus = [], []
    for m, per_k in summary.items():
        for k, v in per_k.items():
            vr = v.get("vs_random", {})
            rows.append([m, int(k), v["mean"], f"[{v['low']:.3g}, {v['high']:.3g}]",
                         p(vr.get("diff_mean")), p(vr.get("p_greater")),
                         "–" if v["delta_clip_db"] is None else f"{v['delta_clip_db']:.2f}", v["n"]])
            for b, t in v.get("vs", {}).items():
                versus.append([m, b, int(k), t["diff_mean"], f"[{t['diff_low']:.3g}, {t['diff_high']:.3g}]",
                               p(t["p_greater"]), p(t["p_two_sided"]), f"{t['wins']:.2f}"])
    mode = (f"fine-tuned {plan['finetune_steps']} steps from the reference" if plan["finetune_steps"]
            else f"retrained from scratch for {plan['steps']} steps")
    noise = "; ".join(f"K={k}: random sets SD {v['random_sd']:.3g}, seed-to-seed SD {v['seed_sd']:.3g}"
                      for k, v in doc["noise"].items())
    md = (f"Counterfactual: K segments removed by each method, {mode}, {plan['seeds']} seed(s), "
          f"{plan['random_sets']} random sets per K, {len(doc['queries'])} queries\n\n"
          + markdown_table(["method", "K", "Δloss (mean)", "95 % interval", "− random", "p (> random)", "Δclip (dB)",
                            "queries"], rows)
          + (("\nPaired against each similarity baseline (Wilcoxon signed-rank over queries):\n\n"
              + markdown_table(["method", "baseline", "K", "mean difference", "95 % interval", "p (greater)",
                                "p (two-sided)", "share of queries ahead"], versus)) if versus else "")
          + f"\nNoise floor: {noise}\n")

    def lines(ax: Any) -> None:
        for m, per_k in summary.items():
            ks = sorted(per_k, key=int)
            mean = np.array([per_k[k]["mean"] for k in ks])
            err = np.array([[per_k[k]["mean"] - per_k[k]["low"], per_k[k]["high"] - per_k[k]["mean"]] for k in ks]).T
            ax.errorbar([int(k) for k in ks], mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=m)
        ax.set_xlabel("K segments removed")
        ax.set_ylabel("rise of the query's loss")
        ax.legend(fontsize=7)

    return md, {"delta-loss": lines}
