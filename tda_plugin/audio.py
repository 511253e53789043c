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

from .errors import AudioError

log = logging.getLogger(__name__)

#: frames quieter than this (dB below full scale, RMS) count as silence in the query loss
SILENCE_DB = -50.0


#: what tda decodes at all: a header outside these limits is damaged, or the file is no music clip
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_SECONDS = 3600.0
#: decoded samples (frames × channels) tda holds of one file: an hour of 48 kHz stereo, 1.4 GB as float32. Without
#: it an hour at a high rate and many channels (96 kHz, 6 channels: 8.3 GB) would run out of memory while decoding
MAX_SAMPLES = int(MAX_SECONDS) * 48_000 * 2
#: peak level (linear, full scale 1.0) above which audio is refused: the model never saw such levels, and
#: float audio this loud is almost always written at the wrong scale (e.g. int16 values as floats)
MAX_PEAK = 2.0
#: audio whose every channel varies less than this fraction of its mean (60 dB below it) is a constant (DC)
DC_RATIO = 1e-3
#: a mean this far from zero is reported (attributed as is)
DC_OFFSET_WARN = 0.1
#: peaks this far above full scale (dB) are reported: the least a warning can show (+0.1 dBFS). Less is a lossy
#: codec's overshoot of a clip mastered at full scale (a 6-channel Opus: +0.03 dB), not worth a warning
OVER_FULL_SCALE_DB = 0.05
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def probe(path: Path) -> AudioInfo:
    """Read the header only; raises :class:`AudioError` for missing, undecodable or implausible files."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file (`tda attribute` takes folders; this command takes files)")
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt data
        raise AudioError(f"{path}: cannot decode audio ({_reason(exc, path)})") from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: its header declares a sample rate of {info.samplerate} Hz, outside "
                         f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (a damaged header?)")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: its header declares {info.channels} channels (tda reads 1 to {MAX_CHANNELS})")
    if info.frames <= 0:
        raise AudioError(f"{path}: audio is empty")
    if info.frames / info.samplerate > MAX_SECONDS:
        raise AudioError(f"{path}: its header declares {info.frames / info.samplerate / 3600:.5g} h of audio, more than "
                         f"the {MAX_SECONDS / 3600:g} h tda attributes at once; cut it into shorter clips")
    if info.frames * info.channels > MAX_SAMPLES:
        raise AudioError(f"{path}: {info.frames / info.samplerate / 60:.0f} min of {info.channels}-channel "
                         f"{info.samplerate} Hz audio is {_gigabytes(info.frames * info.channels)} decoded, more than the "
                         f"{_gigabytes(MAX_SAMPLES)} tda decodes at once (an hour of 48 kHz stereo); cut it into "
                         "shorter clips, or mix it down to stereo or resample it first")
    return AudioInfo(info.samplerate, info.channels, info.frames)


def _gigabytes(samples: int) -> str:
    return f"{samples * 4 / 1e9:.1f} GB"


def _reason(exc: Exception, path: Path) -> str:
    """libsndfile's message on one line (it sometimes spans several). For a file it cannot make sense of, it
    says the file "does not exist or is not a regular file"; say what is true instead."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "does not exist or is not a regular file" in text and path.is_file():
        return f"not a format libsndfile recognises, or its header is damaged; {path.stat().st_size} bytes"
    return text


def load(path: Path) -> tuple[np.ndarray, int]:
    """Decode a file to float32 [channels, samples], refusing NaN/Inf samples.

    Read block by block, never trusting the header's length (a damaged header can declare hours of audio
    in a small file), and never more than :data:`MAX_SECONDS` or :data:`MAX_SAMPLES`. The blocks are copied
    into the result one by one, each released as it is copied, so decoding holds little more than the clip.
    """
    info = probe(path)
    limit = min(int(MAX_SECONDS * info.sample_rate), MAX_SAMPLES // info.channels)
    blocks, frames = [], 0
    try:
        with sf.SoundFile(str(path)) as fh:
            while True:  # explicit block sizes: libsndfile calls some formats (XI) unseekable, and those need them
                block = fh.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                blocks.append(block)
                frames += len(block)
                if frames > limit:
                    raise AudioError(f"{path}: longer than its header declares, and than the {MAX_SECONDS / 3600:g} h "
                                     f"(or {_gigabytes(MAX_SAMPLES)} decoded) tda attributes at once; cut it into "
                                     "shorter clips")
                if len(block) < BLOCK_FRAMES:
                    break
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({_reason(exc, Path(path))})") from None
    if frames == 0:
        raise AudioError(f"{path}: audio is empty")
    data = np.empty((blocks[0].shape[1], frames), dtype=np.float32)
    end = frames
    while blocks:  # from the last block back: each is released once copied
        block = blocks.pop()
        data[:, end - len(block):end] = block.T
        end -= len(block)
    check_finite(data, str(path))
    return data, info.sample_rate


def check_finite(audio: np.ndarray, name: str) -> None:
    """NaN or infinite samples: refused (they would turn every loss, and so every score, into NaN)."""
    bad = ~np.isfinite(audio)
    if bad.any():
        first = int(np.argmax(bad.any(axis=0))) if audio.ndim == 2 else int(np.argmax(bad))
        raise AudioError(f"{name}: {int(bad.sum())} sample(s) are NaN or infinite (the first at sample {first}); "
                         "the file is damaged or was written from a failed generation")


def check_levels(audio: np.ndarray, name: str) -> list[str]:
    """Refuse audio whose credits would be garbage; return warnings about audio attributed as is.

    ``audio`` is [channels, samples] (or [samples]). Refused: NaN/Inf, nothing but zeros, a constant (DC)
    signal, peaks above :data:`MAX_PEAK`. Reported: peaks above full scale, a large DC offset. Statistics are
    taken channel by channel in float64, so an hour-long clip needs one channel's float64 copy, not the clip's.
    """
    audio = audio[None] if audio.ndim == 1 else audio
    check_finite(audio, name)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        raise AudioError(f"{name}: the audio is silent (all samples are zero); nothing to attribute")
    mean = audio.mean(axis=1, dtype=np.float64)
    std = np.array([channel.std(dtype=np.float64) for channel in audio])
    if bool((std <= DC_RATIO * np.abs(mean)).all()):
        raise AudioError(f"{name}: the audio is a constant (DC) signal at {float(mean[0]):+.3g}, not sound; nothing to attribute")
    db = 20 * np.log10(peak)
    if peak > MAX_PEAK:
        raise AudioError(f"{name}: peaks at {peak:.3g} ({db:+.0f} dBFS), far above full scale (1.0); the model never saw "
                         f"such levels, so its credits would be meaningless. If it is audio at the wrong scale, divide it "
                         f"by {peak:.3g} and attribute that")
    warnings = []
    if db >= OVER_FULL_SCALE_DB:
        warnings.append(f"peaks at {db:+.1f} dBFS, above full scale; attributed as is")
    offset = float(np.abs(mean).max())
    if offset > DC_OFFSET_WARN:
        warnings.append(f"has a DC offset of {offset:.2f}; attributed as is")
    return warnings


def conform(audio: np.ndarray, sample_rate: int, target_rate: int, target_channels: int) -> tuple[np.ndarray, list[str]]:
    """Resample and down/up-mix to the model's format; returns the audio and what was changed."""
    changes: list[str] = []
    if audio.ndim == 1:
        audio = audio[None]
    if audio.shape[0] != target_channels:
        how = "averaged" if target_channels == 1 else "copied" if audio.shape[0] == 1 else "averaged and copied"
        changes.append(f"{audio.shape[0]} -> {target_channels} channels ({how})")
        mono = audio.mean(axis=0, keepdims=True)
        audio = np.repeat(mono, target_channels, axis=0) if target_channels > 1 else mono
    if sample_rate != target_rate:
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise AudioError(f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        changes.append(f"resampled {sample_rate} -> {target_rate} Hz")
        from scipy.signal import resample_poly  # scipy.signal takes seconds to import: only when resampling

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
