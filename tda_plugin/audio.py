"""Decode, conform (rate, channels), cut into segments, and find silence.

Decoding uses soundfile (WAV, FLAC, OGG/Vorbis, MP3 where libsndfile supports it); resampling uses
scipy's polyphase filter so the core needs no torchaudio.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from .errors import AudioError

log = logging.getLogger(__name__)

#: frames quieter than this (dB below full scale, RMS) count as silence in the query loss
SILENCE_DB = -50.0


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def probe(path: Path) -> AudioInfo:
    """Read the header only; raises :class:`AudioError` for missing or undecodable files."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt data
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: audio is empty")
    return AudioInfo(info.samplerate, info.channels, info.frames)


def load(path: Path) -> tuple[np.ndarray, int]:
    """Decode a file to float32 [channels, samples]."""
    probe(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty")
    return np.ascontiguousarray(data.T), int(sr)


def conform(audio: np.ndarray, sample_rate: int, target_rate: int, target_channels: int) -> tuple[np.ndarray, list[str]]:
    """Resample and down/up-mix to the model's format; returns the audio and what was changed."""
    changes: list[str] = []
    if audio.ndim == 1:
        audio = audio[None]
    if audio.shape[0] != target_channels:
        changes.append(f"{audio.shape[0]} -> {target_channels} channels")
        mono = audio.mean(axis=0, keepdims=True)
        audio = np.repeat(mono, target_channels, axis=0) if target_channels > 1 else mono
    if sample_rate != target_rate:
        changes.append(f"resampled {sample_rate} -> {target_rate} Hz")
        ratio = Fraction(target_rate, sample_rate).limit_denominator(1000)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32), changes


def segment_starts(total_samples: int, segment_samples: int) -> list[int]:
    """Start samples of the whole segments of a track: multiples of the segment length from 0."""
    return list(range(0, total_samples - segment_samples + 1, segment_samples))


def windows(audio: np.ndarray, segment_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a query into segment-length windows from its start; the last one is zero-padded.

    Returns windows [W, C, S] and a keep-mask [W, S] that is False over the padding.
    """
    channels, total = audio.shape
    count = max(1, -(-total // segment_samples))
    out = np.zeros((count, channels, segment_samples), dtype=np.float32)
    keep = np.zeros((count, segment_samples), dtype=bool)
    for w in range(count):
        piece = audio[:, w * segment_samples:(w + 1) * segment_samples]
        out[w, :, : piece.shape[1]] = piece
        keep[w, : piece.shape[1]] = True
    return out, keep


def silence_mask(audio: torch.Tensor, frame: int, threshold_db: float = SILENCE_DB) -> torch.Tensor:
    """Keep-mask [B, S] that is False over frames of ``frame`` samples whose RMS is below threshold."""
    b, _, s = audio.shape
    pad = (-s) % frame
    x = torch.nn.functional.pad(audio.float(), (0, pad))
    rms = x.pow(2).mean(dim=1).reshape(b, -1, frame).mean(dim=-1).sqrt()
    loud = 20 * torch.log10(rms.clamp_min(1e-10)) > threshold_db
    return loud.repeat_interleave(frame, dim=1)[:, :s]
