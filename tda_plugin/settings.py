"""Settings as validated dataclasses. CLI options mirror these fields; results record them all."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .credits import TRACK_CREDITS, TrackCredit
from .errors import TdaError

SUBSETS = ("blocks", "self_attn", "cross_attn", "cross_attn_kv")
#: λ = damping · mean Fisher divides by F + λ, and a Fisher has exact zeros (parameters without gradient)
DAMPING_ERROR = "damping must be positive (the preconditioner divides by F + damping · mean F, and F has zeros)"
CONDITIONINGS = ("auto", "prompt", "unconditional", "audio", "gated")
ConditioningMode = Literal["prompt", "unconditional", "audio", "gated"]
#: (the query's step, the segments' loss changes) under each conditioning: "prompt" is the clip's prompt or the
#: segments' captions, "unconditional" the model's null (classifier-free guidance) branch. "gated" (tda_plugin/gating.py)
#: ranks as "audio" does, then credits the best of that ranking by a second step under the prompt
BRANCHES: dict[str, tuple[str, str]] = {"prompt": ("prompt", "prompt"), "unconditional": ("unconditional", "unconditional"),
                                        "audio": ("unconditional", "prompt"), "gated": ("unconditional", "prompt")}


@dataclass(frozen=True)
class IndexSettings:
    """How an index is built. Every field changes the index, so all are stored in index.json."""

    #: segment length in seconds; None takes the adapter's default (the model's training length)
    segment_seconds: float | None = None
    #: loss draws (timestep, noise) per segment: the baseline and every score average over them, and the
    #: sensitivities, the Fisher and the sketch are gradients of their mean. 64, not 16: on the null branch a
    #: segment's 16-draw sensitivity correlates only 0.68 with its 64-draw one (demo), and copies found without a
    #: prompt found their source more often with 64 (self-rank 19 -> 23/24 on the demo), which needed both the
    #: 64-draw sensitivities and 64-draw scores of the best candidates (each alone: 19/24). Costs 4x the build's
    #: gradient pass; a query scores 16 of them (``AttributeSettings.shortlist_draws``; docs/experiments/draws-64.md)
    draws: int = 64
    #: seed of all fixed randomness (noise of (segment, draw), timestep strata, Fisher sample)
    seed: int = 0
    #: training segments sampled for the diagonal Fisher
    fisher_segments: int = 64
    #: prefilter embedder (a name registered through the tda_embedders hook); the gradient sketch had the
    #: best recall of the exhaustive top-10 on the demo and the real catalogue (docs/performance.md)
    embedder: str = "gradient_sketch"
    #: segments per shard file: the unit of resumption
    shard_size: int = 64
    #: λ of the stored per-segment sensitivities, as a fraction of the subset's mean Fisher
    damping: float = 0.1
    #: also cache every segment's losses, sensitivities and prefilter vectors under the model's null
    #: conditioning, for attributing clips that come without a prompt (when the adapter supports it)
    unconditional: bool = True

    def __post_init__(self) -> None:
        if self.segment_seconds is not None and self.segment_seconds <= 0:
            raise TdaError("segment length must be positive")
        if self.draws < 1 or self.fisher_segments < 1 or self.shard_size < 1:
            raise TdaError("draws, fisher segments and shard size must be at least 1")
        if not self.damping > 0:
            raise TdaError(DAMPING_ERROR)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnlearnSettings:
    """How the query is forgotten (docs/method.md, section 7)."""

    #: "newton": one Fisher-preconditioned step; "ascent": several gradient-ascent steps with an EWC penalty
    mode: Literal["newton", "ascent"] = "newton"
    #: step size α of θ' = θ0 + (α/N)(F + λI)^-1 ∇L(ẑ); for "ascent", each step's rate is α/N too.
    #: None: α is chosen per query so that the first step moves the subset by ``relative_step``
    alpha: float | None = None
    #: with alpha=None, the size of the first step as rms(Δ)/rms(θ): scale-free, so one default fits
    #: models whose Fisher differs by orders of magnitude (small enough to stay first-order)
    relative_step: float = 1e-3
    #: ascent steps (the Newton step is always one)
    steps: int = 1
    #: parameter subset: blocks (all transformer blocks), self_attn, cross_attn, cross_attn_kv
    subset: str = "blocks"
    #: loss draws averaged for the query gradient
    unlearn_draws: int = 64
    #: λ as a fraction of the mean Fisher diagonal of the subset; None: the index's damping (which the
    #: stored sensitivities of the "self" normalisation were computed with)
    damping: float | None = None
    #: "self": score τ_i / s_i, each segment's loss change relative to its own sensitivity
    #: s_i = sqrt(g_iᵀ(F+λI)^-1 g_i) (relative influence); "none": the raw loss change τ_i
    normalize: Literal["self", "none"] = "self"
    #: EWC weight for "ascent" in [0, 1]: each step is Δ ← (1 − ewc)·Δ + (α/N)(F+λI)^-1 ∇L(ẑ, θ0+Δ)
    #: (preconditioned ascent on L(ẑ) − (N/2α)·ewc·ΔᵀF̃Δ); 1 re-takes the Newton step from the moved point
    ewc: float = 1.0
    #: mask silent frames (and padding) out of the query loss
    mask_silence: bool = True
    #: (lo, hi): while forgetting, the query's draws take their shared quantiles from this range only (still one
    #: per stratum): for diffusion adapters a quantile range of the training timestep distribution (higher:
    #: noisier); adapters that read the quantiles otherwise (a codebook level, a diffusion step) are restricted
    #: alike. (0, 1) is the training objective itself and the default: the upper half measured worse on every
    #: behaviour check (docs/experiments/behaviour-probes.md)
    query_timesteps: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.mode not in ("newton", "ascent"):
            raise TdaError(f"unknown unlearning mode {self.mode!r} (newton or ascent)")
        if self.subset not in SUBSETS:
            raise TdaError(f"unknown parameter subset {self.subset!r} (one of {', '.join(SUBSETS)})")
        if (self.alpha is not None and self.alpha <= 0) or self.relative_step <= 0:
            raise TdaError("alpha and the relative step must be positive")
        if self.steps < 1 or self.unlearn_draws < 1:
            raise TdaError("steps and unlearn draws must be at least 1")
        if self.damping is not None and not self.damping > 0:
            raise TdaError(DAMPING_ERROR)
        if not 0 <= self.ewc <= 1:
            raise TdaError("ewc must be between 0 and 1")
        if self.normalize not in ("self", "none"):
            raise TdaError(f"unknown normalisation {self.normalize!r} (self or none)")
        if self.mode == "newton" and self.steps != 1:
            raise TdaError("the Newton step is a single step; use --mode ascent for several steps")
        try:
            lo, hi = (float(v) for v in self.query_timesteps)
        except (TypeError, ValueError):
            lo, hi = 1.0, 0.0
        if not 0 <= lo < hi <= 1:
            raise TdaError(f"query timesteps must be a quantile range (lo, hi) with 0 <= lo < hi <= 1, "
                           f"not {self.query_timesteps!r}")
        object.__setattr__(self, "query_timesteps", (lo, hi))  # a TOML or JSON list becomes the tuple

    def to_dict(self) -> dict[str, Any]:
        """JSON's types (the range as a list), so that a result read back from its JSON equals the result."""
        return asdict(self) | {"query_timesteps": list(self.query_timesteps)}


@dataclass(frozen=True)
class AttributeSettings:
    """What an attribution returns and how many candidates get exact scores."""

    unlearn: UnlearnSettings = field(default_factory=UnlearnSettings)
    #: segments to report
    top: int = 10
    #: candidates scored exactly: an int M (the prefilter's top M), a percentage of the catalogue ("5%"),
    #: or "all" (no prefilter). Default: a fixed 256, so a query's cost does not grow with the catalogue: on a
    #: model trained on real music, the prefilter's top 256 held every query's exhaustive top-10 at N = 1 000,
    #: 5 000 and 20 000 segments (12 queries; 128 gave 0.99-1.0, 64 0.975; bench/query_scaling.py,
    #: docs/performance.md); on the smaller catalogues measured (72 to 459 segments) 256 is more than the
    #: 20 % share whose recall was already 0.93-1.0
    candidates: int | str = 256
    #: of those candidates, how many get exact scores over all the index's draws: the best ``shortlist`` by a
    #: first pass over ``shortlist_draws`` of the draws (tda_plugin/shortlist.py); None: every candidate.
    #: Never applies to ``candidates="all"``, which scores every segment over every draw, nor to an index of no
    #: more draws than the first pass (an index built with 16 draws is scored exhaustively, as before). On a
    #: 64-draw index the default, 16 after 16, gave the figures of scoring every candidate on all 64 probe for
    #: probe on the demo (24 copies without a prompt) at 1.2-1.7x the scoring of 16 draws; a first pass over 1-4
    #: draws ranked candidates worse than the prefilter (top-10 recall 0.00-0.64 at 1k-20k segments,
    #: bench/query_scaling.py)
    shortlist: int | None = 16
    #: draws of the first pass (spread over the timestep strata)
    shortlist_draws: int = 16
    #: segment-draws per forward pass when scoring; 0: as many as fit in free GPU memory (64 on CPU)
    batch_size: int = 64
    #: "fp32", or "bf16": autocast on CUDA with fp32 losses; the baseline is then recomputed in bf16 for
    #: the candidates (paired), since the cached fp32 baseline would not cancel bf16 rounding
    precision: Literal["fp32", "bf16"] = "fp32"
    #: how the query and the training segments are conditioned (``BRANCHES``): "prompt" (each under its own
    #: prompt), "unconditional" (both under the model's null conditioning), "audio" (the query's step on the null
    #: branch, so its prompt is never read, the segments under their captions: credits follow the clip's audio),
    #: or "auto" (gated when the query has a prompt and the model a null branch, so that a wrong prompt cannot
    #: move the credits; else unconditional where the index has null-branch baselines, audio where it has not).
    #: Without a prompt, "audio" ranks a training segment first more often than "unconditional" (demo 22/24 against
    #: 19/24, real music 12/12 against 11/12) but names the prompted artist of generated clips less often (11/16
    #: against 13/16, 1/11 against 5/11; docs/experiments/prompt-swap-and-branches.md).
    #: "gated" (needs the prompt): the ``top`` segments "audio" ranks best, credited by their "prompt" scores
    #: (tda_plugin/gating.py): a wrong prompt cannot bring in other material, the right one orders it
    conditioning: Literal["auto", "prompt", "unconditional", "audio", "gated"] = "auto"
    #: how a track's credit gathers the positive scores of its segments among the top: "max" (its best segment,
    #: so that a track is not credited more for having more segments) or "sum". "max" found the source track
    #: of noisy copies 23/24 against 15/24 on the demo, 12/12 against 11/12 on real music, the other checks
    #: within one probe (docs/experiments/track-credit.md)
    track_credit: TrackCredit = "max"
    #: also search the clip for near copies of catalogue tracks (tda_plugin/copies: transposed, re-timed, filtered or
    #: remixed), reported beside the credits; an index built without fingerprints skips it with a note
    copies: bool = True

    def __post_init__(self) -> None:
        if self.track_credit not in TRACK_CREDITS:
            raise TdaError(f"unknown track credit {self.track_credit!r} ({' or '.join(TRACK_CREDITS)})")
        if self.top < 1 or self.batch_size < 0:
            raise TdaError("top must be at least 1 and batch size non-negative (0: automatic)")
        if self.precision not in ("fp32", "bf16"):
            raise TdaError(f"unknown precision {self.precision!r} (fp32 or bf16)")
        if self.conditioning not in CONDITIONINGS:
            raise TdaError(f"unknown conditioning {self.conditioning!r} ({', '.join(CONDITIONINGS)})")
        if self.candidates != "all" and not (isinstance(self.candidates, int) and self.candidates >= 1) \
                and _percentage(self.candidates) is None:
            raise TdaError("candidates must be a positive integer, a percentage such as '5%', or 'all'")
        if (self.shortlist is not None and self.shortlist < 1) or self.shortlist_draws < 1:
            raise TdaError("the shortlist and its first-pass draws must be at least 1")

    def resolved_conditioning(self, prompt: str | None, null_baselines: bool = True,
                              null_branch: bool = True) -> ConditioningMode:
        """The conditioning that answers a query with (or without) ``prompt``. ``null_baselines``: whether the index
        cached the segments' statistics on the null branch; ``null_branch``: whether the model has one (without
        either, "auto" answers a prompt-less query under the empty prompt)."""
        if self.conditioning != "auto":
            return self.conditioning
        if prompt:
            return "gated" if null_branch else "prompt"
        return "unconditional" if null_baselines and null_branch else "audio" if null_branch else "prompt"

    def candidate_count(self, n: int) -> int:
        """M for a catalogue of ``n`` segments; a percentage never gives fewer than ``MIN_CANDIDATES``."""
        if self.candidates == "all":
            return n
        pct = _percentage(self.candidates)
        if pct is not None:
            return min(n, max(MIN_CANDIDATES, math.ceil(pct / 100 * n)))
        return min(n, int(self.candidates))


#: floor of a percentage M: below it exact scoring is cheap anyway, and a top-10 needs room
MIN_CANDIDATES = 64


def _percentage(value: object) -> float | None:
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            return None
        return pct if 0 < pct <= 100 else None
    return None
