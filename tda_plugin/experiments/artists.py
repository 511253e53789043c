"""A per-artist ground truth: fine-tune the reference without each artist, and see whose removal hurts a clip most.

Artists are paid per artist, so the question a payment rests on is: which artists' music did this clip need, and
how much? For every artist a and training seed s, the reference is fine-tuned for F steps without a's tracks
(the counterfactual's fine-tuning design, :mod:`.counterfactual`: same seed, same start, same steps as that
seed's full-data fine-tune, so the two differ only in a's data). A query's true reliance on a is

    Δ_a(q) = mean_s [ L(q; θ_{−a,s}) − L(q; θ_{full,s}) ]

Each method's scores become artist shares exactly as ``tda attribute`` reports them (its top segments, a track's
credit by the ``track_credit`` rule, shares of the positive mass), 0 for an artist it does not pay. Per query:
Spearman between the shares and Δ over the catalogue's artists, and whether the artist the method pays most is
the artist whose removal hurts most (``top_hit``). Over queries: means with bootstrap intervals, and each
method's paired Wilcoxon test against the default (two-sided, as :mod:`.lds` reports).

Layout of ``out``: queries/, scores/ (the same layout as the LDS's, so one folder can serve both and score each
method once), artist-losses.json (query losses per model), artists.json/.md/.png. Models live in the model cache, shared with the LDS and the counterfactual: the
reference and each seed's full-data fine-tune are the counterfactual's own.
"""
from __future__ import annotations

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
from ..credits import build_credits
from ..errors import TdaError
from ..progress import task
from ..registry import get_adapter_spec
from ..settings import AttributeSettings, IndexSettings, TrackCredit
from .lds import DEFAULT, versus
from .methods import check_patterns, open_context, select
from .metrics import mean_interval
from .outputs import interval_bars, markdown_table
from .retraining import (LOSS_SEED_OFFSET, ModelCache, Query, can_fine_tune, catalogue_segments, check_queries,
                         excluded_ranges, experiment_queries, held_out_queries, measure_costs, query_loss)
from .scores import ScoreStore, all_scores


@dataclass(frozen=True)
class Plan:
    corpus: Path
    out: Path
    adapter: str = "stable-audio"
    queries: int = 16
    query_audio: Path | None = None
    #: training steps of the reference (trained from scratch, as the counterfactual's)
    steps: int = 1500
    seed: int = 0
    #: loss draws of the reference's index
    draws: int = IndexSettings.draws
    #: fine-tuning seeds per artist (seed, seed + 1, ...), each against that seed's full-data fine-tune
    seeds: int = 2
    finetune_steps: int = 50
    loss_draws: int = 64
    methods: tuple[str, ...] = ("*",)
    #: how shares are computed from scores: ``tda attribute``'s own top and track-credit rule
    top: int = AttributeSettings.top
    track_credit: TrackCredit = AttributeSettings.track_credit
    cache: Path | None = None

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.steps < 1 or self.finetune_steps < 1 or self.loss_draws < 1 or self.top < 1:
            raise TdaError("seeds, steps, fine-tuning steps, loss draws and top must all be at least 1")
        check_queries(self.queries, self.query_audio)
        check_patterns(self.methods)

    @property
    def regime(self) -> str:
        return f"finetune-{self.finetune_steps}-from-{self.steps}-d{self.loss_draws}"

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def artist_shares(scores: np.ndarray, ids: Sequence[int], att: Attributor, artists: Sequence[str], top: int,
                  track_credit: TrackCredit) -> np.ndarray:
    """The share each of ``artists`` gets from ``scores`` (segment-id order), as ``tda attribute`` reports it."""
    ranked = sorted(zip(ids, scores.tolist()), key=lambda kv: (-kv[1], kv[0]))
    _, _, paid = build_credits(ranked, att.index.segments, att.index.tracks, top, track_credit)
    share = {a["artist"]: a["share"] for a in paid}
    return np.array([share.get(a, 0.0) for a in artists])


def agreement(shares: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Spearman between a method's artist shares and the true rises (0 where the method pays nobody, or all alike:
    no ordering is no information), and whether its best-paid artist is the one whose removal hurts most."""
    rho = stats.spearmanr(shares, truth).statistic if np.ptp(shares) > 0 and np.ptp(truth) > 0 else 0.0
    return {"spearman": float(rho), "top_hit": float(np.argmax(shares) == np.argmax(truth)) if shares.max() > 0 else 0.0}


class Artists:
    """One per-artist run in ``plan.out`` (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.spec = get_adapter_spec(plan.adapter)
        self.tracks = read_catalog(plan.corpus)
        self.cache = ModelCache(plan.cache or plan.out / "models", self.spec, self.tracks)
        if not can_fine_tune(self.cache.recipe):
            raise TdaError(f"the training recipe of {plan.adapter!r} cannot fine-tune (its train() takes no init), "
                           "and the per-artist ground truth fine-tunes the reference without each artist")
        # its own file, so that a run may share ``out`` (its queries and stored scores) with an LDS run
        self.losses_path = plan.out / "artist-losses.json"
        self.losses: dict[str, dict[str, float]] = json.loads(self.losses_path.read_text()) if self.losses_path.is_file() else {}
        #: the one fine-tuned model held in memory (key -> adapter)
        self._loaded: dict[str, Any] = {}

    def base_key(self) -> str:
        return self.cache.reference_key(seed=self.plan.seed, steps=self.plan.steps)

    def reference(self) -> Attributor:
        return self.cache.reference(self.plan.corpus, seed=self.plan.seed, steps=self.plan.steps, draws=self.plan.draws)

    def artists(self) -> list[str]:
        return sorted({t.artist for t in self.tracks})

    def _removed(self, att: Attributor, artist: str | None) -> dict[Path, list[tuple[float, float]]]:
        """The exclusion of ``artist``'s segments (None: nothing, the full-data fine-tune)."""
        if artist is None:
            return {}
        return excluded_ranges(att, [sid for sid, seg in att.index.segments.items()
                                     if att.index.tracks[seg.track_id].artist == artist])

    def estimate(self) -> list[tuple[str, float]]:
        plan = self.plan
        n_models = plan.seeds * (len(self.artists()) + 1)
        have_ref = self.cache.has_reference(seed=plan.seed, steps=plan.steps, draws=plan.draws)
        att = self.reference() if have_ref else None
        costs = measure_costs(self.cache.recipe, self.spec, self.tracks, plan.seed, plan.draws,
                              model=att.adapter if att else None)
        n = len(att.index.segments) if att else catalogue_segments(self.tracks, costs.segment_seconds)
        queries = plan.queries + (len(held_out_queries(plan.query_audio)) if plan.query_audio else 0)
        lines = [] if att else [("reference model and its index", costs.training(plan.steps, 1) + 6 * n * costs.segment_forward)]
        return lines + [
            (f"{n_models} fine-tunes ({len(self.artists())} artists and the full data × {plan.seeds} seeds), "
             f"{plan.finetune_steps} steps", costs.training(plan.finetune_steps, n_models)),
            (f"scores: {queries} queries (each method's own cost; unlearning at most)",
             queries * 2 * costs.unlearning(n, AttributeSettings().unlearn.unlearn_draws, plan.draws)),
            (f"query losses: {queries} queries × {n_models} models",
             queries * n_models * costs.segment_forward * plan.loss_draws / max(1, plan.draws))]

    def run(self) -> dict[str, Any]:
        plan = self.plan
        started = time.monotonic()
        att = self.reference()
        ctx = open_context(att, plan.methods)
        methods = select(ctx, plan.methods)
        queries = experiment_queries(self.cache.recipe, att, self.tracks, generated=plan.queries, seed=plan.seed,
                                     folder=plan.out / "queries", held_out=plan.query_audio)
        scores = all_scores(ctx, methods, queries, ScoreStore(plan.out, ctx))
        artists = self.artists()
        deltas, models = self._deltas(att, queries, artists)  # [seeds, Q, A]
        truth = deltas.mean(axis=0)
        ids = sorted(att.index.segments)
        per_query = {m.name: [agreement(artist_shares(scores[m.name][j], ids, att, artists, plan.top, plan.track_credit),
                                        truth[j]) for j in range(len(queries))] for m in methods}
        return {**ctx.header("artists"), "wall_s": round(time.monotonic() - started, 1), "plan": plan.to_dict(),
                "queries": [q.describe() for q in queries], "artists": artists, "truth": truth.tolist(),
                "models": models, "methods": {m.name: m.cache_key for m in methods}, "costs": ctx.costs,
                "per_query": per_query, "summary": summarise(per_query),
                "truth_summary": {"hurt_most": [artists[int(np.argmax(row))] for row in truth],
                                  "mean_rise": float(truth.mean()),
                                  # the truth's own noise floor: SD of a rise between seeds, mean over queries and artists
                                  "seed_sd": float(deltas.std(axis=0, ddof=1).mean()) if plan.seeds > 1 else None}}

    def _deltas(self, att: Attributor, queries: list[Query], artists: list[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Δ_a(q) per seed [seeds, Q, A], training or reusing every fine-tune and storing every query loss."""
        plan = self.plan
        loss_seed = int(att.index.meta.settings["seed"]) + LOSS_SEED_OFFSET
        tag = f"s{loss_seed}-d{plan.loss_draws}"
        deltas = np.zeros((plan.seeds, len(queries), len(artists)))
        models = []
        with task("artist fine-tunes", plan.seeds * (len(artists) + 1)) as advance:
            for s in range(plan.seeds):
                seed = plan.seed + s
                full = [self._loss(seed, None, att, q, loss_seed, tag) for q in queries]
                models.append({"seed": seed, "artist": None, "key": self._key(seed, None, att)})
                advance(1)
                for a, artist in enumerate(artists):
                    deltas[s, :, a] = [self._loss(seed, artist, att, q, loss_seed, tag) - f for q, f in zip(queries, full)]
                    models.append({"seed": seed, "artist": artist, "key": self._key(seed, artist, att)})
                    advance(1)
        return deltas, models

    def _key(self, seed: int, artist: str | None, att: Attributor) -> str:
        return self.cache.key(seed=seed, steps=self.plan.finetune_steps, exclude=self._removed(att, artist),
                              init=self.base_key())

    def _loss(self, seed: int, artist: str | None, att: Attributor, q: Query, loss_seed: int, tag: str) -> float:
        key = self._key(seed, artist, att)
        have = self.losses.setdefault(key, {})
        if f"{q.key}/{tag}" not in have:
            role = "seed reference" if artist is None else "artist removal"
            self.cache.train(seed=seed, steps=self.plan.finetune_steps, exclude=self._removed(att, artist),
                             init=self.base_key(), note={"role": role, "artist": artist, "regime": self.plan.regime})
            if key not in self._loaded:
                self._loaded = {key: self.cache.load(key)}
            assert q.encoded is not None
            have[f"{q.key}/{tag}"] = query_loss(self._loaded[key], q.encoded, loss_seed, self.plan.loss_draws)
            write_json(self.losses_path, self.losses)
        return have[f"{q.key}/{tag}"]


def summarise(per_query: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per method: mean Spearman with its interval, the top-artist hit rate, and the paired test against the default."""
    out: dict[str, dict[str, Any]] = {}
    for name, rows in per_query.items():
        rho = [r["spearman"] for r in rows]
        out[name] = {"spearman": mean_interval(rho), "top_hit": float(np.mean([r["top_hit"] for r in rows])),
                     "top_hits": int(sum(r["top_hit"] for r in rows)), "queries": len(rows)}
        if DEFAULT in per_query and name != DEFAULT:
            out[name]["vs_default"] = versus(rho, [r["spearman"] for r in per_query[DEFAULT]])
    return out


def render(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary, plan = doc["summary"], doc["plan"]

    def p(t: dict[str, float] | None) -> list[str]:
        if t is None:
            return ["–", "–"]
        return [f"{t['diff_mean']:+.3f}", "–" if not np.isfinite(t["p_two_sided"]) else f"{t['p_two_sided']:.2g}"]

    rows = [[name, s["spearman"]["mean"], f"[{s['spearman']['low']:.3f}, {s['spearman']['high']:.3f}]",
             f"{s['top_hits']}/{s['queries']}", *p(s.get("vs_default"))]
            for name, s in sorted(summary.items(), key=lambda kv: -np.nan_to_num(kv[1]["spearman"]["mean"], nan=-9))]
    sd = doc["truth_summary"]["seed_sd"]
    md = (f"Per-artist ground truth: the reference ({plan['steps']} steps) fine-tuned {plan['finetune_steps']} steps "
          f"without each of {len(doc['artists'])} artists, {plan['seeds']} seed(s), {len(doc['queries'])} queries, "
          f"{doc['segments']} segments\n\n"
          + markdown_table(["method", "Spearman (shares vs true rises)", "95 % interval",
                            "pays most the artist whose removal hurts most", f"− {DEFAULT}", "p (two-sided)"], rows)
          + f"\nmean rise of a query's loss without an artist {doc['truth_summary']['mean_rise']:.4g}"
          + (f"; seed-to-seed SD of a rise {sd:.3g}" if sd is not None else "") + "\n")

    return md, {"methods": interval_bars({r[0]: summary[r[0]]["spearman"] for r in rows}, "tab:green",
                                         "Spearman of artist shares with the true rises (mean over queries, 95 % interval)")}
