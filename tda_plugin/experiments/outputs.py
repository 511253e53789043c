"""Every experiment writes the same three things: ``<name>.json``, ``<name>.md`` and PNG plots.

JSON is the machine-readable record (settings, machine, wall time, every figure); the Markdown
table is what docs/evaluation.md and docs/experiments/ quote; plots use matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, write_json, write_text

Plot = Callable[[Any], None]  # draws on a matplotlib Axes


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''}".strip() + f", {torch.get_num_threads()} torch threads"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, name: str, doc: dict[str, Any], markdown: str, plots: dict[str, Plot]) -> list[Path]:
    """Write ``name``.json/.md and one PNG per plot; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    write_json(written[0], doc)
    write_text(written[1], markdown)
    for plot_name, draw in plots.items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        draw(ax)
        fig.tight_layout()
        path = out_dir / f"{name}-{plot_name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(path)
    return written


def interval_bars(intervals: dict[str, dict[str, float]], color: str, xlabel: str) -> Plot:
    """A plot of one horizontal bar per method (in the order given): its mean with the 95 % interval
    (:func:`~tda_plugin.experiments.metrics.mean_interval`'s ``mean``/``low``/``high``) and a line at 0."""
    def draw(ax: Any) -> None:
        names = list(intervals)
        means = np.array([intervals[n]["mean"] for n in names])
        err = np.array([[intervals[n]["mean"] - intervals[n]["low"], intervals[n]["high"] - intervals[n]["mean"]]
                        for n in names]).T
        ax.barh(np.arange(len(names)), means, xerr=np.nan_to_num(err), color=color)
        ax.set_yticks(np.arange(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(xlabel)

    return draw
