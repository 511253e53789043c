"""The attribution methods that the ground-truth experiments compare: a registry, name -> scores of every segment.

A method maps a query (:class:`.retraining.Query`, encoded under the reference model) to a score for every
segment of the index. A higher score says the segment helps the query more: training without it should raise
the query's loss more. The LDS (:mod:`.lds`) sums a method's scores over each training subset; the
counterfactual (:mod:`.counterfactual`) removes each method's top K. Adding a method is one line here (or in a
plugin module imported before the experiment runs)::

    register("unlearning:kv-raw", unlearning(AttributeSettings(UnlearnSettings(subset="cross_attn_kv", normalize="none"))))
    register("my-score", my_score)                   # fn(context, query) -> {segment id: score}

Built in (``select`` drops those the index or model cannot serve, saying why):

* ``unlearning:prompt`` — every segment scored under the clip's prompt; ``unlearning:<subset>:<normalize>`` — every
  parameter subset and normalisation of :class:`~tda_plugin.settings.UnlearnSettings`, under the prompt. Exact
  scores of every segment through :meth:`Attributor.attribute`, so whatever attribute does, this measures; two
  normalisations of one setting share one unlearning pass (the raw loss change τ is kept per query and normalised
  twice);
* ``first_order`` / ``first_order:none`` — the unprojected first-order score g_iᵀΔ / s_i (and g_iᵀΔ): one
  per-segment gradient pass serves every query;
* ``gradient_sketch`` — cosine between the index's sketch vectors and the sketch of the query's unlearning step
  (what the prefilter ranks by; only for indexes built with that embedder);
* ``output_change`` — the mean squared change of the network's output on each segment under the query's
  unlearning step (after DAS; adapters that offer ``prediction``);
* ``similar:<embedder>`` — cosine similarity under every installed similarity embedder;
* ``unlearning`` — ``tda attribute``'s default for a prompted clip, the gated conditioning: the segments the clip's
  *audio* points to (``unlearning:audio``'s best ten, the credits' own top), credited by the prompted scores
  (``unlearning:prompt``), the rest zero (docs/experiments/gated.md); derived from its two parts' stored scores, so it costs them and no more;
* ``trak:<k>`` (k = 2048, 8192, 32768) and ``trak:exact`` — TRAK / D-TRAK; ``ekfac`` and ``kfac`` — influence
  functions through kronfluence (:mod:`.influence`);
* ``random`` — Gaussian scores seeded by the index seed and the query.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import gating
from ..errors import TdaError
from ..fisher import named_parameters, segment_gradients
from ..index.builder import segment_conditioning
from ..progress import task
from ..randomness import make_draws, segment_stream
from ..scoring import segments_per_batch
from ..settings import BRANCHES, SUBSETS, AttributeSettings, UnlearnSettings
from ..unlearn import applied
from .context import Context
from .embeddings import query_embedding
from .influence import TRAK_DIMS, influence, needs_library, trak, trak_name
from .retraining import Query

if TYPE_CHECKING:
    from ..attributor import Attributor

log = logging.getLogger(__name__)

Scores = Mapping[int, float]
OneQuery = Callable[[Context, Query], Scores]
ManyQueries = Callable[[Context, Sequence[Query]], list[Scores]]
#: None when the method can serve this context, else the reason it cannot
Availability = Callable[[Context], "str | None"]


def always(ctx: Context) -> str | None:
    """The availability of a method that every index and model can serve."""
    return None


@dataclass(frozen=True)
class Method:
    """A registered method. Exactly one of ``one`` (per query) and ``many`` (all queries at once) is set."""

    name: str
    one: OneQuery | None = None
    many: ManyQueries | None = None
    #: everything besides the name that changes the scores; part of the cache key of stored scores
    settings: Mapping[str, Any] = field(default_factory=dict)
    available: Availability = always
    #: a method derived from others' scores: their names, and how their vectors (segment-id order) combine
    parts: tuple[str, ...] = ()
    combine: Callable[[Sequence[np.ndarray]], np.ndarray] | None = None

    @property
    def cache_key(self) -> str:
        blob = json.dumps(self.settings, sort_keys=True, default=str).encode()
        return f"{self.name}@{hashlib.sha1(blob).hexdigest()[:10]}"

    def score(self, ctx: Context, queries: Sequence[Query]) -> list[Scores]:
        assert self.combine is None, "a derived method is combined from its parts' scores (scores.all_scores)"
        if self.many is not None:
            return self.many(ctx, queries)
        assert self.one is not None
        return [self.one(ctx, q) for q in queries]


REGISTRY: dict[str, Method] = {}


def register(name: str, fn: OneQuery, *, settings: Mapping[str, Any] | None = None,
             available: Availability | None = None) -> Method:
    """Add (or replace) a per-query method: ``fn(context, query)`` returns a score for every segment id."""
    REGISTRY[name] = Method(name, one=fn, settings=dict(settings or {}), available=available or always)
    return REGISTRY[name]


def register_many(name: str, fn: ManyQueries, *, settings: Mapping[str, Any] | None = None,
                  available: Availability | None = None) -> Method:
    """Add a method that scores all queries in one call (when one pass over the catalogue serves them all)."""
    REGISTRY[name] = Method(name, many=fn, settings=dict(settings or {}), available=available or always)
    return REGISTRY[name]


def register_derived(name: str, parts: Sequence[str], combine: Callable[[Sequence[np.ndarray]], np.ndarray], *,
                     settings: Mapping[str, Any] | None = None) -> Method:
    """Add a method computed from other registered methods' score vectors, so a run that stores its parts' scores
    (or has them already) pays nothing more for it; it can serve wherever every part can."""
    def available(ctx: Context) -> str | None:
        return next((why for why in (REGISTRY[p].available(ctx) for p in parts) if why is not None), None)

    keys = {"parts": [REGISTRY[p].cache_key for p in parts], **dict(settings or {})}
    REGISTRY[name] = Method(name, settings=keys, available=available, parts=tuple(parts), combine=combine)
    return REGISTRY[name]


def _candidates(similarity_names: Sequence[str]) -> list[Method]:
    return list(REGISTRY.values()) + [similarity(e) for e in sorted(similarity_names) if f"similar:{e}" not in REGISTRY]


def matching(patterns: Sequence[str]) -> list[str]:
    """Names of the methods (registered, and ``similar:*`` for every installed similarity embedder) matching any
    of the shell-style ``patterns``; what :func:`select` would try, before checking what the index can serve."""
    return [name for name in _known_names() if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def _known_names() -> list[str]:
    """Every method name a pattern may match: the registry's and ``similar:*`` of each installed embedder."""
    from .embeddings import similarity_embedders

    return [m.name for m in _candidates(similarity_embedders())]


def check_patterns(patterns: Sequence[str]) -> None:
    """Fail at once on a ``--method`` pattern that names no method (a typo), before any estimate or training."""
    known = _known_names()
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name in known)]
    if unknown:
        raise TdaError(f"no method matches {', '.join(map(repr, unknown))} (known: {', '.join(known)})")


def similarity_needed(patterns: Sequence[str]) -> list[str]:
    """The similarity embedders whose ``similar:<name>`` methods match ``patterns`` (what the context must embed)."""
    return [name.split(":", 1)[1] for name in matching(patterns) if name.startswith("similar:")
            and (name not in REGISTRY)]


def open_context(att: "Attributor", patterns: Sequence[str]) -> Context:
    """A context that embeds the catalogue only under the embedders the selected methods use."""
    return Context.open(att, similarity_needed(patterns))


def select(ctx: Context, patterns: Sequence[str] = ("*",)) -> list[Method]:
    """Methods whose names match any of the shell-style ``patterns``, in registry order, then ``similar:*``.

    A method the context cannot serve is left out with a log line, unless it was asked for by its exact name
    (then the reason is an error)."""
    candidates = _candidates(list(ctx.embeddings))
    chosen = []
    for m in candidates:
        if not any(fnmatch.fnmatchcase(m.name, p) for p in patterns):
            continue
        why = m.available(ctx)
        if why is None:
            chosen.append(m)
        elif m.name in patterns:
            raise TdaError(f"method {m.name!r} cannot run here: {why}")
        else:
            log.info("method %s left out: %s", m.name, why)
    if not chosen:
        raise TdaError(f"no method matches {', '.join(patterns)} (known: {', '.join(m.name for m in candidates)})")
    return chosen


def _ids(ctx: Context) -> list[int]:
    return sorted(ctx.att.index.segments)


# -- unlearning -----------------------------------------------------------------------------------------
def unlearning(settings: AttributeSettings = AttributeSettings(), *, prompt: bool = True) -> OneQuery:
    """Exact unlearning scores of every segment under ``settings`` (``prompt=False``: attributed without the
    query's prompt). The raw loss change τ is kept in ``query.memo``, so settings that differ only in their
    normalisation share one unlearning pass."""
    raw = replace(settings, candidates="all", unlearn=replace(settings.unlearn, normalize="none"))

    def score(ctx: Context, q: Query) -> Scores:
        key = ("tau", raw, prompt)
        if key not in q.memo:
            q.memo[key] = ctx.att.attribute(q.audio, q.sample_rate, prompt=q.prompt if prompt else None, settings=raw,
                                            path=q.name, seconds_start=q.seconds_start, seconds_total=q.seconds_total).scores
        tau = q.memo[key]
        ids = sorted(tau)
        segments = BRANCHES[ctx.att.conditioning(settings, q.prompt if prompt else None)][1]  # whose sensitivities
        return dict(zip(ids, ctx.att.normalised(ids, torch.tensor([tau[i] for i in ids]), settings.unlearn,
                                                segments).tolist()))

    return score


def _has_subset(subset: str) -> Availability:
    return lambda ctx: None if subset in ctx.att.adapter.parameter_groups() else f"the model has no {subset!r} parameters"


def register_unlearning(name: str, settings: AttributeSettings, *, prompt: bool = True) -> Method:
    """Register an unlearning variant under ``name`` (its settings become part of the cache key); one scored on
    the null branch needs an index with null-branch baselines."""
    has_subset = _has_subset(settings.unlearn.subset)

    def available(ctx: Context) -> str | None:
        if settings.conditioning == "unconditional" and not ctx.att.index.has_unconditional:
            return "the index has no null-branch baselines (built with --no-unconditional)"
        return has_subset(ctx)

    return register(name, unlearning(settings, prompt=prompt), settings={"attribute": asdict(settings), "prompt": prompt},
                    available=available)


# -- first order and the gradient sketch ------------------------------------------------------------------
#: the unlearning step the first-order score and the sketch use: the blocks the index's sketch projects
FIRST_ORDER_STEP = UnlearnSettings(subset="blocks")


def _step(ctx: Context, q: Query, un: UnlearnSettings = FIRST_ORDER_STEP) -> dict[str, torch.Tensor]:
    """The query's unlearning step Δ under ``un`` (parameter name -> tensor), taken once per query."""
    key = ("step", un)
    if key not in q.memo:
        assert q.encoded is not None
        names, delta, _, _ = ctx.att.forget(q.encoded, un)
        q.memo[key] = dict(zip(names, delta))
    return q.memo[key]


def _first_order_products(ctx: Context, queries: Sequence[Query]) -> None:
    """g_iᵀΔ_q for every segment i and query q into ``q.memo["first_order"]``: one gradient per segment."""
    todo = [q for q in queries if "first_order" not in q.memo]
    if not todo:
        return
    att, ids = ctx.att, _ids(ctx)
    steps = [_step(ctx, q) for q in todo]
    names = list(steps[0])
    s = att.index.meta.settings
    segs = [att.index.segments[i] for i in ids]
    conds = [segment_conditioning(att.index.tracks[seg.track_id], seg) for seg in segs]
    out = np.zeros((len(todo), len(ids)))
    with task("first-order gradients", len(ids)) as advance:
        grads = segment_gradients(att.adapter, named_parameters(att.adapter, names), att.index.gather(ids, "latents"),
                                  conds, [segment_stream(i) for i in ids], seed=s["seed"], draws=s["draws"], advance=advance)
        for j, grad in enumerate(grads):
            for k, step in enumerate(steps):
                out[k, j] = sum(float((g.double() * step[n].to(g.device).double()).sum()) for n, g in zip(names, grad))
    for q, row in zip(todo, out):
        q.memo["first_order"] = row


def first_order(normalize: str) -> ManyQueries:
    def score(ctx: Context, queries: Sequence[Query]) -> list[Scores]:
        _first_order_products(ctx, queries)
        ids = _ids(ctx)
        un = replace(FIRST_ORDER_STEP, normalize=normalize)
        return [dict(zip(ids, ctx.att.normalised(ids, torch.from_numpy(q.memo["first_order"]), un).tolist()))
                for q in queries]

    return score


def _sketch_vectors(ctx: Context) -> np.ndarray:
    """[N, d] normalised sketch vectors of the index, in segment-id order."""
    import faiss

    from ..index import vectors

    index = ctx.att.index.vectors()
    if vectors.describe(index) != "flat":
        faiss.downcast_index(index.index).make_direct_map()
    return vectors.normalise(np.stack([index.reconstruct(int(i)) for i in _ids(ctx)]))


def gradient_sketch(ctx: Context, queries: Sequence[Query]) -> list[Scores]:
    table, ids, out = _sketch_vectors(ctx), _ids(ctx), []
    for q in queries:
        assert q.encoded is not None
        q.encoded.step = _step(ctx, q)
        out.append(dict(zip(ids, (table @ ctx.att.query_vector(q.encoded, "gradient_sketch")[0]).tolist())))
    return out


def _sketched_index(ctx: Context) -> str | None:
    from ..embedders import uses_gradients
    from ..registry import get_embedder_spec

    embedder = ctx.att.index.meta.settings["embedder"]
    return None if uses_gradients(get_embedder_spec(embedder)) else f"the index's vectors are {embedder!r}, not a gradient sketch"


# -- the output change (after DAS) -------------------------------------------------------------------------
def output_change(un: UnlearnSettings = UnlearnSettings()) -> ManyQueries:
    """Mean squared change of the network's *output* on each segment (its own cached draws) under the query's
    unlearning step, instead of the change of its loss. DAS (Lin et al., ICLR 2025) argues that the output,
    not the loss, is what a training example changes in a diffusion model; the loss change mixes the output
    change with its alignment to the target. One forward per segment batch before the step serves every
    query; then one per query after it."""
    def score(ctx: Context, queries: Sequence[Query]) -> list[Scores]:
        att, ids = ctx.att, _ids(ctx)
        steps = [_step(ctx, q, un) for q in queries]
        names = list(steps[0])
        params = named_parameters(att.adapter, names)
        s = att.index.meta.settings
        out = np.zeros((len(queries), len(ids)))
        batch = segments_per_batch(64, int(s["draws"]))
        with task("output change", len(ids)) as advance:
            for start in range(0, len(ids), batch):
                chunk = ids[start:start + batch]
                segs = [att.index.segments[i] for i in chunk]
                cond = att.adapter.condition([segment_conditioning(att.index.tracks[g.track_id], g) for g in segs])
                encoded = att.index.gather(chunk, "latents")
                draws = make_draws(s["seed"], [segment_stream(i) for i in chunk], s["draws"])
                before = att.adapter.prediction(encoded, cond, draws)
                for k, step in enumerate(steps):
                    with applied(params, [step[n] for n in names]):
                        after = att.adapter.prediction(encoded, cond, draws)
                    out[k, start:start + len(chunk)] = (after - before).double().pow(2).flatten(1).mean(dim=1).cpu().numpy()
                advance(len(chunk))
        return [dict(zip(ids, row.tolist())) for row in out]

    return score


def _has_prediction(ctx: Context) -> str | None:
    return None if callable(getattr(ctx.att.adapter, "prediction", None)) else \
        f"the {ctx.att.adapter.name} adapter offers no prediction() (the network's output)"


# -- similarity and random ---------------------------------------------------------------------------------
def similarity(embedder: str) -> Method:
    """Cosine similarity to the query under ``embedder`` (an entry made for every installed similarity embedder)."""
    def score(ctx: Context, q: Query) -> Scores:
        assert q.encoded is not None
        return dict(zip(_ids(ctx), (ctx.embeddings[embedder] @ query_embedding(ctx.att, embedder, q.encoded)).tolist()))

    return Method(f"similar:{embedder}", one=score, settings={"embedder": embedder})


# -- combinations -----------------------------------------------------------------------------------------------
#: how many of the audio's best segments the gated combination keeps: the credits' own top (``tda attribute --top``)
GATE = AttributeSettings.top


def gated(keep: int = GATE) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """``(prompted, audio) -> scores`` in segment-id order: :mod:`tda_plugin.gating`'s rule (the ``keep`` segments
    the audio ranks best, each its positive prompted score), every other segment 0, uncredited."""
    def combine(parts: Sequence[np.ndarray]) -> np.ndarray:
        prompted, audio = (torch.as_tensor(np.asarray(p, dtype=np.float64)) for p in parts)
        rows = gating.kept(list(range(len(audio))), audio, keep)
        out = torch.zeros_like(prompted)
        out[rows] = gating.credited(prompted[rows])
        return out.numpy()

    return combine


def random_scores(ctx: Context, q: Query) -> Scores:
    ids = _ids(ctx)
    rng = np.random.default_rng([int(ctx.att.index.meta.settings["seed"]), int(q.key, 16) % 2**32])
    return dict(zip(ids, rng.standard_normal(len(ids)).tolist()))


#: the prompted scorer alone: every segment under the clip's prompt (the default before the gate, and the gate's
#: second stage)
register_unlearning("unlearning:prompt", AttributeSettings(conditioning="prompt"))
#: the mode a copy found without a prompt is answered in: query and segments both on the null branch
register_unlearning("unlearning:unconditional", AttributeSettings(conditioning="unconditional"), prompt=False)
#: the query without its prompt, its step on the null branch, the segments under their captions
register_unlearning("unlearning:audio", AttributeSettings(conditioning="audio"), prompt=False)
for _subset in SUBSETS:
    for _norm in ("self", "none"):
        register_unlearning(f"unlearning:{_subset}:{_norm}",
                            AttributeSettings(UnlearnSettings(subset=_subset, normalize=_norm), conditioning="prompt"))
register_many("first_order", first_order("self"), settings={"step": asdict(FIRST_ORDER_STEP)},
              available=_has_subset(FIRST_ORDER_STEP.subset))
register_many("first_order:none", first_order("none"), settings={"step": asdict(FIRST_ORDER_STEP)},
              available=_has_subset(FIRST_ORDER_STEP.subset))
register_many("gradient_sketch", gradient_sketch, settings={"step": asdict(FIRST_ORDER_STEP)}, available=_sketched_index)
register_many("output_change", output_change(), settings={"step": asdict(UnlearnSettings())}, available=_has_prediction)
#: ``tda attribute``'s default for a prompted clip (``--conditioning auto`` resolves to gated)
register_derived("unlearning", ("unlearning:prompt", "unlearning:audio"), gated(), settings={"keep": GATE})
for _k in (*TRAK_DIMS, None):
    register_many(trak_name(_k), trak(_k), settings={"subset": FIRST_ORDER_STEP.subset, "k": _k},
                  available=needs_library("trak"))
for _strategy in ("ekfac", "kfac"):
    register_many(_strategy, influence(_strategy), settings={"subset": FIRST_ORDER_STEP.subset},
                  available=needs_library("kronfluence"))
register("random", random_scores)
