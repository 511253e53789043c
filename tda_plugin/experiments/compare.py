"""Test-to-train comparison (Choi et al. 2025, §5.2): unlearning scores against similarity scores.

For each generated clip, every training segment gets its exact unlearning score and, under each
available embedder, its cosine similarity to the clip. We report their Pearson and Spearman
correlation per embedder, and how concentrated each method's attributions are (share of the
positive mass held by the top-1 and top-10 segments): similarity spreads credit evenly over look-alikes,
unlearning concentrates it where the model's behaviour actually depends on the data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import audio as audio_io
from ..attributor import Attributor
from ..errors import TdaError
from ..progress import task
from ..settings import AttributeSettings
from ..sinks.read import read_credits
from .context import Context
from .embeddings import query_embedding
from .metrics import Scores, concentration, correlations
from .outputs import markdown_table

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")


@dataclass(frozen=True)
class Query:
    path: Path
    prompt: str | None


def find_queries(folder: Path) -> list[Query]:
    """Audio files in ``folder``, each with the prompt its stored credits record (tags, ``<clip>.wav.credits.json``
    or the demo's ``<clip>.credits.json``: what `tda demo`, `tda attribute` and the generation wrappers write)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if Path(folder).is_dir() else []
    if not files:
        raise TdaError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) to compare")
    return [Query(p, _stored_prompt(p)) for p in files]


def _stored_prompt(path: Path) -> str | None:
    try:
        doc, _ = read_credits(path)
    except TdaError:  # no stored credits: attributed without a prompt
        return None
    return doc.get("query", {}).get("prompt")


def compare_query(att: Attributor, query: Query, settings: AttributeSettings,
                  embeddings: dict[str, np.ndarray]) -> dict[str, Any]:
    """Correlations and concentration for one clip; ``embeddings`` rows are in segment-id order."""
    every = AttributeSettings(unlearn=settings.unlearn, top=settings.top, candidates="all", batch_size=settings.batch_size,
                              conditioning="prompt")  # every segment's exact score: the prompted scorer, ungated
    result = att.attribute_file(query.path, prompt=query.prompt, settings=every)
    data, sr = audio_io.load(query.path)
    encoded = att.encode_query(data, sr, query.prompt, settings.unlearn.mask_silence, name=str(query.path))
    ids = sorted(att.index.segments)
    methods: dict[str, Scores] = {"unlearning": result.scores}
    for name, emb in embeddings.items():
        methods[name] = dict(zip(ids, (emb @ query_embedding(att, name, encoded)).tolist()))
    return {"query": str(query.path), "prompt": query.prompt,
            "correlation": {name: correlations(result.scores, s) for name, s in methods.items() if name != "unlearning"},
            "concentration": {name: concentration(s) for name, s in methods.items()}}


def run_compare(att: Attributor, queries: list[Query], settings: AttributeSettings,
                embeddings: dict[str, np.ndarray]) -> dict[str, Any]:
    per_query = []
    with task("comparing with similarity", len(queries)) as advance:
        for q in queries:
            per_query.append(compare_query(att, q, settings, embeddings))
            advance(1)
    names = sorted(embeddings)
    summary = {
        "correlation": {n: {m: float(np.nanmean([q["correlation"][n][m] for q in per_query])) for m in ("pearson", "spearman")}
                        for n in names},
        "concentration": {n: {m: float(np.mean([q["concentration"][n][m] for q in per_query])) for m in ("top1_share", "top10_share")}
                          for n in ["unlearning", *names]},
    }
    return {"queries": per_query, "summary": summary}


def compare_doc(att: Attributor, queries: list[Query], settings: AttributeSettings) -> dict[str, Any]:
    ctx = Context.open(att)
    result = run_compare(att, queries, settings, ctx.embeddings)
    return {**ctx.header("compare"), "settings": settings.unlearn.to_dict(), **result}


def render_compare(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary = doc["summary"]
    corr = markdown_table(["embedder", "Pearson", "Spearman"],
                          [[n, c["pearson"], c["spearman"]] for n, c in summary["correlation"].items()])
    conc = markdown_table(["method", "top-1 share", "top-10 share"],
                          [[n, c["top1_share"], c["top10_share"]] for n, c in summary["concentration"].items()])
    md = (f"{len(doc['queries'])} generated clips, {doc['segments']} training segments\n\n"
          f"Correlation of unlearning scores with similarity scores:\n\n{corr}\n"
          f"Concentration (share of the positive score mass):\n\n{conc}")

    def bars(ax: Any) -> None:
        names = list(summary["correlation"])
        x = np.arange(len(names))
        ax.bar(x - 0.2, [summary["correlation"][n]["pearson"] for n in names], 0.4, label="Pearson")
        ax.bar(x + 0.2, [summary["correlation"][n]["spearman"] for n in names], 0.4, label="Spearman")
        ax.set_xticks(x, names)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("correlation with unlearning scores")
        ax.legend()

    return md, {"correlation": bars}
