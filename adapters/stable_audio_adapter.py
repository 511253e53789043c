"""stable-audio-tools adapter: `diffusion_cond` models (v-objective and rectified flow).

Models are built with the toolkit's own ``create_model_from_config`` and weights read with its
``load_ckpt_state_dict`` (``model_config.json`` + ``model.safetensors`` or ``model.ckpt``). The
per-sample loss is the objective of ``DiffusionCondTrainingWrapper.training_step``, reusing the
toolkit's noise schedule (``get_alphas_sigmas``) and distribution shift, but with the draws given
explicitly and the reduction kept per sample (the wrapper reduces over the batch and draws from
global random state, which is right for training and wrong for measurement).

stable-audio-tools is imported lazily: listing this adapter never needs it. The plugin that offers it
(with the demo's training recipe) is :mod:`.stable_audio`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.errors import CheckpointError, TdaError, import_failure
from tda_plugin.randomness import Draws

log = logging.getLogger(__name__)

NAME = "stable-audio"
REQUIREMENT = "pip install stable-audio-tools 'setuptools<81' (README: Install)"
#: key of the conditioning dict that marks examples conditioned on the null branch
UNCONDITIONAL = "__unconditional__"


def _toolkit() -> Any:
    """Import stable-audio-tools quietly, or say in one line what to install."""
    try:
        # it prints about flash-attn on import, and its k-diffusion -> clip import warns about pkg_resources
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import stable_audio_tools.models.factory as factory
            import stable_audio_tools.models.utils as utils
            import stable_audio_tools.inference.sampling as sampling
    except ImportError as exc:
        raise import_failure(exc, "stable-audio-tools", "stable_audio_tools", REQUIREMENT) from None
    return factory, utils, sampling


def fingerprint(config: dict[str, Any], checkpoint: Path, model: torch.nn.Module) -> str:
    """sha256 over the canonical config JSON, the checkpoint bytes, and the weights of conditioners
    that live outside the checkpoint (T5 and CLAP load from the Hugging Face cache; another cached
    version would otherwise pass unnoticed)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    conditioner = getattr(model, "conditioner", None)
    for key, cond in sorted((conditioner.conditioners.items() if conditioner is not None else [])):
        external = cond.__dict__.get("model")  # not a registered submodule, so not in the checkpoint
        if isinstance(external, torch.nn.Module):
            h.update(key.encode())
            for name, tensor in sorted(external.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_config(model_config: Path) -> dict[str, Any]:
    try:
        config = json.loads(Path(model_config).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{model_config}: no such model config") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{model_config}: not valid JSON ({exc})") from None
    if config.get("model_type") not in ("diffusion_cond", "diffusion_cond_inpaint"):
        raise CheckpointError(f"{model_config}: model_type {config.get('model_type')!r} is not supported "
                              "(the stable-audio adapter handles diffusion_cond models)")
    return config


def build_model(config: dict[str, Any]) -> torch.nn.Module:
    factory, _, _ = _toolkit()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return factory.create_model_from_config(config)
    except OSError as exc:  # a conditioner's pretrained files (T5, CLAP) are not in the local cache
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        names = [c.get("config", {}).get("t5_model_name", c.get("type")) for c in
                 config.get("model", {}).get("conditioning", {}).get("configs", []) if c.get("type") in ("t5", "clap_text", "clap_audio")]
        raise CheckpointError(f"the model's conditioner needs pretrained files that are not in the Hugging Face cache "
                              f"({', '.join(map(str, names)) or 'unknown'}): {first}") from None
    except (KeyError, AssertionError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model config cannot be built by stable-audio-tools: {exc!r}") from None


def load_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load a checkpoint strictly; a mismatch with the config is one line naming the first differences."""
    _, utils, _ = _toolkit()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint")
    try:
        state = utils.load_ckpt_state_dict(str(checkpoint))
    except Exception as exc:
        raise CheckpointError(f"{checkpoint}: cannot read checkpoint ({exc})") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{checkpoint} does not match its model config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


class StableAudioAdapter:
    """A loaded stable-audio-tools `diffusion_cond` model, seen through :class:`tda_plugin.adapter.ModelAdapter`."""

    name = NAME
    #: the DiT's ContinuousTransformer checkpoints every block (recomputing it in the backward) unless told
    #: otherwise; tda_plugin.gradients turns this off where memory allows (exact: it changes only what is stored)
    activation_checkpointing = True
    supports_unconditional = True

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], fingerprint: str, device: str = "cpu") -> None:
        _, _, self._sampling = _toolkit()
        self.model = model.to(device).eval().requires_grad_(False)
        self.config = config
        self.fingerprint = fingerprint
        self.sample_rate = int(config["sample_rate"])
        self.channels = int(config.get("audio_channels", 2))
        self.objective = getattr(model, "diffusion_objective", "v")
        if self.objective not in ("v", "rectified_flow", "rf_denoiser"):
            raise TdaError(f"unsupported diffusion objective {self.objective!r}")
        self.timestep_sampler = config.get("training", {}).get("timestep_sampler", "uniform")
        if self.timestep_sampler not in ("uniform", "logit_normal"):
            raise TdaError(f"timestep sampler {self.timestep_sampler!r} is not supported (uniform, logit_normal)")
        inner = getattr(getattr(model, "model", None), "model", None)  # ConditionedDiffusionModelWrapper -> DiTWrapper -> DiT
        self._checkpointed = type(getattr(inner, "transformer", None)).__name__ == "ContinuousTransformer"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: Path, *, model_config: Path | None, device: str = "cpu") -> "StableAudioAdapter":
        checkpoint = Path(checkpoint)
        if model_config is None:
            model_config = checkpoint.with_name("model_config.json")
        config = read_config(Path(model_config))
        model = build_model(config)
        load_weights(model, checkpoint)
        return cls(model, config, fingerprint(config, checkpoint, model), device)

    # -- ModelAdapter -------------------------------------------------------------------------
    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def downsampling(self) -> int:
        return int(self.model.min_input_length)

    def valid_segment_samples(self, samples: int) -> int:
        return max(self.downsampling, samples - samples % self.downsampling)

    def default_segment_samples(self) -> int:
        return self.valid_segment_samples(int(self.config.get("sample_size", self.sample_rate * 10)))

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Pretransform latents; a VAE bottleneck contributes its mean, so encoding is deterministic.

        For a VAE the autoencoder's own ``encode`` runs up to the bottleneck (its inner pretransform, if it
        has one, then its encoder), and the posterior mean is divided by the pretransform's ``scale``, as
        ``AutoencoderPretransform.encode`` divides its sample. A segment is encoded whole: the pretransform's
        ``chunked`` option, a memory tactic for long audio, does not apply.
        """
        audio = audio.to(self.device, torch.float32)
        pre = self.model.pretransform
        if pre is None:
            return audio
        ae = getattr(pre, "model", None)
        bottleneck = getattr(ae, "bottleneck", None)
        if bottleneck is not None and type(bottleneck).__name__ == "VAEBottleneck":
            dtype = next(ae.parameters()).dtype  # fp16 under the pretransform's model_half
            moments = ae.encode(audio.to(dtype), skip_bottleneck=True, iterate_batch=getattr(pre, "iterate_batch", False))
            mean, _ = moments.float().chunk(2, dim=1)
            return mean / pre.scale
        return pre.encode(audio).float()

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        pre = self.model.pretransform
        encoded = encoded.to(self.device)
        return encoded if pre is None else pre.decode(encoded).float()

    def frame_mask(self, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
        b, s = sample_mask.shape
        ratio = max(1, s // frames)
        pooled = sample_mask[:, : frames * ratio].reshape(b, frames, ratio).any(dim=-1)
        return pooled.to(self.device)

    def condition(self, conditioning: list[Conditioning]) -> dict[str, Any]:
        """The conditioner's tensors, plus which examples take the null branch (``Conditioning.unconditional``)."""
        metadata = [{"prompt": c.prompt or "", "seconds_start": float(c.start_s), "seconds_total": float(c.total_s)}
                    for c in conditioning]
        try:
            # T5 conditioning wraps itself in CUDA autocast, which warns on every CPU call
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cond = self.model.conditioner(metadata, self.device)
        except ValueError as exc:
            raise TdaError(f"the model's conditioning needs inputs tda-plugin does not provide: {exc}") from None
        null = torch.tensor([c.unconditional for c in conditioning], dtype=torch.bool)
        if bool(null.any()):
            cond[UNCONDITIONAL] = null
        return cond

    def timesteps(self, quantiles: torch.Tensor, frames: int) -> torch.Tensor:
        """Map shared stratified quantiles through the model's own timestep sampler and shift."""
        u = quantiles.double()
        if self.timestep_sampler == "logit_normal":
            t = torch.sigmoid(math.sqrt(2.0) * torch.erfinv(2 * u - 1))
        else:
            t = u
        t = t.float()
        if self.model.dist_shift is not None:
            t = self.model.dist_shift.time_shift(t, self.shift_length(frames))
        return t

    def shift_length(self, frames: int) -> int:
        """The length the distribution shift is given: ``DiffusionCondTrainingWrapper`` passes ``reals.shape[2]``,
        the latent length when it trains on pre-encoded latents (``training.pre_encoded``) and the *audio*
        length when it encodes audio itself. (The toolkit's samplers pass the latent length.)"""
        pre = self.model.pretransform
        if pre is None or self.config.get("training", {}).get("pre_encoded", False):
            return frames
        return frames * int(pre.downsampling_ratio)

    def _inputs(self, cond: dict[str, Any], d: int) -> dict[str, Any]:
        """The DiT's conditioning inputs for ``d`` draws of each example (as the model wrapper's ``forward``
        builds them), with the cross-attention and prepended conditioning of unconditional examples zeroed
        exactly as classifier-free guidance's null branch zeroes them (the global timing embedding stays)."""
        repeated = {k: [x.repeat_interleave(d, dim=0) if torch.is_tensor(x) else x for x in v]
                    for k, v in cond.items() if k != UNCONDITIONAL}
        inputs = self.model.get_conditioning_inputs(repeated)
        null = cond.get(UNCONDITIONAL)
        if null is not None:
            keep = (~null).repeat_interleave(d).to(self.device)
            for key in ("cross_attn_cond", "prepend_cond"):
                if inputs.get(key) is not None:
                    inputs[key] = inputs[key] * keep[:, None, None].to(inputs[key].dtype)
        return inputs

    def _forward(self, encoded: torch.Tensor, cond: dict[str, Any], draws: Draws,
                 cfg_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(the DiT's output, the objective's target), [B·D, C, T] each, for every (sample, draw) as
        DiffusionCondTrainingWrapper noises them; what :meth:`loss` compares and :meth:`prediction` returns."""
        d = draws.count
        dev = self.device
        x0 = encoded.to(dev, torch.float32)
        t = self.timesteps(draws.quantiles, x0.shape[-1]).to(dev).repeat(x0.shape[0])
        noise = draws.normal(x0.shape[1:]).to(dev).flatten(0, 1)
        x = x0.repeat_interleave(d, dim=0)
        if self.objective == "v":
            alphas, sigmas = self._sampling.get_alphas_sigmas(t)
        else:
            alphas, sigmas = 1 - t, t
        alphas, sigmas = alphas[:, None, None], sigmas[:, None, None]
        noised = x * alphas + noise * sigmas
        targets = noise * alphas - x * sigmas if self.objective == "v" else noise - x
        extra = {} if self.activation_checkpointing or not self._checkpointed else {"use_checkpointing": False}
        out = self.model.model(noised, t, **self._inputs(cond, d), cfg_dropout_prob=cfg_dropout, **extra)
        return out.float(), targets

    def loss(self, encoded: torch.Tensor, cond: dict[str, Any], draws: Draws, mask: torch.Tensor | None = None,
             cfg_dropout: float = 0.0) -> torch.Tensor:
        """Per-(sample, draw) MSE of the objective's target, as in DiffusionCondTrainingWrapper.

        ``cfg_dropout`` is for training only (the demo); measurement always uses 0.
        """
        b, d = encoded.shape[0], draws.count
        out, targets = self._forward(encoded, cond, draws, cfg_dropout)
        err = (out - targets).pow(2)
        if mask is None:
            per = err.mean(dim=(1, 2))
        else:
            m = mask.to(self.device, torch.float32).repeat_interleave(d, dim=0)[:, None, :]
            per = (err * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * err.shape[1]).clamp_min(1.0)
        return per.reshape(b, d)

    @torch.no_grad()
    def prediction(self, encoded: torch.Tensor, cond: dict[str, Any], draws: Draws) -> torch.Tensor:
        """The DiT's output [B, D, C, T] under the same draws as :meth:`loss` (v or velocity): what a
        DAS-style score compares before and after unlearning."""
        out, _ = self._forward(encoded, cond, draws)
        return out.reshape(encoded.shape[0], draws.count, *out.shape[1:])

    @torch.no_grad()
    def features(self, encoded: torch.Tensor, cond: dict[str, Any], draws: Draws) -> torch.Tensor:
        """Mean and std over tokens of the DiT transformer's output, averaged over draws."""
        captured: list[torch.Tensor] = []
        transformer = self.model.model.model.transformer
        handle = transformer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.loss(encoded, cond, draws)
        finally:
            handle.remove()
        h = captured[-1].float()
        feats = torch.cat([h.mean(dim=1), h.std(dim=1)], dim=-1)
        return feats.reshape(encoded.shape[0], draws.count, -1).mean(dim=1)

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters() if ".transformer.layers." in n]
        groups = {
            "blocks": names,
            "self_attn": [n for n in names if ".self_attn." in n],
            "cross_attn": [n for n in names if ".cross_attn." in n],
            "cross_attn_kv": [n for n in names if ".cross_attn.to_kv." in n],
        }
        return {k: v for k, v in groups.items() if v}

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Train mode with gradients on, for the demo's trainer; restores eval + frozen after."""
        self.model.train().requires_grad_(True)
        if self.model.pretransform is not None:
            self.model.pretransform.eval().requires_grad_(False)
        try:
            yield
        finally:
            self.model.eval().requires_grad_(False)
