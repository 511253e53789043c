"""audiocraft's MultiBandDiffusion decoder: per-band ``DiffusionUnet`` + ``NoiseSchedule``, conditioned
on EnCodec embeddings of the audio itself.

A checkpoint is a directory with the MBD package (one ``*.th`` file as ``loaders.load_diffusion_models``
reads it: ``{"sample_rate", "n_bands", i: {"cfg", "model_state", "processor_state"}}``) and the EnCodec
it decodes (``compression_state_dict.bin``). The training representation is the waveform [B, C, S];
each band's model is trained by its own ``DiffusionSolver`` on that band (``DataProcess``), conditioned
on ``codec.decode_latent(codec.encode(wav))``. The per-sample loss is the mean over bands of each
band's solver loss (adapters/audiocraft_losses.py ``diffusion_loss``).
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Iterator

import torch

from tda_plugin.adapter import Conditioning
from tda_plugin.errors import CheckpointError
from tda_plugin.randomness import Draws

from .audiocraft_losses import diffusion_loss
from .audiocraft_toolkit import COMPRESSION_FILE, quiet, toolkit

NAME = "audiocraft"


def mbd_file(directory: Path) -> Path | None:
    """The directory's one MultiBandDiffusion package, if it holds one."""
    found = sorted(Path(directory).glob("*.th"))
    if len(found) > 1:
        raise CheckpointError(f"{directory}: more than one MultiBandDiffusion package ({', '.join(p.name for p in found)})")
    return found[0] if found else None


def load_mbd(directory: Path, device: str = "cpu") -> tuple[list[torch.nn.Module], list[Any], list[Any], torch.nn.Module]:
    """(band UNets, band processors, band configs, EnCodec) through audiocraft's loaders."""
    ac = toolkit()
    from collections import defaultdict

    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode

    path = mbd_file(directory)
    if path is None or not (directory / COMPRESSION_FILE).is_file():
        raise CheckpointError(f"{directory}: not a MultiBandDiffusion checkpoint directory (needs one *.th and {COMPRESSION_FILE})")
    # the .th package pickles OmegaConf configs, which torch>=2.6 only unpickles when allowed
    torch.serialization.add_safe_globals([DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, BooleanNode,
                                          FloatNode, IntegerNode, StringNode, Any, dict, defaultdict])
    try:
        with quiet():
            models, processors, cfgs = ac.loaders.load_diffusion_models(str(directory), filename=path.name, device=device)
            codec = ac.loaders.load_compression_model(str(directory), device=device)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: audiocraft cannot load this MultiBandDiffusion package ({first})") from None
    for i, proc in enumerate(processors):
        counts = getattr(proc, "counts", None)
        if counts is not None and float(counts) < proc.num_samples:
            raise CheckpointError(f"{path}: band {i}'s processor has not finished fitting its statistics "
                                  f"({int(counts)} of {proc.num_samples} samples); scoring would change it")
    return models, processors, cfgs, codec


class AudiocraftMBDAdapter:
    """A loaded MultiBandDiffusion, seen through :class:`tda_plugin.adapter.ModelAdapter`."""

    name = NAME
    family = "mbd"

    def __init__(self, unets: list[torch.nn.Module], processors: list[Any], cfgs: list[Any], codec: torch.nn.Module,
                 fingerprint: str, device: str = "cpu") -> None:
        self._ac = toolkit()
        from audiocraft.modules.diffusion_schedule import NoiseSchedule
        from audiocraft.solvers.diffusion import DataProcess

        self.model = torch.nn.ModuleList(unets).to(device).eval().requires_grad_(False)
        self.codec = codec.to(device).eval().requires_grad_(False)
        self.cfgs = cfgs
        self.fingerprint = fingerprint
        self.sample_rate = int(codec.sample_rate)
        self.channels = int(codec.channels)
        self.hop = int(round(self.sample_rate / codec.frame_rate))
        self.schedules = [NoiseSchedule(**cfg.schedule, sample_processor=proc.to(device), device=device)
                          for cfg, proc in zip(cfgs, processors)]
        self.bands = [DataProcess(initial_sr=self.sample_rate, target_sr=cfg.resampling.target_sr,
                                  use_resampling=cfg.resampling.use, cutoffs=cfg.filter.cutoffs, use_filter=cfg.filter.use,
                                  n_bands=cfg.filter.n_bands, idx_band=cfg.filter.idx_band, device=device) for cfg in cfgs]

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> "AudiocraftMBDAdapter":
        unets, processors, cfgs, codec = load_mbd(Path(directory), device)
        h = hashlib.sha256()
        for name in (mbd_file(directory).name, COMPRESSION_FILE):  # type: ignore[union-attr]
            with open(Path(directory) / name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        for key, tensor in sorted(codec.state_dict().items()):  # a pretrained EnCodec stores no weights in the file
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return cls(unets, processors, cfgs, codec, h.hexdigest(), device)

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def valid_segment_samples(self, samples: int) -> int:
        return max(self.hop, samples - samples % self.hop)

    def default_segment_samples(self) -> int:
        dataset = self.cfgs[0].get("dataset", {})
        return self.valid_segment_samples(int(round(float(dataset.get("segment_duration", 1.0)) * self.sample_rate)))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """The waveform itself: each band model is trained on (a band of) the audio."""
        return audio.to(self.device, torch.float32)

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded.to(self.device).float()

    def frame_mask(self, sample_mask: torch.Tensor, frames: int) -> torch.Tensor:
        return sample_mask[:, :frames].to(self.device)

    def condition(self, conditioning: list[Conditioning]) -> None:
        """MultiBandDiffusion is conditioned on the audio's EnCodec embeddings only (computed in :meth:`loss`)."""
        return None

    @torch.no_grad()
    def codec_condition(self, wav: torch.Tensor) -> torch.Tensor:
        """``DiffusionSolver.get_condition``: EnCodec embeddings of the audio's codes."""
        codes, scale = self.codec.encode(wav)
        if scale is not None:
            raise CheckpointError("scaled compression models are not supported by MultiBandDiffusion either")
        return self.codec.decode_latent(codes)

    def loss(self, encoded: torch.Tensor, cond: Any, draws: Draws, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over bands of each band's diffusion loss [B, D]. ``mask`` is not applied: the solver's loss is
        normalised by the noisy input's own error over the whole window, which a partial mask would skew."""
        wav = encoded.to(self.device, torch.float32)
        condition = self.codec_condition(wav)
        per_band = []
        for unet, schedule, band, cfg in zip(self.model, self.schedules, self.bands, self.cfgs):
            sample = band.process_data(wav.clone())
            per_band.append(diffusion_loss(unet, schedule, sample, condition, draws, norm_power=float(cfg.loss.norm_power),
                                           kind=str(cfg.loss.kind)))
        return torch.stack(per_band).mean(dim=0)

    @torch.no_grad()
    def features(self, encoded: torch.Tensor, cond: Any, draws: Draws) -> torch.Tensor:
        """Mean and std over time of the EnCodec embeddings the UNets are conditioned on."""
        emb = self.codec_condition(encoded.to(self.device, torch.float32)).float()
        return torch.cat([emb.mean(dim=-1), emb.std(dim=-1)], dim=-1)

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters()]
        groups = {"blocks": names, "self_attn": [n for n in names if ".transformer." in n and "self_attn" in n],
                  "cross_attn": [n for n in names if "cross_attention" in n or "cross_attn" in n]}
        return {k: v for k, v in groups.items() if v}

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        self.model.train().requires_grad_(True)
        try:
            yield
        finally:
            self.model.eval().requires_grad_(False)
