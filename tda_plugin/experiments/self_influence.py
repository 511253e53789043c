"""Self-influence (Choi et al. 2025, §5.1): unlearn a training segment itself; it should rank first.

For each target the segment's own audio is attributed with its own conditioning against every
segment (no prefilter). Per setting we report the paper's figures:

* R: the mean rank of the target among all segments (1.0 is perfect), and the fraction at rank 1;
* sim_top{k} / sim_bot{k}: mean cosine similarity of the target to its top-k and bottom-k attributed
  segments under each embedder (the paper's CLAP_topk / CLAP_botk, with the embedders available
  offline); the target itself is left out of both lists;
* precision@k: the fraction of the top-k (target left out) from the target's artist.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..attributor import Attributor
from ..evaluation import segment_audio
from ..progress import task
from ..settings import AttributeSettings, UnlearnSettings
from .context import Context
from .score_mask import MaskedScorer
from .metrics import Scores, ordered, rank_of


@dataclass(frozen=True)
class Setting:
    """One point of an experiment: its label (the varied values), the unlearning settings, scoring masks."""

    label: dict[str, Any]
    unlearn: UnlearnSettings
    #: score training segments on their non-silent frames only (:mod:`.score_mask`)
    mask_score: bool = False


@dataclass
class SelfInfluence:
    """Scores of every target under one setting, and the figures derived from them."""

    setting: dict[str, Any]
    scores: dict[int, Scores] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


def target_scores(att: Attributor, sid: int, settings: AttributeSettings, scorer: MaskedScorer | None = None) -> Scores:
    """Exact scores of all segments after unlearning segment ``sid`` (its audio and conditioning);
    with a ``scorer``, training segments are scored on their non-silent frames only."""
    seg = att.index.segments[sid]
    track = att.index.tracks[seg.track_id]
    sr, audio = att.index.meta.sample_rate, segment_audio(att, sid)
    if scorer is not None:
        un = settings.unlearn
        query = att.encode_query(audio, sr, track.caption, un.mask_silence, name=f"segment {sid}",
                                 seconds_start=seg.start_s, seconds_total=track.duration_s)
        names, delta, _, _ = att.forget(query, un)
        return scorer.scores(names, delta, un)
    every = AttributeSettings(unlearn=settings.unlearn, top=settings.top, candidates="all", batch_size=settings.batch_size,
                              conditioning="prompt")  # every segment's exact score: the prompted scorer, ungated
    result = att.attribute(audio, sr, prompt=track.caption, settings=every,
                           seconds_start=seg.start_s, seconds_total=track.duration_s, path=f"segment {sid}")
    return result.scores


def figures(att: Attributor, scores: dict[int, Scores], embeddings: dict[str, np.ndarray], k: int) -> dict[str, float]:
    """The per-setting figures from the targets' scores; ``embeddings`` rows are in segment-id order."""
    ids = sorted(att.index.segments)
    row = {sid: j for j, sid in enumerate(ids)}
    artist = {sid: att.index.tracks[s.track_id].artist for sid, s in att.index.segments.items()}
    ranks = [rank_of(sc, t) for t, sc in scores.items()]
    out = {"R": float(np.mean(ranks)), "rank1": float(np.mean([r == 1 for r in ranks]))}
    precision, sims = [], {name: ([], []) for name in embeddings}
    for t, sc in scores.items():
        order = [s for s in ordered(sc) if s != t]
        top, bottom = order[:k], order[-k:]
        precision.append(np.mean([artist[s] == artist[t] for s in top]))
        for name, emb in embeddings.items():
            sims[name][0].append(float(np.mean(emb[[row[s] for s in top]] @ emb[row[t]])))
            sims[name][1].append(float(np.mean(emb[[row[s] for s in bottom]] @ emb[row[t]])))
    out[f"precision@{k}"] = float(np.mean(precision))
    for name, (top_sims, bottom_sims) in sims.items():
        out[f"sim_top{k}.{name}"] = float(np.mean(top_sims))
        out[f"sim_bot{k}.{name}"] = float(np.mean(bottom_sims))
    return out


def run_self_influence(att: Attributor, targets: list[int], settings: AttributeSettings, setting: dict[str, Any],
                       embeddings: dict[str, np.ndarray], k: int = 10, scorer: MaskedScorer | None = None) -> SelfInfluence:
    out = SelfInfluence(setting)
    with task(f"self-influence {label(setting)}", len(targets)) as advance:
        for t in targets:
            out.scores[t] = target_scores(att, t, settings, scorer)
            advance(1)
    out.figures = figures(att, out.scores, embeddings, min(k, len(att.index.segments) - 1))
    return out


def self_influence_doc(att: Attributor, grid: list[Setting], targets: int, k: int, batch_size: int) -> dict[str, Any]:
    """Self-influence figures for each setting over the same covering targets."""
    doc, _ = run_points(Context.open(att), grid, targets, k, batch_size, "self-influence")
    return doc


def run_points(ctx: Context, grid: list[Setting], targets: int, k: int, batch_size: int,
               experiment: str) -> tuple[dict[str, Any], list[SelfInfluence]]:
    chosen = ctx.targets(targets)
    scorer = MaskedScorer(ctx.att, batch_size) if any(s.mask_score for s in grid) else None
    runs = [run_self_influence(ctx.att, chosen, AttributeSettings(s.unlearn, batch_size=batch_size), s.label,
                               ctx.embeddings, k, scorer if s.mask_score else None) for s in grid]
    doc = {**ctx.header(experiment), "targets": chosen, "k": k,
           "target_ranks": {label(r.setting): {str(t): rank_of(sc, t) for t, sc in r.scores.items()} for r in runs},
           "settings": [{"setting": r.setting, "unlearn": s.unlearn.to_dict(), "mask_score": s.mask_score,
                         "figures": r.figures} for r, s in zip(runs, grid)]}
    return doc, runs


def render(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Markdown table and plots of a self-influence (or grid) document: one row per setting."""
    from .outputs import markdown_table

    rows = doc["settings"]
    keys = [k for k in rows[0]["figures"]] if rows else []
    md = markdown_table(["setting", *keys], [[label(r["setting"]), *(r["figures"][k] for k in keys)] for r in rows])

    def ranks(ax: Any) -> None:
        ax.bar(range(len(rows)), [r["figures"]["R"] for r in rows])
        names = [label(r["setting"]) for r in rows]
        if max(map(len, names)) > 24:  # long grid labels: point numbers, as in the Markdown table
            ax.set_xticks(range(len(rows)), [str(j + 1) for j in range(len(rows))])
            ax.set_xlabel("point")
        else:
            ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_ylabel("mean rank of the target (R; 1 is perfect)")

    return md, {"mean-rank": ranks}


def label(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "default"
