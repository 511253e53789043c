"""audiocraft adapter: MusicGen and MAGNeT token language models over EnCodec codes.

A checkpoint is a directory as audiocraft exports and loads it: ``state_dict.bin`` (``best_state`` +
``xp.cfg``) and ``compression_state_dict.bin`` (an exported EnCodec, or ``{"pretrained": name}``),
read by audiocraft's own ``loaders.load_lm_model`` / ``load_lm_model_magnet`` /
``load_compression_model``. The training representation is the EnCodec codes [B, K, T] (long); the
per-sample loss is the LM's own objective (adapters/audiocraft_losses.py). A directory holding a
MultiBandDiffusion package (``*.th``) instead loads as the diffusion decoder (adapters/audiocraft_mbd.py).

audiocraft is imported lazily: listing this adapter never needs it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.errors import CheckpointError
from tda_plugin.hookspecs import hookimpl
from tda_plugin.randomness import Draws
from tda_plugin.registry import AdapterSpec

from .audiocraft_losses import ConditionTensors, condition_groups, magnet_loss, musicgen_loss
from .audiocraft_mbd import AudiocraftMBDAdapter
from .audiocraft_toolkit import COMPRESSION_FILE, LM_FILE, REQUIREMENT, quiet, toolkit

log = logging.getLogger(__name__)

NAME = "audiocraft"
#: Hugging Face files each pretrained piece loads (alternatives separated by "|")
T5_FILES = ("config.json", "spiece.model|tokenizer.json", "model.safetensors|pytorch_model.bin")
HF_ENCODEC_FILES = ("config.json", "model.safetensors|pytorch_model.bin")


# -- checkpoints ---------------------------------------------------------------------------------
def checkpoint_dir(checkpoint: Path) -> Path:
    """The directory holding both files (``checkpoint`` may name the directory or its state_dict.bin)."""
    path = Path(checkpoint)
    directory = path.parent if path.is_file() else path
    missing = [name for name in (LM_FILE, COMPRESSION_FILE) if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: not an audiocraft checkpoint directory (missing {', '.join(missing)})")
    return directory


def _read(loader: Any, directory: Path, name: str) -> dict[str, Any]:
    try:
        with quiet():
            return loader(str(directory))
    except Exception as exc:
        raise CheckpointError(f"{directory / name}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None


def _missing_hf_files(repo: str, files: tuple[str, ...]) -> list[str]:
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for choice in files:
        options = choice.split("|")
        if not any(isinstance(try_to_load_from_cache(repo, f), str) for f in options):
            missing.append(f"{repo}/{' or '.join(options)}")
    return missing


def pretrained_files_missing(cfg: Any, compression_pkg: dict[str, Any]) -> list[str]:
    """Hugging Face files that the T5 conditioner and a pretrained EnCodec would load but the local cache lacks."""
    missing: list[str] = []
    for cond in (cfg.get("conditioners") or {}).values():
        if hasattr(cond, "get") and cond.get("model") == "t5":  # (the "args" entry is no conditioner)
            missing += _missing_hf_files(str(cond["t5"]["name"]), T5_FILES)
    name = compression_pkg.get("pretrained")
    if isinstance(name, str) and not name.startswith("dac"):
        missing += _missing_hf_files(name, HF_ENCODEC_FILES)
    return missing


def _state_mismatch(directory: Path, exc: Exception) -> CheckpointError:
    """One line out of torch's multi-line load_state_dict error."""
    text = str(exc)
    parts = []
    for label, pattern in (("missing", r"Missing key\(s\) in state_dict: (.*?)\.\s*(?:Unexpected|size|$)"),
                           ("unexpected", r"Unexpected key\(s\) in state_dict: (.*?)\.\s*(?:size|$)")):
        m = re.search(pattern, text, re.S)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(1))
            parts.append(f"{len(keys)} {label} (e.g. {keys[0] if keys else '?'})")
    shapes = re.findall(r"size mismatch for ([^:]+): copying a param with shape (\S+) from checkpoint, "
                        r"the shape in current model is (\S+)\.", text)
    if shapes:
        k, a, b = shapes[0]
        parts.append(f"{len(shapes)} of another shape (e.g. {k}: {a} vs {b})")
    detail = "; ".join(parts) or text.strip().splitlines()[0]
    return CheckpointError(f"{directory / LM_FILE}: weights do not match its xp.cfg: {detail}")


def load_models(directory: Path, device: str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(LM, compression model, LM config) through audiocraft's loaders, with one-line errors."""
    ac = toolkit()
    from omegaconf import OmegaConf

    lm_pkg = _read(ac.loaders.load_lm_model_ckpt, directory, LM_FILE)
    comp_pkg = _read(ac.loaders.load_compression_model_ckpt, directory, COMPRESSION_FILE)
    if "xp.cfg" not in lm_pkg or "best_state" not in lm_pkg:
        raise CheckpointError(f"{directory / LM_FILE}: no 'xp.cfg' / 'best_state' (not an exported audiocraft LM)")
    cfg = OmegaConf.create(lm_pkg["xp.cfg"])
    missing = pretrained_files_missing(cfg, comp_pkg)
    if missing:
        raise CheckpointError("the model needs Hugging Face files that are not in the local cache: " + ", ".join(missing))
    try:
        with quiet():
            compression = ac.loaders.load_compression_model(str(directory), device=device)
            if cfg.get("lm_model") == "transformer_lm_magnet":
                lm = ac.loaders.load_lm_model_magnet(str(directory), compression_model_frame_rate=int(compression.frame_rate),
                                                     device=device)
                if not str(device).startswith("cuda"):  # the loader picks xformers, whose kernels need CUDA
                    ac.set_efficient_attention_backend("torch")
            else:
                lm = ac.loaders.load_lm_model(str(directory), device=device)
    except RuntimeError as exc:
        if "state_dict" in str(exc):
            raise _state_mismatch(directory, exc) from None
        raise CheckpointError(f"{directory}: audiocraft cannot build this model ({str(exc).splitlines()[0]})") from None
    except (KeyError, AssertionError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{directory}: audiocraft cannot build this model ({type(exc).__name__}: {exc})") from None
    return lm, compression, lm.cfg


def fingerprint(directory: Path, lm: torch.nn.Module, compression: torch.nn.Module) -> str:
    """sha256 over both checkpoint files plus weights that live outside them: a pretrained EnCodec
    (``{"pretrained": name}`` stores no weights) and T5 encoders, which load from the Hugging Face cache."""
    h = hashlib.sha256()
    for name in (LM_FILE, COMPRESSION_FILE):
        with open(directory / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    external: list[tuple[str, torch.nn.Module]] = [("compression", compression)]
    for key, cond in sorted(lm.condition_provider.conditioners.items()):
        for attr, value in sorted(vars(cond).items()):
            if isinstance(value, torch.nn.Module) and attr not in cond._modules:
                external.append((f"{key}.{attr}", value))
    for key, module in external:
        h.update(key.encode())
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- the adapter -----------------------------------------------------------------------------------
class AudiocraftLMAdapter:
    """A loaded MusicGen or MAGNeT LM with its EnCodec, seen through :class:`tda_plugin.adapter.ModelAdapter`."""

    name = NAME
    #: the LM has a null branch (classifier-free guidance): ``Conditioning.unconditional`` selects it
    supports_unconditional = True

    def __init__(self, lm: torch.nn.Module, compression: torch.nn.Module, cfg: Any, fingerprint: str,
                 device: str = "cpu") -> None:
        self._ac = toolkit()
        self.lm = lm.to(device).eval().requires_grad_(False)
        self.compression = compression.to(device).eval().requires_grad_(False)
        self.cfg = cfg
        self.fingerprint = fingerprint
        self.family = "magnet" if isinstance(lm, self._ac.MagnetLMModel) else "musicgen"
        self.span_len = int(cfg.get("masking", {}).get("span_len", 1)) if self.family == "magnet" else 1
        self.sample_rate = int(compression.sample_rate)
        self.channels = int(compression.channels)
        self.hop = int(round(self.sample_rate / compression.frame_rate))

    @classmethod
    def load(cls, checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> "AudiocraftLMAdapter":
        """``model_config`` is not used: audiocraft checkpoints carry their config (``xp.cfg``)."""
        directory = checkpoint_dir(checkpoint)
        lm, compression, cfg = load_models(directory, device)
        return cls(lm, compression, cfg, fingerprint(directory, lm, compression), device)

    # -- ModelAdapter -------------------------------------------------------------------------
    @property
    def module(self) -> torch.nn.Module:
        return self.lm

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def draw_free(self) -> bool:
        """MusicGen's loss is the teacher-forced CE, the same under every draw; MAGNeT's masks are drawn."""
        return self.family == "musicgen"

    def valid_segment_samples(self, samples: int) -> int:
        return max(self.hop, samples - samples % self.hop)

    def default_segment_samples(self) -> int:
        """The LM's training segment (``dataset.segment_duration``; MAGNeT's attention masks assume it)."""
        return self.valid_segment_samples(int(round(float(self.cfg.dataset.segment_duration) * self.sample_rate)))

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """EnCodec codes [B, K, T] (int64); the RVQ encoder is deterministic."""
        codes, scale = self.compression.encode(audio.to(self.device, torch.float32))
        if scale is not None:
            raise CheckpointError("a renormalising compression model is not supported by audiocraft's LMs either")
        return codes.long()

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.compression.decode(encoded.to(self.device).long(), None).float()

    @torch.no_grad()
    def continuous(self, encoded: torch.Tensor) -> torch.Tensor:
        """The codes' continuous EnCodec embeddings [B, D, T] (sum of the RVQ codewords), for statistics."""
        return self.compression.quantizer.decode(encoded.to(self.device).long()).float()

    def frame_mask(self, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
        b, s = sample_mask.shape
        ratio = max(1, s // frames)
        return sample_mask[:, : frames * ratio].reshape(b, frames, ratio).any(dim=-1).to(self.device)

    def attributes(self, conditioning: list[Conditioning]) -> list[Any]:
        """audiocraft ConditioningAttributes: the prompt for every text conditioner; a melody (chroma)
        conditioner gets the null melody, as ``MusicGen.generate`` gives it without one. An example marked
        ``unconditional`` gets the LM's null branch: every attribute dropped by audiocraft's own
        ``dropout_condition``, as classifier-free guidance drops them in training and generation."""
        cond = self._ac.conditioners
        provider = self.lm.condition_provider
        out = []
        for c in conditioning:
            attr = cond.ConditioningAttributes(text={k: c.prompt for k in provider.text_conditions})
            for k in provider.wav_conditions:
                attr.wav[k] = cond.WavCondition(torch.zeros((1, 1, 1), device=self.device), torch.tensor([0], device=self.device),
                                                sample_rate=[self.sample_rate], path=[None])
            if c.unconditional:
                for kind in ("wav", "text"):
                    for name in list(getattr(attr, kind)):
                        cond.dropout_condition(attr, kind, name)
            out.append(attr)
        return out

    def condition_tensors(self, attributes: list[Any]) -> list[ConditionTensors]:
        """Each sample's condition tensors, computed alone (a batch of one).

        The loss of one segment is defined as its loss alone in a batch (docs/method.md, section 3):
        audiocraft's T5 and whitespace tokenizers pad a batch to its longest prompt and the LM attends
        to the padding, so conditioning a batch at once would tie a segment's loss to its batch mates.
        """
        provider = self.lm.condition_provider
        with quiet():
            return [provider(provider.tokenize([a])) for a in attributes]

    def condition(self, conditioning: list[Conditioning]) -> list[ConditionTensors]:
        """Precomputed condition tensors: passing them keeps the LM from applying condition dropout."""
        with torch.no_grad():
            return self.condition_tensors(self.attributes(conditioning))

    def loss(self, encoded: torch.Tensor, cond: list[ConditionTensors], draws: Draws,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """MusicGen: the deterministic CE, the same for every draw; MAGNeT: the masked CE per draw.
        Samples are batched only with samples whose conditioning has the same shape (no padding)."""
        codes = encoded.to(self.device).long()

        def group_loss(idx: list[int], c: ConditionTensors) -> torch.Tensor:
            keep = None if mask is None else mask[idx]
            if self.family == "magnet":
                sub = Draws(draws.seed, tuple(draws.streams[i] for i in idx), draws.quantiles)
                return magnet_loss(self.lm, codes[idx], c, sub, self.span_len, keep)
            return musicgen_loss(self.lm, codes[idx], c, keep)[:, None].expand(-1, draws.count)

        return by_group(cond, group_loss)

    @torch.no_grad()
    def features(self, encoded: torch.Tensor, cond: list[ConditionTensors], draws: Draws) -> torch.Tensor:
        """Mean and std over steps of the transformer's output on the clean codes. One forward, no draws:
        MusicGen's loss has none, and for MAGNeT an unmasked pass describes the segment better than masked ones."""
        codes = encoded.to(self.device).long()

        def group_features(idx: list[int], c: ConditionTensors) -> torch.Tensor:
            captured: list[torch.Tensor] = []
            handle = self.lm.transformer.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                self.lm.compute_predictions(codes[idx], [], c)
            finally:
                handle.remove()
            h = captured[-1].float()
            return torch.cat([h.mean(dim=1), h.std(dim=1)], dim=-1)

        return by_group(cond, group_features)

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.lm.named_parameters() if n.startswith("transformer.layers.")]
        groups = {
            "blocks": names,
            "self_attn": [n for n in names if ".self_attn." in n],
            "cross_attn": [n for n in names if ".cross_attention." in n],
        }
        return {k: v for k, v in groups.items() if v}

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Train mode with gradients on the LM (conditioners included), EnCodec frozen; restores after."""
        self.lm.train().requires_grad_(True)
        try:
            yield
        finally:
            self.lm.eval().requires_grad_(False)


def by_group(cond: list[ConditionTensors], fn: Callable[[list[int], ConditionTensors], torch.Tensor]) -> torch.Tensor:
    """``fn`` on each group of samples with same-shaped conditioning, the rows put back in sample order."""
    parts, order = [], []
    for idx, batched in condition_groups(cond):
        parts.append(fn(idx, batched))
        order += idx
    out = torch.cat(parts)
    return out if order == sorted(order) else out[torch.tensor(order).argsort().to(out.device)]


def load(checkpoint: Path, *, model_config: Path | None = None, device: str = "cpu") -> Any:
    """An LM checkpoint directory (``state_dict.bin``) or a MultiBandDiffusion one (``*.th``), by what it holds."""
    path = Path(checkpoint)
    directory = path.parent if path.is_file() else path
    if not (directory / LM_FILE).is_file() and any(directory.glob("*.th")):
        return AudiocraftMBDAdapter.load(directory, device)
    return AudiocraftLMAdapter.load(checkpoint, model_config=model_config, device=device)


@hookimpl
def tda_adapters() -> list[AdapterSpec]:
    return [AdapterSpec(NAME, "audiocraft MusicGen / MAGNeT token LMs, MultiBandDiffusion decoders", load, REQUIREMENT)]
