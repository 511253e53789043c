"""Key- and tempo-invariant fingerprints of audio: constant-Q spectral peaks, and invariant triplets of them.

Why peaks of a constant-Q transform (the landmarks of audio fingerprinting, made invariant as Panako does:
Six & Leman, ISMIR 2014). On a log-frequency axis a transposition by s semitones moves every peak by s bins,
and a change of speed by a factor r divides every time by r; a phase-vocoder pitch shift and a tape-speed
change are exactly these moves. Peaks are what survives noise, MP3 coding, a low-pass and another track
mixed in, and their places are specific to one recording, where chroma (the cover-song feature) is shared
by every passage of the same harmony: while this channel was designed, the best chroma alignment of 2-s
excerpts of real music that were *not* in the catalogue scored as high as a transposed copy's.

Computed identically for the catalogue (at index build) and for a query:

* :func:`peaks`: (frame, bin) of the strongest local maxima of the log-magnitude CQT, at most
  ``PEAKS_PER_SECOND`` per second, chosen block by block so that a short query and a long track pick alike;
* :func:`triplets`: each peak (the anchor) with two of its next later peaks. Its search vector
  (:meth:`Triplets.vectors`) holds the two frequency differences in bins (unchanged by a transposition) and the
  ratio of the two time gaps (unchanged by a change of speed); the anchor's frame and bin and the long gap ride
  along, so that each match says where, how transposed and how fast.

``VERSION`` names these settings: files written under another version are not used (they are rebuilt).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: analysis rate (Hz); everything is resampled to it, so fingerprints do not depend on the model's rate
RATE = 11025
#: CQT hop in samples (23 ms)
HOP = 256
FPS = RATE / HOP
#: lowest CQT bin (C2, 65.4 Hz) and 6 octaves of semitone bins: up to B7 (3951 Hz), below the 4 kHz of an 8 kHz model
FMIN_HZ = 65.406
BINS_PER_OCTAVE = 12
BINS = 72
#: a peak is the maximum of its neighbourhood of (bins, frames), at most FLOOR_DB below its block's loudest bin
NEIGHBOURHOOD = (3, 9)
FLOOR_DB = 50.0
PEAKS_PER_SECOND = 60
#: peaks are ranked within blocks of this many frames (about 1 s), counted from the start of the audio
BLOCK = 43
#: triplets: each anchor with every pair of its next ``FAN`` peaks at least ``MIN_GAP`` and at most ``SPAN`` frames
#: later and at most ``REACH`` bins away; a query takes more (``QUERY_FAN``), so that peaks another track added
#: between a copy's own do not hide the triplets the catalogue stored
FAN = 4
QUERY_FAN = 6
MIN_GAP = 2
SPAN = 32
REACH = 12
#: the gap ratio's weight in the search vector: two triplets match when their ratios differ by under 1/RATIO_SCALE
RATIO_SCALE = 20.0
VERSION = f"cqt-triplets-1:{RATE}/{HOP}/{BINS}/{NEIGHBOURHOOD}/{FLOOR_DB}/{PEAKS_PER_SECOND}/{BLOCK}/{FAN}/{MIN_GAP}/{SPAN}/{REACH}"


def frames(seconds: float) -> int:
    """The frame index of a time (seconds from the start of the analysed audio)."""
    return int(round(seconds * FPS))


def to_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at :data:`RATE` (channels averaged)."""
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    y = y.mean(axis=0) if y.ndim == 2 else y
    return librosa.resample(y, orig_sr=int(sample_rate), target_sr=RATE) if sample_rate != RATE else y


def spectrogram(y: np.ndarray) -> np.ndarray:
    """Log-magnitude CQT [BINS, frames] in dB (absolute: the same audio at any gain moves every value alike)."""
    import librosa

    x = np.abs(librosa.cqt(y, sr=RATE, hop_length=HOP, fmin=FMIN_HZ, n_bins=BINS, bins_per_octave=BINS_PER_OCTAVE))
    return 20.0 * np.log10(np.maximum(x, 1e-6)).astype(np.float32)


def peaks(db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) of the spectrogram's peaks in time order: local maxima of NEIGHBOURHOOD within FLOOR_DB of
    their block's loudest bin, the strongest PEAKS_PER_SECOND per second of each block."""
    from scipy.ndimage import maximum_filter

    local = maximum_filter(db, size=NEIGHBOURHOOD, mode="constant", cval=-np.inf)
    keep_f: list[np.ndarray] = []
    keep_b: list[np.ndarray] = []
    quota = max(1, int(round(PEAKS_PER_SECOND * BLOCK / FPS)))
    for start in range(0, db.shape[1], BLOCK):
        block = db[:, start:start + BLOCK]
        b, f = np.nonzero((block == local[:, start:start + BLOCK]) & (block > block.max() - FLOOR_DB))
        strongest = np.argsort(-block[b, f], kind="stable")[:quota]
        keep_f.append(f[strongest] + start)
        keep_b.append(b[strongest])
    f, b = np.concatenate(keep_f), np.concatenate(keep_b)
    order = np.lexsort((b, f))
    return f[order].astype(np.int64), b[order].astype(np.int64)


def analyse(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(peak frames, peak bins, frame count) of audio [channels, samples] or [samples]."""
    db = spectrogram(to_rate(audio, sample_rate))
    f, b = peaks(db)
    return f, b, db.shape[1]


@dataclass(frozen=True)
class Triplets:
    """Triplets of peaks, one row each: the two frequency differences (bins), the ratio of the time gaps (0-1],
    the anchor's frame and bin, and the long gap (frames)."""

    up1: np.ndarray
    up2: np.ndarray
    ratio: np.ndarray
    frame: np.ndarray
    bin: np.ndarray
    gap: np.ndarray

    def __len__(self) -> int:
        return len(self.ratio)

    def vectors(self) -> np.ndarray:
        """[n, 3] float32 search vectors: equal differences and ratios within 1/RATIO_SCALE lie within distance 1."""
        return np.ascontiguousarray(np.stack([self.up1, self.up2, RATIO_SCALE * self.ratio], axis=1), dtype=np.float32)

    def subset(self, keep: np.ndarray) -> "Triplets":
        return Triplets(self.up1[keep], self.up2[keep], self.ratio[keep], self.frame[keep], self.bin[keep], self.gap[keep])


def triplets(f: np.ndarray, b: np.ndarray, fan: int = FAN) -> Triplets:
    """The triplets of the peaks (``f``, ``b``, in time order): each anchor with every pair of its next ``fan``
    later peaks (see the module docstring)."""
    rows: list[tuple[float, ...]] = []
    ends = np.searchsorted(f, f + SPAN, side="right")
    for i in range(len(f)):
        near = np.arange(i + 1, ends[i])
        later = near[(f[near] >= f[i] + MIN_GAP) & (np.abs(b[near] - b[i]) <= REACH)][:fan]
        for x in range(len(later)):
            for y in range(x + 1, len(later)):
                j, k = later[x], later[y]
                rows.append((b[j] - b[i], b[k] - b[i], (f[j] - f[i]) / (f[k] - f[i]), f[i], b[i], f[k] - f[i]))
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    ints = a[:, [0, 1, 3, 4, 5]].astype(np.int64)
    return Triplets(ints[:, 0], ints[:, 1], a[:, 2], ints[:, 2], ints[:, 3], ints[:, 4])


def centroids() -> np.ndarray:
    """One search cell per pair of frequency differences (the FAISS index's lists: a triplet is only ever compared
    with triplets of its own differences)."""
    steps = np.arange(-REACH, REACH + 1)
    up1, up2 = np.meshgrid(steps, steps, indexing="ij")
    return np.stack([up1.ravel(), up2.ravel(), np.full(up1.size, RATIO_SCALE / 2)], axis=1).astype(np.float32)
