"""Counterfactual retraining (Wang et al. 2024, §5.1), the gold standard, at small scale.

A reference model is trained from scratch with a fixed seed and step budget (the adapter's
:class:`~tda_plugin.registry.TrainingRecipe`), indexed, and made to generate Q query clips. For each
query and each K, K training segments are removed, chosen by each method:

* ``unlearning``: the top-K by exact unlearning score;
* ``random``: K random segments (seeded per query and K);
* ``similar:<embedder>``: the K most similar segments to the clip under each embedder.

The model is retrained from the same initialisation and seed without them, and we measure

* Δloss: the rise of the query's loss (its own fixed draws) from the reference to the retrained model;
* Δclip: the log-spectral distance between the clip regenerated under the same prompt and seed and
  the query clip (which the reference generated with that seed).

A method whose removals raise Δloss (and Δclip) more has found the data the clip depends on. Every
retrained model and every measurement is saved as it finishes, so an interrupted run resumes.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf
import torch

from ..atomic import atomic_path, write_json
from ..attributor import Attributor, EncodedQuery
from ..catalog import read_catalog
from ..errors import TdaError
from ..index.builder import build_index
from ..progress import stderr
from ..randomness import make_draws, query_stream
from ..registry import AdapterSpec, TrainingRecipe, get_adapter_spec
from ..settings import AttributeSettings, IndexSettings
from .context import Context
from .embeddings import query_embedding
from .metrics import ordered
from .outputs import markdown_table

#: training steps timed to estimate the run's duration before it starts
PROBE_STEPS = 5


@dataclass(frozen=True)
class Plan:
    corpus: Path
    out: Path
    adapter: str
    queries: int
    ks: tuple[int, ...]
    steps: int
    seed: int = 0
    draws: int = 16

    def methods(self, embedders: Sequence[str]) -> list[str]:
        return ["unlearning", "random", *(f"similar:{e}" for e in embedders)]


def recipe_of(spec: AdapterSpec) -> TrainingRecipe:
    if spec.recipe is None:
        raise TdaError(f"adapter {spec.name!r} provides no training recipe; counterfactual evaluation needs one")
    return spec.recipe


def estimate_seconds(plan: Plan, retrains: int) -> float:
    """Time two short trainings (PROBE_STEPS and 4×PROBE_STEPS): their difference is the cost per step, the
    rest the fixed cost of a run (building the model, reading the catalogue); scale to the whole run.
    When timing noise hides the difference, every probe second counts as steps (an upper bound)."""
    import tempfile

    recipe = recipe_of(get_adapter_spec(plan.adapter))
    tracks = read_catalog(plan.corpus)
    took = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (PROBE_STEPS, 4 * PROBE_STEPS):
            t0 = time.monotonic()
            recipe.train(tracks, Path(tmp), seed=plan.seed, steps=steps, exclude={})
            took.append(time.monotonic() - t0)
    per_step = (took[1] - took[0]) / (3 * PROBE_STEPS)
    if per_step <= 0.02 * took[0] / PROBE_STEPS:  # lost in noise: bound it by the longer probe
        per_step = took[1] / (4 * PROBE_STEPS)
    fixed = max(0.0, took[0] - PROBE_STEPS * per_step)
    return (fixed + plan.steps * per_step) * (retrains + 1)


def log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of log-magnitude STFTs (dB), channels averaged: how much a regenerated clip changed."""
    def spec(x: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1, np.asarray(x).shape[-1]).mean(axis=0))
        mag = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
        return 20 * torch.log10(mag + 1e-5)

    return float(torch.sqrt(torch.mean((spec(a) - spec(b)) ** 2)))


def query_loss(adapter: Any, query: EncodedQuery, seed: int, draws: int) -> float:
    """The query's training loss under its own fixed draws, over its unmasked frames."""
    d = make_draws(seed, [query_stream(w) for w in range(len(query.conditioning))], draws)
    with torch.no_grad():
        return float(adapter.loss(query.encoded, adapter.condition(query.conditioning), d, query.mask).mean())


def removal_sets(att: Attributor, scores: dict[int, float], query: EncodedQuery, embeddings: dict[str, np.ndarray],
                 k: int, seed: int) -> dict[str, list[int]]:
    """Segment ids each method removes for one query."""
    ids = sorted(att.index.segments)
    sets = {"unlearning": ordered(scores)[:k],
            "random": sorted(np.random.default_rng(seed).choice(ids, size=k, replace=False).tolist())}
    for name, emb in embeddings.items():
        sims = emb @ query_embedding(att, name, query)
        sets[f"similar:{name}"] = [ids[j] for j in np.argsort(-sims, kind="stable")[:k]]
    return sets


def excluded_ranges(att: Attributor, segment_ids: list[int]) -> dict[Path, list[tuple[float, float]]]:
    out: dict[Path, list[tuple[float, float]]] = {}
    for sid in segment_ids:
        seg = att.index.segments[sid]
        out.setdefault(Path(att.index.tracks[seg.track_id].resolved), []).append((seg.start_s, seg.end_s))
    return out


class Counterfactual:
    """One counterfactual run in ``plan.out``: reference/, index/, queries/, models/, results.json."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.spec = get_adapter_spec(plan.adapter)
        self.recipe = recipe_of(self.spec)
        self.tracks = read_catalog(plan.corpus)
        self.results_path = plan.out / "results.json"
        self.results: dict[str, Any] = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {}

    def _model(self, name: str, exclude: dict[Path, list[tuple[float, float]]]) -> Any:
        folder = self.plan.out / "models" / name
        ckpt, cfg = folder / "model.safetensors", folder / "model_config.json"
        if not (ckpt.is_file() and cfg.is_file()):
            self.recipe.train(self.tracks, folder, seed=self.plan.seed, steps=self.plan.steps, exclude=exclude)
        return self.spec.load(ckpt, model_config=cfg, device="cpu"), ckpt, cfg

    def run(self) -> dict[str, Any]:
        plan = self.plan
        reference, ckpt, cfg = self._model("reference", {})
        build_index(plan.corpus, plan.out / "index", reference, checkpoint=ckpt, model_config=cfg,
                    settings=IndexSettings(seed=plan.seed, draws=plan.draws))
        att = Attributor.from_index(plan.out / "index", adapter=reference)
        ctx = Context.open(att)
        prompts = sorted({t.caption for t in self.tracks if t.caption}) or [None]
        total = float(np.median([t.duration_s for t in att.index.tracks.values()]))
        samples = att.index.meta.segment_samples
        settings = AttributeSettings(candidates="all")
        for q in range(plan.queries):
            prompt = prompts[int(q * len(prompts) / plan.queries) % len(prompts)]
            clip = self.recipe.generate(reference, prompt, seconds_total=total, samples=samples, seed=plan.seed + q)
            wav = plan.out / "queries" / f"query_{q:02d}.wav"
            with atomic_path(wav) as tmp:
                sf.write(str(tmp), clip.T, att.index.meta.sample_rate, format="WAV", subtype="FLOAT")
            query = att.encode_query(clip, att.index.meta.sample_rate, prompt, True, name=str(wav), seconds_total=total)
            scores = att.attribute(clip, att.index.meta.sample_rate, prompt=prompt, settings=settings, seconds_total=total).scores
            base_loss = query_loss(reference, query, plan.seed + 2, plan.draws)
            for k in plan.ks:
                for method, removed in removal_sets(att, scores, query, ctx.embeddings, k, plan.seed * 7919 + 31 * q + k).items():
                    key = f"q{q}/k{k}/{method}"
                    if key in self.results:
                        continue
                    name = "without-" + hashlib.sha1(json.dumps(sorted(removed)).encode()).hexdigest()[:12]
                    model, _, _ = self._model(name, excluded_ranges(att, removed))  # equal sets share one model
                    regenerated = self.recipe.generate(model, prompt, seconds_total=total, samples=samples, seed=plan.seed + q)
                    self.results[key] = {"query": q, "prompt": prompt, "k": k, "method": method, "removed": removed,
                                         "delta_loss": query_loss(model, query, plan.seed + 2, plan.draws) - base_loss,
                                         "delta_clip_db": log_spectral_distance(regenerated, clip)}
                    write_json(self.results_path, self.results)
        return {**ctx.header("counterfactual"), "plan": {k: str(v) if isinstance(v, Path) else v for k, v in plan.__dict__.items()},
                "runs": list(self.results.values()), "summary": summarise(list(self.results.values()))}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> K -> mean Δloss / Δclip over queries, and how often the method beat random."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    random = {(r["query"], r["k"]): r for r in runs if r["method"] == "random"}
    for method in sorted({r["method"] for r in runs}):
        for k in sorted({r["k"] for r in runs}):
            sel = [r for r in runs if r["method"] == method and r["k"] == k]
            if not sel:
                continue
            beats = [r["delta_loss"] > random[(r["query"], k)]["delta_loss"] for r in sel
                     if (r["query"], k) in random and method != "random"]
            out.setdefault(method, {})[str(k)] = {"delta_loss": float(np.mean([r["delta_loss"] for r in sel])),
                                                  "delta_clip_db": float(np.mean([r["delta_clip_db"] for r in sel])),
                                                  "beats_random": float(np.mean(beats)) if beats else float("nan"),
                                                  "queries": len(sel)}
    return out


def render(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary = doc["summary"]
    rows = [[m, int(k), v["delta_loss"], v["delta_clip_db"], v["beats_random"], v["queries"]]
            for m, per_k in summary.items() for k, v in per_k.items()]
    md = ("Counterfactual retraining: removing K segments chosen by each method, retraining from the same seed\n\n"
          + markdown_table(["method", "K", "Δloss of the query", "Δclip (dB)", "Δloss > random", "queries"], rows))

    def lines(ax: Any) -> None:
        for m, per_k in summary.items():
            ks = sorted(per_k, key=int)
            ax.plot([int(k) for k in ks], [per_k[k]["delta_loss"] for k in ks], marker="o", label=m)
        ax.set_xlabel("K segments removed")
        ax.set_ylabel("rise of the query's loss")
        ax.legend(fontsize=7)

    return md, {"delta-loss": lines}


def announce(seconds: float, retrains: int) -> None:
    stderr.print(f"counterfactual evaluation: {retrains} retrainings + the reference; their training alone takes "
                 f"about {seconds / 60:.0f} min on this machine (plus indexing, generating and scoring; "
                 f"finished runs are reused on a rerun)")
