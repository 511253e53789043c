"""Synthetic music catalogue with credits, for the demo and the tests.

Attribution needs a training set whose "artists" are unmistakably different, so that
an attribution method has a ground truth to recover. Each :class:`Style` fixes key,
scale, tempo, timbre, rhythm and register; the tracks of one style differ only in
their melody (a seeded random walk on the style's scale) and dynamics. Everything is
plain numpy additive synthesis, so the default catalogue renders in well under a second.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

__all__ = ["STYLES", "Style", "render_track", "synthesise_catalogue"]

LICENSE = "CC-BY-4.0"
PEAK = 0.8
PERCUSSION_STEP_BEATS = 0.25  # percussion patterns are written in sixteenth notes

NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
LYDIAN = (0, 2, 4, 6, 7, 9, 11)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)
MAJOR_PENTATONIC = (0, 2, 4, 7, 9)
WHOLE_TONE = (0, 2, 4, 6, 8, 10)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
BLUES = (0, 3, 5, 6, 7, 10)
MINOR_PENTATONIC = (0, 3, 5, 7, 10)

Partials = tuple[tuple[float, float], ...]


def _sawtooth(n: int, rolloff: float = 1.0) -> Partials:
    """All harmonics at 1/k**rolloff: bright, buzzy."""
    return tuple((float(k), k**-rolloff) for k in range(1, n + 1))


def _square(n: int) -> Partials:
    """Odd harmonics at 1/k: hollow, reedy."""
    return tuple((float(k), 1.0 / k) for k in range(1, n + 1, 2))


def _triangle(n: int) -> Partials:
    """Odd harmonics at 1/k**2: soft, flute-like."""
    return tuple((float(k), 1.0 / k**2) for k in range(1, n + 1, 2))


@dataclass(frozen=True)
class Style:
    """One fictional artist's sound: everything a track of theirs has in common."""

    name: str
    artist: str
    prompt: str
    key: int  # pitch class of the tonic, 0 = C
    octave: int  # octave of the tonic (MIDI convention, A4 = 440 Hz)
    scale: tuple[int, ...]  # semitones above the tonic
    bpm: float
    partials: Partials  # (frequency ratio, amplitude); need not be harmonic
    adsr: tuple[float, float, float, float]  # attack s, decay time constant s, sustain level, release s
    rhythm: tuple[float, ...]  # note durations in beats, cycled
    gate: float = 1.0  # fraction of a note's duration held before release
    chord: tuple[int, ...] = (0,)  # scale-degree offsets sounded from each melody step
    arpeggio: bool = False  # play the chord tones one after another instead of together
    walk_range: int = 7  # the melody wanders over scale degrees 0..walk_range
    max_step: int = 2  # largest melodic leap, in scale degrees
    vibrato_hz: float = 0.0
    vibrato_semitones: float = 0.0
    drone: bool = False  # a sustained tonic an octave below the melody
    percussion: tuple[float, ...] = ()  # noise-burst amplitude per sixteenth step, cycled


STYLES: tuple[Style, ...] = (
    Style(
        name="aurora",
        artist="Aurora Vale",
        prompt="bright plucked sawtooth arpeggios in A minor at 140 bpm, high register",
        key=9, octave=4, scale=NATURAL_MINOR, bpm=140,
        partials=_sawtooth(12),
        adsr=(0.003, 0.12, 0.0, 0.05),
        rhythm=(0.25,), chord=(0, 2, 4, 7), arpeggio=True, walk_range=4,
    ),
    Style(
        name="basalt",
        artist="Basalt Rowe",
        prompt="deep slow bass pulses in F-sharp phrygian at 66 bpm",
        key=6, octave=1, scale=PHRYGIAN, bpm=66,
        partials=((1.0, 1.0), (2.0, 0.45), (3.0, 0.2)),
        adsr=(0.01, 0.35, 0.4, 0.25),
        rhythm=(1.0, 0.5, 0.5), gate=0.85, walk_range=6,
    ),
    Style(
        name="cirrus",
        artist="Cirrus Hale",
        prompt="warm sustained pad chords in D-flat lydian at 72 bpm",
        key=1, octave=4, scale=LYDIAN, bpm=72,
        partials=_sawtooth(8, rolloff=1.5) + ((1.004, 0.6), (2.006, 0.2)),  # detuned copies: chorus shimmer
        adsr=(0.15, 0.5, 0.8, 0.6),
        rhythm=(2.0,), chord=(0, 2, 4), walk_range=3,
    ),
    Style(
        name="dynamo",
        artist="Dynamo Kray",
        prompt="fast staccato square-wave riffs in B dorian at 176 bpm",
        key=11, octave=3, scale=DORIAN, bpm=176,
        partials=_square(15),
        adsr=(0.002, 0.04, 0.6, 0.02),
        rhythm=(0.5, 0.25, 0.25), gate=0.45, walk_range=9, max_step=3,
    ),
    Style(
        name="ember",
        artist="Ember Okafor",
        prompt="syncopated noise-percussion groove over a muted F mixolydian bass line at 120 bpm",
        key=5, octave=2, scale=MIXOLYDIAN, bpm=120,
        partials=_triangle(5),
        adsr=(0.005, 0.1, 0.3, 0.05),
        rhythm=(0.75, 0.75, 0.5), gate=0.7, walk_range=5,
        percussion=(1.0, 0.0, 0.35, 0.0, 0.8, 0.0, 0.35, 0.5, 1.0, 0.3, 0.35, 0.0, 0.8, 0.0, 0.6, 0.35),
    ),
    Style(
        name="glimmer",
        artist="Glimmer Tanaka",
        prompt="shimmering pentatonic bell tones in G major at 96 bpm",
        key=7, octave=5, scale=MAJOR_PENTATONIC, bpm=96,
        partials=((1.0, 1.0), (2.76, 0.5), (5.4, 0.25), (8.93, 0.12)),  # inharmonic, like a struck bar
        adsr=(0.002, 0.5, 0.0, 0.3),
        rhythm=(1.0, 0.5, 0.5, 2.0), walk_range=4,
    ),
    Style(
        name="haze",
        artist="Haze Marlowe",
        prompt="dreamy whole-tone triangle-wave triplets in B-flat at 108 bpm",
        key=10, octave=4, scale=WHOLE_TONE, bpm=108,
        partials=_triangle(9),
        adsr=(0.03, 0.15, 0.6, 0.15),
        rhythm=(1 / 3, 1 / 3, 1 / 3, 1.0), gate=0.9, walk_range=5,
        vibrato_hz=4.0, vibrato_semitones=0.1,
    ),
    Style(
        name="monolith",
        artist="Monolith Sund",
        prompt="droning reed with slow vibrato melody in D harmonic minor at 50 bpm",
        key=2, octave=3, scale=HARMONIC_MINOR, bpm=50,
        partials=((1.0, 1.0), (3.0, 0.55), (5.0, 0.35), (7.0, 0.2), (9.0, 0.1)),
        adsr=(0.2, 0.4, 0.85, 0.4),
        rhythm=(2.0, 1.0, 1.0), walk_range=7,
        vibrato_hz=5.5, vibrato_semitones=0.4, drone=True,
    ),
    Style(
        name="saffron",
        artist="Saffron Quill",
        prompt="swinging organ blues licks in E-flat at 132 bpm",
        key=3, octave=4, scale=BLUES, bpm=132,
        partials=((1.0, 1.0), (2.0, 0.8), (3.0, 0.6), (4.0, 0.5), (6.0, 0.35), (8.0, 0.3)),  # drawbar organ
        adsr=(0.005, 0.2, 0.85, 0.04),
        rhythm=(2 / 3, 1 / 3), gate=0.9, walk_range=8,
    ),
    Style(
        name="riot",
        artist="Riot Calloway",
        prompt="chugging sawtooth power chords in C-sharp minor pentatonic at 150 bpm",
        key=1, octave=2, scale=MINOR_PENTATONIC, bpm=150,
        partials=_sawtooth(24, rolloff=0.8),
        adsr=(0.004, 0.25, 0.5, 0.03),
        rhythm=(0.5, 0.5, 0.25, 0.25, 0.5), chord=(0, 3), gate=0.6, walk_range=4, max_step=1,
    ),
)


def _midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _degree_to_midi(style: Style, degree: int) -> int:
    octaves, step = divmod(degree, len(style.scale))
    return 12 * (style.octave + 1) + style.key + 12 * octaves + style.scale[step]


def _envelope(style: Style, n_hold: int, n_release: int, sample_rate: int) -> np.ndarray:
    """Linear attack, exponential decay towards sustain, linear release from wherever the hold ended."""
    attack, decay, sustain, _ = style.adsr
    t = np.arange(n_hold) / sample_rate
    hold = np.where(t < attack, t / attack, sustain + (1.0 - sustain) * np.exp(-(t - attack) / decay))
    release = hold[-1] * np.linspace(1.0, 0.0, n_release, endpoint=False)
    return np.concatenate([hold, release])


def _tone(style: Style, freq: float, start: int, length: int, sample_rate: int) -> np.ndarray:
    """Sum the style's partials at ``freq``; vibrato uses the track's clock so chord tones wobble as one."""
    t = (start + np.arange(length)) / sample_rate
    if style.vibrato_semitones:
        inst = freq * 2.0 ** (style.vibrato_semitones / 12.0 * np.sin(2.0 * np.pi * style.vibrato_hz * t))
        # Trapezoidal integral from the note's start, so the phase does not depend on the sample rate.
        steps = (inst[1:] + inst[:-1]) / 2.0
        phase = 2.0 * np.pi * np.concatenate([[0.0], np.cumsum(steps)]) / sample_rate
    else:
        phase = 2.0 * np.pi * freq * t
    top = freq * 2.0 ** (style.vibrato_semitones / 12.0)  # highest instantaneous fundamental
    out = np.zeros(length)
    for ratio, amp in style.partials:
        if ratio * top < sample_rate / 2:  # a partial above Nyquist would alias back down
            out += amp * np.sin(ratio * phase)
    return out


def _melody(style: Style, rng: np.random.Generator, n_steps: int) -> list[int]:
    """A random walk on scale degrees from the tonic, reflected at the edges of the style's range."""
    degree = 0
    walk = [degree]
    for _ in range(n_steps - 1):
        degree += int(rng.integers(-style.max_step, style.max_step + 1))
        if degree < 0:
            degree = -degree
        elif degree > style.walk_range:
            degree = 2 * style.walk_range - degree
        walk.append(degree)
    return walk


class _Note(NamedTuple):
    onset: float  # seconds
    duration: float  # seconds, before the gate and release are applied
    velocity: float  # loudness jitter, so even identical melodies are never identical tracks
    pitches: tuple[int, ...]  # MIDI notes sounded together


def _notes(style: Style, rng: np.random.Generator, seconds: float) -> list[_Note]:
    """Every note that starts before ``seconds``: the melody walk laid out on the style's rhythm."""
    beat = 60.0 / style.bpm
    notes: list[_Note] = []
    onset, i = 0.0, 0
    max_steps = int(seconds / (beat * min(style.rhythm))) + 2
    for degree in _melody(style, rng, max_steps):
        chord = tuple(degree + c for c in style.chord)
        for group in ((d,) for d in chord) if style.arpeggio else (chord,):
            if onset >= seconds:
                return notes
            duration = style.rhythm[i % len(style.rhythm)] * beat
            velocity = float(rng.uniform(0.75, 1.0))
            notes.append(_Note(onset, duration, velocity, tuple(_degree_to_midi(style, d) for d in group)))
            onset += duration
            i += 1
    return notes


def _percussion(style: Style, rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """High-passed noise bursts on the sixteenth grid, accented by the style's pattern."""
    out = np.zeros(n)
    step = 60.0 / style.bpm * PERCUSSION_STEP_BEATS
    burst = int(0.08 * sample_rate)
    decay = np.exp(-np.arange(burst) / (0.02 * sample_rate))
    for k in range(int(np.ceil(n / sample_rate / step))):
        amp = style.percussion[k % len(style.percussion)]
        start = int(round(k * step * sample_rate))
        if amp == 0.0 or start >= n:
            continue
        noise = np.diff(rng.standard_normal(burst + 1)) * decay * amp
        stop = min(n, start + burst)
        out[start:stop] += noise[: stop - start]
    return out


def render_track(style: Style, track_index: int, seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Render one track of ``style``: float32 mono in [-1, 1] with peak 0.8, shape [seconds * sample_rate].

    The random stream is keyed on (seed, style name, track_index), so a track is reproducible
    on its own, whatever else is rendered.
    """
    if seconds <= 0 or sample_rate <= 0:
        raise ValueError("seconds and sample_rate must be positive")
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng([seed, zlib.crc32(style.name.encode()), track_index])
    audio = np.zeros(n)
    release = int(style.adsr[3] * sample_rate)
    for note in _notes(style, rng, seconds):
        start = int(round(note.onset * sample_rate))
        n_hold = max(1, int(round(note.duration * style.gate * sample_rate)))
        length = min(n_hold + release, n - start)
        if length <= 0:  # rounding can put the last onset on the final sample
            continue
        env = note.velocity / len(note.pitches) * _envelope(style, n_hold, release, sample_rate)[:length]
        for midi in note.pitches:
            audio[start : start + length] += env * _tone(style, _midi_to_hz(midi), start, length, sample_rate)
    if style.drone:
        drone = _tone(style, _midi_to_hz(_degree_to_midi(style, 0) - 12), 0, n, sample_rate)
        audio += 0.5 * drone * np.minimum(1.0, np.arange(n) / (0.1 * sample_rate))  # fade in to avoid a click
    if style.percussion:
        audio += 1.5 * _percussion(style, rng, n, sample_rate)
    peak = np.max(np.abs(audio))
    if peak > 0:
        audio *= PEAK / peak
    return audio.astype(np.float32)


def synthesise_catalogue(
    out_dir: Path,
    *,
    n_artists: int = 8,
    tracks_per_artist: int = 3,
    seconds: float = 8.0,
    sample_rate: int = 8000,
    seed: int = 0,
) -> Path:
    """Write ``audio/<style>_<k>.wav`` (k from 0) and a ``tracks.csv`` of credits; return the CSV's path.

    The CSV (path, title, artist, license, caption) is the credits table the demo indexes;
    paths are relative to ``out_dir`` so the catalogue can be moved.
    """
    if not 1 <= n_artists <= len(STYLES):
        raise ValueError(f"n_artists must be between 1 and {len(STYLES)}, got {n_artists}")
    if tracks_per_artist < 1:
        raise ValueError(f"tracks_per_artist must be at least 1, got {tracks_per_artist}")
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for style in STYLES[:n_artists]:
        for k in range(tracks_per_artist):
            rel = Path("audio") / f"{style.name}_{k}.wav"
            audio = render_track(style, k, seconds, sample_rate, seed)
            sf.write(out_dir / rel, audio, sample_rate, subtype="PCM_16")
            rows.append({
                "path": rel.as_posix(),
                "title": f"{style.artist} – Study No. {k + 1}",
                "artist": style.artist,
                "license": LICENSE,
                "caption": style.prompt,
            })
    csv_path = out_dir / "tracks.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "title", "artist", "license", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path
