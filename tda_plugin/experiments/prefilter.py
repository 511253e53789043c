"""Prefilter recall: does the embedder's top-M contain the exhaustive top-k?

For each query, exact scores over all segments give the true top-k; each embedder's top-M by cosine
similarity (what the FAISS prefilter returns) is checked for how many of them it holds. A user picks
``--candidates`` M from the table for the recall they need.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import audio as audio_io
from ..attributor import Attributor, EncodedQuery
from ..evaluation import segment_audio
from ..settings import AttributeSettings
from .compare import Query
from .context import Context
from .outputs import markdown_table
from .self_influence import target_scores
from .embeddings import query_embedding
from .metrics import Scores, recall_at

DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)


def candidate_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """M for each fraction of N (at least 1, at most N, each M once)."""
    return sorted({min(n, max(1, round(f * n))) for f in fractions})


def recall_table(exact: list[Scores], queries: list[EncodedQuery], att: Any, embeddings: dict[str, np.ndarray],
                 ms: list[int], ks: Sequence[int] = (10, 100),
                 exclude: Sequence[int | None] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """embedder -> "top{k}" -> M -> mean recall over the queries, for each k below N. ``exclude``: per query, a
    segment left out of the candidates too (a training segment used as its own query)."""
    ids = np.array(sorted(att.index.segments))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, emb in embeddings.items():
        order = [[i for i in ids[np.argsort(-(emb @ query_embedding(att, name, q)), kind="stable")].tolist() if i != skip]
                 for q, skip in zip(queries, exclude or [None] * len(queries))]
        out[name] = {f"top{k}": {str(m): float(np.mean([recall_at(sc, o[:m], k)
                                                   for sc, o in zip(exact, order)])) for m in ms}
                     for k in ks if k < len(ids)}
    return out


def _encoded(att: Attributor, audio: np.ndarray, sr: int, prompt: str | None, name: str) -> EncodedQuery:
    return att.encode_query(audio, sr, prompt, True, name=name)


def prefilter_doc(att: Attributor, queries: list[Query] | None, targets: int, fractions: Sequence[float],
                  settings: AttributeSettings) -> dict[str, Any]:
    """Exact scores of every query over all segments, then each embedder's recall at each M."""
    ctx = Context.open(att)
    exact, encoded, names, skip = [], [], [], []
    if queries is None:  # training segments as queries: their own segment is left out of the exact ranking
        for sid in ctx.targets(targets):
            seg = att.index.segments[sid]
            scores = dict(target_scores(att, sid, settings))
            scores.pop(sid)
            exact.append(scores)
            encoded.append(_encoded(att, segment_audio(att, sid), att.index.meta.sample_rate,
                                    att.index.tracks[seg.track_id].caption, f"segment {sid}"))
            names.append(f"segment {sid}")
            skip.append(sid)
    else:
        for q in queries:
            exact.append(att.attribute_file(q.path, prompt=q.prompt, settings=settings).scores)
            data, sr = audio_io.load(q.path)
            encoded.append(_encoded(att, data, sr, q.prompt, str(q.path)))
            names.append(str(q.path))
            skip.append(None)
    n = len(att.index.segments)
    ms = candidate_counts(n, fractions)
    table = recall_table(exact, encoded, att, ctx.embeddings, ms, exclude=skip)
    return {**ctx.header("prefilter"), "queries": names, "M": ms, "fractions": list(fractions), "recall": table}


def render_prefilter(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ms, n = doc["M"], doc["segments"]
    header = ["embedder", "k", *(f"M={m} ({m / n:.0%})" for m in ms)]
    rows = [[name, k.removeprefix("top"), *(by_m[str(m)] for m in ms)]
            for name, per_k in doc["recall"].items() for k, by_m in per_k.items()]
    md = f"Recall of the exhaustive top-k within the prefilter's top-M ({len(doc['queries'])} queries, N={n})\n\n" + markdown_table(header, rows)

    def curves(ax: Any) -> None:
        for name, per_k in doc["recall"].items():
            by_m = per_k["top10"]
            ax.plot([m / n for m in ms], [by_m[str(m)] for m in ms], marker="o", label=name)
        ax.set_xlabel("M / N")
        ax.set_ylabel("recall of the exhaustive top-10")
        ax.set_ylim(0, 1.02)
        ax.legend()

    return md, {"recall": curves}
