"""The public API: attribute a generated clip to the training segments, tracks and artists it owes most to.

    from tda_plugin import Attributor
    result = Attributor.from_index("idx/").attribute(audio, sample_rate, prompt="...")
    result.to_dict()["credits"]

Pipeline (docs/design.md, docs/method.md): conform + window the query -> encode -> unlearn (Newton or ascent, on the chosen
parameter subset, silence/padding masked) -> prefilter candidates (FAISS) -> exact scores
τ_i = L(z_i, θ') − L(z_i, θ0) against the cached baseline -> credits.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import audio as audio_io
from . import distributed, gating, shortlist, stability
from .adapter import Conditioning, ModelAdapter
from .copies.search import CopySearch
from .credits import build_credits
from .embedders import uses_gradients
from .errors import AudioError, CheckpointError, TdaError
from .fisher import group_damping, named_parameters
from .index import vectors
from .index.builder import ENCODE_BATCH, segment_conditioning
from .index.store import Index, conditioned
from .progress import stage
from .randomness import Draws, make_draws, query_stream, segment_stream
from .registry import get_embedder_spec, load_adapter
from .scoring import Precision, auto_batch_size, losses, segments_per_batch
from .settings import BRANCHES, AttributeSettings, ConditioningMode, UnlearnSettings
from .sketch import GradientSketch
from .sketch import for_model as sketch_for_model
from .unlearn import applied, unlearning_delta

log = logging.getLogger(__name__)


@dataclass
class AttributionResult:
    """One attributed query; ``to_dict()`` is the JSON document the CLI writes."""

    query: dict[str, Any]
    model: dict[str, Any]
    method: dict[str, Any]
    segments: list[dict[str, Any]]
    credits: list[dict[str, Any]]
    artists: list[dict[str, Any]]
    #: τ of every scored candidate (segment id -> score), for evaluation; not in the JSON
    scores: dict[int, float]
    #: reasons plugins gave not to release the clip (hook ``tda_after_attribution``); empty: release
    vetoes: list[str] = field(default_factory=list)
    #: catalogue tracks the clip is a near copy of (tda_plugin/copies), beside the credits and never one of them
    copies: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "model": self.model, "method": self.method, "segments": self.segments,
                "credits": self.credits, "artists": self.artists, "copies": self.copies, "vetoes": self.vetoes}


@dataclass
class EncodedQuery:
    encoded: torch.Tensor         # [W, ...]
    mask: torch.Tensor | None     # [W, frames] keep-mask
    conditioning: list[Conditioning]
    duration_s: float
    #: the unlearning step Δ by parameter name, once computed (the gradient sketch embeds it)
    step: dict[str, torch.Tensor] | None = None
    #: the clip's own format and what was changed to match the model (``query.conformed`` in the JSON)
    conformed: dict[str, Any] = field(default_factory=dict)
    #: what is odd about the clip but was attributed as is (``query.warnings``)
    warnings: list[str] = field(default_factory=list)
    #: "prompt" or "unconditional": how the segments this query is scored against are conditioned (their
    #: captions or the null branch: which baselines and prefilter vectors answer it)
    mode: str = "prompt"
    #: what the clip is called in messages (its path, if it has one)
    name: str = "query"


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed: Python's, a GPU's (``torch.OutOfMemoryError``) or torch's CPU
    allocator's (a plain ``RuntimeError``)."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "DefaultCPUAllocator: can't allocate" in str(exc)


class Attributor:
    """An index together with the model it was built for."""

    def __init__(self, index: Index, adapter: ModelAdapter) -> None:
        index.check_model(adapter.fingerprint, adapter.name)
        self.index = index
        self.adapter = adapter
        self._fisher: dict[str, torch.Tensor] | None = None
        self._sketch: GradientSketch | None = None
        self._copies: CopySearch | None = None

    @classmethod
    def from_index(cls, index_dir: str | Path | Index, *, device: str = "cpu", adapter: ModelAdapter | None = None,
                   checkpoint: Path | None = None, model_config: Path | None = None) -> "Attributor":
        """Open an index and load the model recorded in it (or use an already loaded ``adapter``).

        ``checkpoint`` / ``model_config`` say where a moved model is now; the fingerprint check still
        refuses any other model than the one the index was built for."""
        index = index_dir if isinstance(index_dir, Index) else Index(Path(index_dir))
        if adapter is None:
            ckpt = Path(checkpoint) if checkpoint is not None else index.checkpoint
            if model_config is None and checkpoint is None:
                model_config = index.model_config
            if not ckpt.exists():
                raise CheckpointError(f"{ckpt}: the checkpoint {index_dir} was built with is not there (moved?); "
                                      "say where it is now with --ckpt (and --model-config)")
            adapter = load_adapter(index.meta.adapter, ckpt, model_config=model_config, device=device)
        return cls(index, adapter)

    @property
    def fisher(self) -> dict[str, torch.Tensor]:
        """The index's Fisher, moved to the model's device once (every query preconditions with it)."""
        if self._fisher is None:
            self._fisher = {n: t.to(self.adapter.device) for n, t in self.index.fisher().items()}
        return self._fisher

    @property
    def copies(self) -> CopySearch:
        """The index's near-copy search; an index without fingerprints says so once, here."""
        if self._copies is None:
            self._copies = CopySearch(self.index)
            if self._copies.note:
                log.warning("%s: %s", self.index.root, self._copies.note)
        return self._copies

    # -- query ----------------------------------------------------------------------------------
    def encode_query(self, audio: np.ndarray | torch.Tensor, sample_rate: int, prompt: str | None,
                     mask_silence: bool = True, name: str = "query", seconds_start: float = 0.0,
                     seconds_total: float | None = None, encoded: torch.Tensor | None = None,
                     conditioning: str = "prompt", segments: str | None = None,
                     checked: Sequence[str] | None = None) -> EncodedQuery:
        """Window, encode and mask a query. ``encoded`` is the clip's training representation [..., frames] when
        it is known exactly (the tokens a token LM generated: re-encoding decoded audio through a codec is lossy);
        it is windowed like the audio instead of encoding the audio. ``conditioning="unconditional"`` conditions
        the query on the model's null branch instead of ``prompt``; ``segments``: the branch the segments will be
        scored on (default: the query's). ``checked``: what :func:`.audio.check_levels` reported when the caller
        checked this very audio already (the CLI checks every clip before the model loads); None: checked here."""
        meta = self.index.meta
        data = audio.detach().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio, dtype=np.float32)
        data = data[None] if data.ndim == 1 else data
        if data.size == 0:
            raise AudioError(f"{name}: audio is empty")
        notes = audio_io.check_levels(data, name) if checked is None else list(checked)
        for note in notes:
            log.warning("%s: %s", name, note)
        conformed = {"sample_rate": int(sample_rate), "channels": int(data.shape[0])}
        data, changes = audio_io.conform(data, sample_rate, meta.sample_rate, meta.channels)
        if changes:
            log.warning("%s: %s to match the model", name, ", ".join(changes))
        duration = data.shape[1] / meta.sample_rate
        if data.shape[1] < meta.segment_samples:
            raise AudioError(f"{name}: {duration:.2f} s is shorter than one {meta.segment_seconds:.2f} s segment of this index")
        wins, keep = audio_io.windows(data, meta.segment_samples)
        wav = torch.from_numpy(wins)
        # windows encoded in the build's batches: the encoder's memory is that of a few windows whatever the clip's length
        encoded = torch.cat([self.adapter.encode(wav[i:i + ENCODE_BATCH]) for i in range(0, len(wav), ENCODE_BATCH)]) \
            if encoded is None else self._window_encoded(encoded, len(wins))
        sample_keep = torch.from_numpy(keep)
        if mask_silence:
            frame = max(1, meta.segment_samples // encoded.shape[-1])
            sample_keep &= audio_io.silence_mask(wav, frame)
        if not bool(sample_keep.any()):
            raise AudioError(f"{name}: the audio is silent; nothing to attribute")
        mask = self.adapter.frame_mask(sample_keep, encoded.shape[-1])
        total = duration if seconds_total is None else seconds_total
        conds = [Conditioning(prompt, seconds_start + w * meta.segment_seconds, total,
                              unconditional=conditioning == "unconditional") for w in range(len(wins))]
        return EncodedQuery(encoded, mask, conds, duration, conformed={**conformed, "changes": changes}, warnings=notes,
                            mode=segments or conditioning, name=name)

    def _window_encoded(self, encoded: torch.Tensor, count: int) -> torch.Tensor:
        """A known representation [..., frames] of the whole clip cut into ``count`` segment windows (zero-padded)."""
        frames = int(self.index.meta.encoded_shape[-1])
        x = encoded.reshape(-1, *encoded.shape[-2:])[0] if encoded.dim() > 2 else encoded
        x = torch.nn.functional.pad(x, (0, max(0, count * frames - x.shape[-1])))[..., : count * frames]
        return torch.stack([x[..., w * frames:(w + 1) * frames] for w in range(count)])

    # -- prefilter and exact scores ------------------------------------------------------------
    def sketch(self) -> GradientSketch:
        """The index's gradient-sketch projection (same names, Fisher, λ and seed as at build time)."""
        if self._sketch is None:
            s = self.index.meta.settings
            names = self.adapter.parameter_groups()["blocks"]
            lam = group_damping(self.fisher, names, float(s.get("damping", 0.1)))
            self._sketch = sketch_for_model(self.adapter.module, names, self.fisher, lam, seed=s["seed"],
                                            dim=self.index.vectors().d)  # the size the index was built with
        return self._sketch

    def query_vector(self, query: EncodedQuery, embedder: str | None = None) -> np.ndarray:
        """The query's prefilter vector for ``embedder`` (default: the index's).

        A gradient sketch embeds the unlearning step itself (P (F+λI)^1/2 Δ, whose inner product with a
        segment's sketch is its first-order loss change); other embedders embed each query window,
        normalise, and average.
        """
        meta = self.index.meta
        spec = get_embedder_spec(embedder or meta.settings["embedder"])
        if uses_gradients(spec):
            if query.step is None:
                raise TdaError("the gradient-sketch prefilter needs the query's unlearning step; call forget() first")
            return self.sketch().of_step(query.step).numpy()[None]
        streams = [query_stream(w) for w in range(len(query.conditioning))]
        emb = spec.embed(self.adapter, query.encoded, self.adapter.condition(query.conditioning), streams,
                         meta.settings["seed"]).numpy()
        return vectors.normalise(emb).mean(axis=0, keepdims=True)

    def candidates(self, query: EncodedQuery, settings: AttributeSettings) -> list[int]:
        """Segment ids to score exactly: all of them, or the prefilter's top M (``settings.candidate_count``)."""
        all_ids = sorted(self.index.segments)
        m = settings.candidate_count(len(all_ids))
        if m >= len(all_ids):
            return all_ids
        q = self.query_vector(query)
        return sorted(int(i) for i in vectors.search(self.index.vectors(query.mode), q[0], m))

    def prefilter_basis(self, un: UnlearnSettings, candidates: int) -> dict[str, Any] | None:
        """What ranked the ``candidates`` when a prefilter chose them (None: every segment was a candidate).

        A gradient sketch stores P u_i normalised, u_i preconditioned over the ``blocks`` subset with the
        index's damping, so its search ranks by the first-order τ_i / s_i(blocks) whatever subset the step
        moved (u_iᵀw = g_iᵀΔ holds for any Δ). The exact score divides by s_i of the scored subset, or by
        nothing under ``normalize="none"``; then the candidates approximate another ranking, which is said.
        """
        if candidates >= len(self.index.segments):
            return None
        embedder = self.index.meta.settings["embedder"]
        if not uses_gradients(get_embedder_spec(embedder)):
            return {"embedder": embedder, "ranks_by": f"{embedder} similarity", "matches_score": False}
        matches = un.subset == "blocks" and un.normalize == "self"
        if not matches:
            log.warning("the gradient-sketch prefilter ranks by τ/s over 'blocks'; the scores use %s: candidates "
                        "approximate the scored ranking (use --candidates all for the exact top)",
                        f"τ/s over {un.subset!r}" if un.normalize == "self" else "raw τ")
        return {"embedder": embedder, "ranks_by": "first-order τ/s over blocks (index damping)", "matches_score": matches}

    def query_draws(self, query: EncodedQuery, un: UnlearnSettings) -> Draws:
        """The fixed draws of the query's own loss: its windows' streams under the index seed + 1 (the query is not a
        training segment), ``un.unlearn_draws`` of them within ``un.query_timesteps``."""
        q_streams = [query_stream(w) for w in range(len(query.conditioning))]
        return make_draws(self.index.meta.settings["seed"] + 1, q_streams, un.unlearn_draws).within(*un.query_timesteps)

    def forget(self, query: EncodedQuery, un: UnlearnSettings) -> tuple[list[str], list[torch.Tensor], float, float]:
        """The unlearning step for ``query``: (parameter names, Δ, α, rms(Δ)/rms(θ)); also kept as ``query.step``."""
        meta = self.index.meta
        groups = self.adapter.parameter_groups()
        if un.subset not in groups:
            raise TdaError(f"parameter subset {un.subset!r} does not exist in this model ({', '.join(groups)})")
        names = groups[un.subset]
        q_draws = self.query_draws(query, un)
        damping = float(meta.settings.get("damping", 0.1)) if un.damping is None else un.damping
        try:
            delta, alpha, relative_step = unlearning_delta(
                self.adapter, names, self.fisher, query.encoded, self.adapter.condition(query.conditioning), q_draws,
                query.mask if un.mask_silence else None, un, len(self.index.segments), damping)
        except (MemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
            # the step's one backward pass holds every window under every draw: its memory grows with the clip
            windows = len(query.conditioning)
            raise AudioError(f"{query.name}: out of memory in the unlearning step, which runs its {windows} window(s) "
                             f"of {meta.segment_seconds:.2f} s under {q_draws.count} draw(s) in one pass "
                             f"({' '.join(str(exc).split())[:120] or type(exc).__name__}); attribute it in shorter "
                             "clips, or with fewer --unlearn-draws") from None
        query.step = dict(zip(names, delta))
        return names, delta, alpha, relative_step

    def exact_scores(self, ids: list[int], names: list[str], delta: list[torch.Tensor], un: UnlearnSettings,
                     batch_size: int, precision: Precision = "fp32",
                     conditioning: str = "prompt") -> tuple[torch.Tensor, torch.Tensor]:
        """(τ, score) of ``ids``: the mean loss change, and τ / s_i under the "self" normalisation; the
        segments are conditioned as ``conditioning`` says (their prompts, or the null branch)."""
        scored = self.scored(ids, names, delta, un, batch_size, precision, conditioning)
        return scored.tau, scored.score

    def scored(self, ids: list[int], names: list[str], delta: list[torch.Tensor], un: UnlearnSettings,
               batch_size: int, precision: Precision = "fp32", conditioning: str = "prompt") -> shortlist.Scored:
        """:meth:`exact_scores` with the per-draw loss changes they average (what :mod:`.stability` resamples)."""
        change = self.loss_changes(ids, names, delta, batch_size, precision, conditioning)
        tau = change.mean(dim=1)
        return shortlist.Scored(list(ids), tau, self.normalised(ids, tau, un, conditioning), change)

    def loss_changes(self, ids: list[int], names: list[str], delta: list[torch.Tensor], batch_size: int,
                     precision: Precision = "fp32", conditioning: str = "prompt",
                     draws: Sequence[int] | None = None) -> torch.Tensor:
        """L(z_i, θ0+Δ) − L(z_i, θ0) [n, D], draw by draw (or [n, len(draws)]: only those of the index's draws): τ is
        their mean, and :mod:`.stability` resamples them. The baseline is the cached one in fp32, and recomputed
        (paired) in bf16, since the cached fp32 baseline would not cancel bf16 rounding."""
        if batch_size == 0:
            batch_size = self._auto_batch(ids, precision)
        after = self.losses_after(ids, names, delta, batch_size, precision, conditioning, draws=draws)
        if precision == "fp32":
            base = self.index.baseline_rows(ids, conditioned("losses", conditioning))
            return after - (base if draws is None else base[:, list(draws)])
        return after - self.losses_after(ids, names, [torch.zeros_like(d) for d in delta], batch_size, precision,
                                         conditioning, draws=draws)

    def normalised(self, ids: list[int], tau: torch.Tensor, un: UnlearnSettings,
                   conditioning: str = "prompt") -> torch.Tensor:
        """Scores from loss changes τ: τ / s_i under the "self" normalisation, else τ itself."""
        if un.normalize != "self":
            return tau
        key = conditioned(f"sensitivity.{un.subset}", conditioning)
        sens = self.index.baseline_rows(ids, key)  # one line of error if the index lacks this conditioning
        # a zero-gradient segment must not explode; the floor is the index's, so no score depends on the candidates
        return tau / sens.clamp_min(float(self.index.baseline[key].max()) * 1e-6 + 1e-30)

    def _auto_batch(self, ids: list[int], precision: Precision) -> int:
        s = self.index.segments[ids[0]]
        distributed.init_from_env()
        return distributed.agree_min(auto_batch_size(self.adapter, self.index.gather(ids[:1], "latents"),
                               [segment_conditioning(self.index.tracks[s.track_id], s)], [segment_stream(ids[0])],
                               seed=self.index.meta.settings["seed"], draws=self.index.meta.settings["draws"],
                               precision=precision))

    def losses_after(self, ids: list[int], names: list[str], delta: list[torch.Tensor], batch_size: int,
                     precision: Precision = "fp32", conditioning: str = "prompt",
                     draws: Sequence[int] | None = None) -> torch.Tensor:
        """L(z_i, θ0+Δ) [n, D] for ``ids`` (or [n, len(draws)]: only those of the index's draws), the segments
        conditioned as ``conditioning`` says; under torchrun, batches of segment ids are dealt out across ranks.

        Each batch is the one a single process would score, so the gathered result is bit-identical.
        """
        meta = self.index.meta
        seed, total = meta.settings["seed"], meta.settings["draws"]
        width = total if draws is None else len(draws)
        distributed.init_from_env()
        step = segments_per_batch(batch_size, width)
        batches = [ids[i:i + step] for i in range(0, len(ids), step)]
        parts: dict[int, torch.Tensor] = {}
        mine = distributed.mine(range(len(batches)))
        with applied(named_parameters(self.adapter, names), delta), \
                stage("score", sum(len(batches[b]) for b in mine)) as advance:
            for b in mine:
                chunk = batches[b]
                segs = [self.index.segments[i] for i in chunk]
                conds = [segment_conditioning(self.index.tracks[s.track_id], s, conditioning) for s in segs]
                parts[b] = losses(self.adapter, self.index.gather(chunk, "latents"), conds,
                                  [segment_stream(i) for i in chunk], seed=seed, draws=total, batch_size=batch_size,
                                  precision=precision, subset=draws)
                advance(len(chunk))
        merged = distributed.merge(parts)
        return torch.cat([merged[b] for b in range(len(batches))]) if batches else torch.empty(0, width)

    def conditioning(self, settings: AttributeSettings, prompt: str | None) -> ConditioningMode:
        """The conditioning that answers a clip with (or without) ``prompt``, refused in one line where this model
        or index lacks what it needs."""
        null_branch = bool(getattr(self.adapter, "supports_unconditional", False))
        kind = settings.resolved_conditioning(prompt, self.index.has_unconditional, null_branch)
        step_branch, segment_branch = BRANCHES[kind]
        if step_branch == "unconditional" and not null_branch:
            raise TdaError(f"the {self.adapter.name} model has no null branch, so --conditioning {kind} cannot be used: "
                           "pass the prompt the clip was generated with, or --conditioning prompt to score it under an "
                           "empty prompt")
        if kind == "gated" and not prompt:
            raise TdaError("--conditioning gated credits the clip's segments by its prompt, and it has none: pass --prompt, "
                           "or use --conditioning audio or unconditional for a clip found without one")
        if segment_branch == "unconditional" and not self.index.has_unconditional:
            raise TdaError(f"{self.index.root} has no unconditional baselines, so --conditioning {kind} cannot be used: "
                           "use --conditioning audio (the clip on the null branch, the segments under their captions), "
                           "or rebuild the index without --no-unconditional")
        return kind

    def attribute(self, audio: np.ndarray | torch.Tensor, sample_rate: int, *, prompt: str | None = None,
                  settings: AttributeSettings = AttributeSettings(), path: str | None = None,
                  seconds_start: float = 0.0, seconds_total: float | None = None,
                  encoded: torch.Tensor | None = None, checked: Sequence[str] | None = None) -> AttributionResult:
        """Attribute one clip. ``prompt``, ``seconds_start`` and ``seconds_total`` are the conditioning it was
        generated with (stable-audio-tools timing conditioning; ``seconds_total`` defaults to the clip's length).
        ``encoded``: the clip's exact training representation, if known; ``checked``: the level check's warnings,
        if the caller checked the audio already (see :meth:`encode_query`)."""
        from .lifecycle import after_attribution, before_attribution

        before_attribution({"path": path, "prompt": prompt, "sample_rate": sample_rate,
                            "duration_s": np.shape(audio)[-1] / sample_rate, "seconds_start": seconds_start,
                            "seconds_total": seconds_total}, asdict(settings))
        meta = self.index.meta
        seed, draws = meta.settings["seed"], meta.settings["draws"]
        un = settings.unlearn
        kind = self.conditioning(settings, prompt)
        step_branch, segment_branch = BRANCHES[kind]
        with stage("encode"):
            query = self.encode_query(audio, sample_rate, prompt, un.mask_silence, name=path or "query",
                                      seconds_start=seconds_start, seconds_total=seconds_total, encoded=encoded,
                                      conditioning=step_branch, segments=segment_branch, checked=checked)
        with stage("unlearn"):
            names, delta, alpha, relative_step = self.forget(query, un)
        index_damping = float(meta.settings.get("damping", 0.1))
        damping = index_damping if un.damping is None else un.damping
        with stage("prefilter"):
            candidates = self.candidates(query, settings)
        batch = settings.batch_size or self._auto_batch(candidates, settings.precision)
        scored = shortlist.scores(
            candidates, int(draws), settings,
            change=lambda ids, subset: self.loss_changes(ids, names, delta, batch, settings.precision, segment_branch,
                                                         subset),
            normalise=lambda ids, tau: self.normalised(ids, tau, un, segment_branch))
        fully_scored = len(scored.ids)
        if kind == "gated":
            with stage("gate"):
                scored = self._gated(query, scored, un, settings)
        ids, tau, score = scored.ids, scored.tau, scored.score
        scores = {sid: float(s) for sid, s in zip(ids, score.tolist())}
        raw = dict(zip(ids, tau.tolist()))
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        segs, credits, artists = build_credits(ranked, self.index.segments, self.index.tracks, settings.top,
                                               settings.track_credit)
        for seg in segs:
            seg["loss_change"] = raw[seg["segment_id"]]
        first_tracks, first_artists = stability.first_shares(
            scored.change, self.normalised(ids, torch.ones(len(ids)), un, segment_branch),
            [self.index.segments[i].track_id for i in ids], {t: row.artist for t, row in self.index.tracks.items()},
            settings.top, settings.track_credit, seed, segment_ids=ids)
        estimable = stability.estimable(scored.change.shape[1])
        for credit in credits if estimable else ():
            credit["first_share"] = first_tracks.get(credit["track_id"], 0.0)
        for artist in artists if estimable else ():
            artist["first_share"] = first_artists.get(artist["artist"], 0.0)
        result = AttributionResult(
            query={"path": path, "prompt": prompt, "duration_s": round(query.duration_s, 6),
                   "seconds_start": seconds_start, "seconds_total": query.conditioning[0].total_s,
                   "conformed": query.conformed, "warnings": query.warnings},
            model={"adapter": self.adapter.name, "fingerprint": self.adapter.fingerprint},
            method={**un.to_dict(), "conditioning": kind, "alpha": alpha, "alpha_from": "given" if un.alpha else "relative_step",
                    "damping": damping, "sensitivity_damping": index_damping, "draws": draws, "seed": seed, "candidates": settings.candidates,
                    "candidates_scored": len(candidates), "shortlist": settings.shortlist,
                    "shortlist_draws": settings.shortlist_draws, "track_credit": settings.track_credit, "scored": fully_scored, "embedder": meta.settings["embedder"], "training_segments": len(self.index.segments),
                    "segment_seconds": meta.segment_seconds, "relative_step": relative_step,
                    "prefilter": self.prefilter_basis(un, len(candidates)),
                    "stability": {"resamples": stability.RESAMPLES, "of": f"the {draws} loss draws",
                                  "settled_at": stability.SETTLED} if estimable else
                    {"not_estimable": self._why_not_estimable(draws)}},
            segments=segs, credits=credits, artists=artists, scores=scores)
        if settings.copies:
            with stage("near copies"):
                result.copies = self.copies.find(audio.detach().cpu().numpy() if torch.is_tensor(audio) else audio, sample_rate)
            result.method["near_copies"] = self.copies.settings()
        result.vetoes = after_attribution(result.to_dict())
        return result

    def _why_not_estimable(self, draws: int) -> str:
        """Why resampling the loss draws cannot say whether the first credit is settled: a draw-free loss
        (MusicGen's teacher-forced cross-entropy) has no randomness to resample, so "settled in N of N"
        would be true of any result; otherwise the index kept too few draws."""
        if getattr(self.adapter, "draw_free", False):
            return ("the model's loss has no random draws: it is the same under every draw, so there is nothing "
                    "to resample and the credits are one deterministic result")
        return f"the index keeps {draws} loss draw: no resample differs from the result"

    def _gated(self, query: EncodedQuery, audio: shortlist.Scored, un: UnlearnSettings,
               settings: AttributeSettings) -> shortlist.Scored:
        """The gated conditioning's second stage (:mod:`.gating`): of the segments the clip's audio ranks best (its
        step on the null branch), the credits' own top, each scored after a second step under the clip's prompt."""
        ids = gating.kept(audio.ids, audio.score, settings.top)
        prompted = replace(query, conditioning=[replace(c, unconditional=False) for c in query.conditioning],
                           mode="prompt", step=None)
        names, delta, _, _ = self.forget(prompted, un)
        batch = settings.batch_size or self._auto_batch(ids, settings.precision)
        prompted_scores = self.scored(ids, names, delta, un, batch, settings.precision, "prompt")
        return replace(prompted_scores, score=gating.credited(prompted_scores.score))

    def attribute_file(self, path: Path, *, prompt: str | None = None, settings: AttributeSettings = AttributeSettings(),
                       seconds_start: float = 0.0, seconds_total: float | None = None) -> AttributionResult:
        data, sr = audio_io.load(Path(path))
        return self.attribute(data, sr, prompt=prompt, settings=settings, path=str(path),
                              seconds_start=seconds_start, seconds_total=seconds_total)
