"""The hyperparameter grid of Choi et al. (2025, Table 1) over the unlearning settings.

A grid file (TOML) lists values per axis; every combination is a point:

    subset = ["cross_attn_kv", "cross_attn", "self_attn", "blocks"]
    mask_silence = [true, false]      # mask silent frames of the clip while unlearning
    mask_score = [false, true]        # mask silent frames of each training segment while scoring
    relative_step = [1e-4, 1e-3]      # step size as rms(Δ)/rms(θ)
    steps = [1, 4]                    # 1: the Newton step; >1: ascent with the EWC penalty
    unlearn_draws = [16, 64]          # draws averaged for the clip's gradient
    query_timesteps = [[0, 1], [0.5, 1]]  # quantile range of the timesteps of the clip's loss

Each point gets the self-influence figures over the same targets; between points we report how
consistent the scores are (Spearman and Kendall rank correlation, top-k overlap, averaged over the
targets), as the paper compares its settings.
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..attributor import Attributor
from ..errors import TdaError
from ..settings import UnlearnSettings
from .metrics import correlations, topk_overlap
from .context import Context
from .outputs import markdown_table
from .self_influence import SelfInfluence, Setting, label, render, run_points

AXES = ("subset", "mask_silence", "mask_score", "relative_step", "steps", "unlearn_draws", "query_timesteps")


def read_grid(path: Path) -> dict[str, list[Any]]:
    """Axis -> values, validated; axes left out keep the default setting."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TdaError(f"{path}: cannot read the grid ({exc})") from None
    unknown = sorted(set(raw) - set(AXES))
    if unknown:
        raise TdaError(f"{path}: unknown grid axes {', '.join(unknown)} (known: {', '.join(AXES)})")
    grid = {axis: _values(axis, raw[axis]) for axis in AXES if axis in raw}
    if any(not values for values in grid.values()):
        raise TdaError(f"{path}: every grid axis needs at least one value")
    return grid


def _values(axis: str, value: Any) -> list[Any]:
    """An axis's list of values; a lone value stands for itself (a lone range, for ``query_timesteps``)."""
    single = not isinstance(value, list) or (axis == "query_timesteps" and not any(isinstance(v, list) for v in value))
    values = [value] if single else value
    return [tuple(v) for v in values] if axis == "query_timesteps" else values


def points(grid: dict[str, list[Any]], base: UnlearnSettings = UnlearnSettings()) -> list[Setting]:
    """Every combination of the axes' values as a :class:`Setting`."""
    axes = list(grid)
    out = []
    for values in itertools.product(*(grid[a] for a in axes)):
        point = dict(zip(axes, values))
        steps = int(point.get("steps", base.steps))
        unlearn = replace(base, **{a: v for a, v in point.items() if a not in ("steps", "mask_score")},
                          steps=steps, mode="ascent" if steps > 1 else "newton")
        out.append(Setting(point, unlearn, bool(point.get("mask_score", False))))
    return out


def register_points(grid: list[Setting]) -> list[str]:
    """Register each point as an unlearning method ``grid:<axis=value,...>`` (for the LDS and the counterfactual,
    which compare methods); their names, in grid order. ``mask_score`` is a self-influence axis only."""
    from ..settings import AttributeSettings
    from .methods import register_unlearning

    if any(p.mask_score for p in grid):
        raise TdaError("mask_score is an axis of `tda eval grid` only; leave it out of this grid")
    names = []
    for p in grid:
        name = "grid:" + label(p.label).replace(", ", ",")
        register_unlearning(name, AttributeSettings(p.unlearn))
        names.append(name)
    return names


def consistency(runs: list[SelfInfluence], k: int) -> dict[str, np.ndarray]:
    """[P, P] matrices of the mean (over targets) Spearman, Kendall and top-k overlap between points."""
    n = len(runs)
    mats = {name: np.eye(n) for name in ("spearman", "kendall", f"top{k}_overlap")}
    for a, b in itertools.combinations(range(n), 2):
        per_target = [(correlations(runs[a].scores[t], runs[b].scores[t]), topk_overlap(runs[a].scores[t], runs[b].scores[t], k))
                      for t in runs[a].scores]
        values = {"spearman": np.nanmean([c["spearman"] for c, _ in per_target]),
                  "kendall": np.nanmean([c["kendall"] for c, _ in per_target]),
                  f"top{k}_overlap": np.mean([o for _, o in per_target])}
        for name, v in values.items():
            mats[name][a, b] = mats[name][b, a] = v
    return mats



def grid_doc(att: Attributor, grid: list[Setting], targets: int, k: int,
             batch_size: int) -> dict[str, Any]:
    doc, runs = run_points(Context.open(att), grid, targets, k, batch_size, "grid")
    mats = consistency(runs, k)
    doc["consistency"] = {name: m.round(4).tolist() for name, m in mats.items()}
    return doc


def render_grid(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The points table (as self-influence) plus each point's mean consistency with the other points."""
    md, plots = render(doc)
    n = len(doc["settings"])
    names = list(doc["consistency"])
    rows = [[j + 1, *(float((sum(doc["consistency"][m][j]) - 1) / max(1, n - 1)) for m in names)] for j in range(n)]
    md = ("| point | setting |\n|---|---|\n" + "".join(f"| {j + 1} | {label(s['setting'])} |\n" for j, s in enumerate(doc["settings"]))
          + "\n" + md + "\nMean consistency of each point with the others:\n\n" + markdown_table(["point", *names], rows))

    def heatmap(ax: Any) -> None:
        im = ax.imshow(np.array(doc["consistency"]["spearman"]), vmin=-1, vmax=1, cmap="RdBu")
        ax.set_title("Spearman correlation of scores between grid points")
        ax.set_xlabel("point")
        ax.set_ylabel("point")
        ax.figure.colorbar(im, ax=ax)

    return md, {**plots, "consistency": heatmap}
