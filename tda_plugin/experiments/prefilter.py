"""`tda eval prefilter`: recall of the exhaustive top-k inside each embedder's top M (:mod:`tda_plugin.recall`).

Queries are generated clips (prompts from their stored credits) and/or covering training segments
with 20 dB noise (near-copies, each with its segment's conditioning). A user picks ``--candidates``
from the table for the recall they need.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import audio as audio_io
from ..attributor import Attributor
from ..evaluation import add_noise, segment_audio
from ..recall import KS, Query, evaluate_prefilter
from ..registry import embedders
from ..settings import AttributeSettings
from ..sketch import SKETCH_DIM
from .compare import find_queries
from .context import Context
from .outputs import markdown_table


def clip_queries(folder: Path) -> list[Query]:
    """Every audio file in ``folder`` with the prompt its stored credits record."""
    out = []
    for q in find_queries(folder):
        data, sr = audio_io.load(q.path)
        out.append(Query(q.path.name, data, sr, q.prompt))
    return out


def noisy_queries(att: Attributor, segment_ids: Sequence[int], seed: int = 0) -> list[Query]:
    """The given training segments with 20 dB noise, each with its track's caption."""
    rng = np.random.default_rng(seed)
    sr = att.index.meta.sample_rate
    return [Query(f"segment {sid} + noise 20 dB", add_noise(segment_audio(att, sid), sr, rng), sr,
                  att.index.tracks[att.index.segments[sid].track_id].caption) for sid in segment_ids]


def prefilter_doc(att: Attributor, clips: Path | None, noisy: int, fractions: Sequence[float],
                  settings: AttributeSettings, sketch_dims: Sequence[int] = (SKETCH_DIM,)) -> dict[str, Any]:
    ctx = Context(att, {})
    queries = (clip_queries(clips) if clips else []) + (noisy_queries(att, ctx.targets(noisy)) if noisy else [])
    n = len(att.index.segments)
    table = evaluate_prefilter(att, queries, sorted(embedders()), ks=[k for k in KS if k < n], fractions=fractions,
                               settings=settings, sketch_dims=sketch_dims)
    return {**ctx.header("prefilter"), "table": table.to_dict()}


def render_prefilter(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    t = doc["table"]
    fr, n = t["fractions"], t["segments"]
    header = ["embedder", "k", *(f"M={t['m'][str(f)]} ({100 * f:g}%)" for f in fr)]
    rows = [[e, k, *(byk[k][str(f)] for f in fr)] for e, byk in t["recall"].items() for k in byk]
    md = (f"Recall of the exhaustive top-k within the prefilter's top-M ({len(t['queries'])} queries, N={n})\n\n"
          + markdown_table(header, rows))

    def curves(ax: Any) -> None:
        k = str(min(t["ks"]))
        for e, byk in t["recall"].items():
            ax.plot([100 * f for f in fr], [byk[k][str(f)] for f in fr], marker="o", label=e)
        ax.set_xlabel("M, % of N")
        ax.set_ylabel(f"recall of the exhaustive top-{k}")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)

    return md, {"recall": curves}

