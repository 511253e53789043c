"""Every method's scores for every query, computed once and stored, so an interrupted run resumes.

``<out>/scores/<index>/<query key>.json`` holds one vector per method (``Method.cache_key``: its name and the
settings that change it), aligned with the index's segment ids. The folder is named by the index's identity
(model fingerprint and index settings), so scores of another model or index are never reused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_json
from ..progress import task
from .context import Context
from .methods import REGISTRY, Method
from .retraining import Query


class ScoreStore:
    def __init__(self, out: Path, ctx: Context) -> None:
        meta = ctx.att.index.meta
        identity = json.dumps({"fingerprint": meta.fingerprint, "settings": meta.settings, "corpus": meta.corpus_hash},
                              sort_keys=True)
        self.root = Path(out) / "scores" / hashlib.sha1(identity.encode()).hexdigest()[:12]
        self.ids = sorted(ctx.att.index.segments)

    def _path(self, q: Query) -> Path:
        return self.root / f"{q.key}.json"

    def _read(self, q: Query) -> dict[str, list[float]]:
        path = self._path(q)
        return json.loads(path.read_text())["scores"] if path.is_file() else {}

    def get(self, q: Query, m: Method) -> np.ndarray | None:
        row = self._read(q).get(m.cache_key)
        return None if row is None else np.asarray(row, dtype=np.float64)

    def put(self, q: Query, m: Method, scores: dict[int, float]) -> np.ndarray:
        missing = set(self.ids) - set(scores)
        if missing:
            raise ValueError(f"method {m.name} left {len(missing)} segments unscored (e.g. {min(missing)})")
        row = np.array([scores[i] for i in self.ids], dtype=np.float64)
        stored = self._read(q)
        stored[m.cache_key] = row.tolist()
        write_json(self._path(q), {"query": q.describe(), "scores": stored})
        return row


def all_scores(ctx: Context, methods: Sequence[Method], queries: Sequence[Query], store: ScoreStore) -> dict[str, list[np.ndarray]]:
    """method name -> one score vector per query (in ``store.ids`` order), computing only what is not stored.

    Methods that score all queries at once run first; then queries one by one, every per-query method for a query
    before the next, so one query's shared work (an unlearning pass, its step) is reused while it is in memory;
    derived methods last, from their parts' vectors (parts not asked for are scored and stored too)."""
    derived = [m for m in methods if m.combine is not None]
    methods = [m for m in methods if m.combine is None]
    for m in derived:
        methods += [REGISTRY[p] for p in m.parts if all(p != n.name for n in methods)]
    have = {m.name: [store.get(q, m) for q in queries] for m in methods}
    todo = sum(v is None for rows in have.values() for v in rows)
    with task("scoring queries", todo) as advance:
        for m in methods:
            if m.many is None:
                continue
            missing = [j for j, v in enumerate(have[m.name]) if v is None]
            if missing:
                for j, scores in zip(missing, m.score(ctx, [queries[j] for j in missing])):
                    have[m.name][j] = store.put(queries[j], m, dict(scores))
                    advance(1)
        for j, q in enumerate(queries):
            for m in methods:
                if have[m.name][j] is None:
                    have[m.name][j] = store.put(q, m, dict(m.score(ctx, [q])[0]))
                    advance(1)
    for m in derived:
        have[m.name] = [m.combine([have[p][j] for p in m.parts]) for j in range(len(queries))]
    return {name: [v for v in rows if v is not None] for name, rows in have.items()}
