"""The index build's near-copy stage: the catalogue's fingerprints, shard by shard, then their FAISS index.

Per shard of the index (the builder's unit of resumption), ``shards/copies-NNNNN.safetensors`` holds the
peaks (:mod:`.fingerprint`) of the shard's segments, for verification, and the search vectors and ids of the
triplets anchored in them; it is written atomically, so "the file exists with this fingerprint version" is
the resumption marker, and a file of another version is recomputed. :func:`finalize` streams every shard's
triplets into ``copies.faiss``: an inverted file with one list per pair of frequency differences
(:func:`fingerprint.centroids`), so a lookup compares a query triplet only with triplets of its own
intervals, by their gap ratio. A triplet's id packs its segment, its anchor's frame (from the segment's
start) and bin, and its long gap (:func:`triplet_id`), so a match says where it is without another table.
The stage reads the audio itself, not the model's latents, so it also adds fingerprints to an index built
before they existed: rerunning the same ``tda index build`` computes only this stage and the finalize.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors import safe_open

from .. import audio as audio_io
from .. import distributed
from ..atomic import write_tensors
from ..errors import TdaError
from ..index import vectors
from ..index.catalog_db import CatalogDB, SegmentRow, TrackRow
from ..progress import task
from . import fingerprint as fp

#: the FAISS index of every catalogue triplet
VECTORS = "copies.faiss"
#: audio analysed beyond a shard's part of a track on each side, so that the transform's edges and the
#: block-wise peak choice see what they would see in the whole track
MARGIN_S = 1.0
#: bits of a triplet id, low to high: long gap, anchor bin, anchor frame within the segment; the segment above them
GAP_BITS, BIN_BITS, FRAME_BITS = 6, 7, 16


def shard_file(shard: int) -> str:
    return f"shards/copies-{shard:05d}.safetensors"


def triplet_id(segment: np.ndarray, frame: np.ndarray, bin_: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Pack (segment id, anchor frame from the segment's start, anchor bin, long gap) into one int64 per triplet."""
    return (((segment.astype(np.int64) << FRAME_BITS | frame) << BIN_BITS | bin_) << GAP_BITS) | gap


def unpack(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(segment id, anchor frame from the segment's start, anchor bin, long gap) of packed triplet ids."""
    return (ids >> (GAP_BITS + BIN_BITS + FRAME_BITS), (ids >> (GAP_BITS + BIN_BITS)) & ((1 << FRAME_BITS) - 1),
            (ids >> GAP_BITS) & ((1 << BIN_BITS) - 1), ids & ((1 << GAP_BITS) - 1))


def version_of(path: Path) -> str | None:
    """The fingerprint version a copies file was written with (None: not a copies file)."""
    with safe_open(str(path), "pt") as fh:
        return (fh.metadata() or {}).get("features")


def done(out: Path, shard: int) -> bool:
    path = out / shard_file(shard)
    return path.is_file() and version_of(path) == fp.VERSION


def build_shards(out: Path, fingerprint: str, db: CatalogDB, tracks: dict[int, TrackRow]) -> None:
    """Write the copies file of every shard that lacks one (of this version); under torchrun, shards are dealt out."""
    todo = distributed.mine_pending(db.shards(), lambda k: done(out, k))
    with task("near-copy fingerprints", sum(len(db.segments(k)) for k in todo)) as advance:
        for k in todo:
            rows = db.segments(k)
            write_tensors(out / shard_file(k), shard_fingerprints(rows, tracks),
                          {"fingerprint": fingerprint, "features": fp.VERSION})
            advance(len(rows))


def _by_track(rows: list[SegmentRow]) -> Iterator[list[SegmentRow]]:
    run: list[SegmentRow] = []
    for s in rows:
        if run and s.track_id != run[-1].track_id:
            yield run
            run = []
        run.append(s)
    if run:
        yield run


def shard_fingerprints(rows: list[SegmentRow], tracks: dict[int, TrackRow]) -> dict[str, torch.Tensor]:
    """Peaks and triplets of one shard's segments, in segment order; peak frames count from each track's start."""
    seg_ids, frames, bins, vecs, ids = [], [], [], [], []
    for run in _by_track(rows):
        data, sr = audio_io.load(Path(tracks[run[0].track_id].resolved))
        y = fp.to_rate(data, sr)
        first = max(0, fp.frames(run[0].start_s - MARGIN_S))  # a whole number of hops: the track's own frame grid
        last = fp.frames(run[-1].end_s + MARGIN_S) + fp.SPAN
        f, b = fp.peaks(fp.spectrogram(y[first * fp.HOP:last * fp.HOP]))
        f = f + first
        found = fp.triplets(f, b)
        for s in run:
            lo, hi = fp.frames(s.start_s), fp.frames(s.end_s)
            if hi - lo >= 1 << FRAME_BITS:
                raise TdaError(f"segments of {hi - lo} fingerprint frames are longer than near-copy ids hold "
                               f"({1 << FRAME_BITS}); index with --segment-seconds under {(1 << FRAME_BITS) / fp.FPS:.0f}")
            inside = (f >= lo) & (f < hi)
            seg_ids.append(np.full(int(inside.sum()), s.segment_id))
            frames.append(f[inside])
            bins.append(b[inside])
            mine = found.subset((found.frame >= lo) & (found.frame < hi))
            vecs.append(mine.vectors())
            ids.append(triplet_id(np.full(len(mine), s.segment_id), mine.frame - lo, mine.bin, mine.gap))
    cat = np.concatenate
    return {"peak_segments": torch.from_numpy(cat(seg_ids).astype(np.int64)),
            "peak_frames": torch.from_numpy(cat(frames).astype(np.int32)),
            "peak_bins": torch.from_numpy(cat(bins).astype(np.int32)),
            "triplet_ids": torch.from_numpy(cat(ids).astype(np.int64)),
            "triplet_vectors": torch.from_numpy(cat(vecs).astype(np.float32))}


def finalize(out: Path, shards: list[int]) -> None:
    """``copies.faiss`` from every shard's triplets (a fresh index each time, like vectors.faiss)."""
    import faiss

    cells = fp.centroids()
    quantiser = faiss.IndexFlatL2(cells.shape[1])
    quantiser.add(cells)
    index = faiss.IndexIVFFlat(quantiser, cells.shape[1], len(cells))  # trained: one fixed list per cell
    for k in shards:
        with safe_open(str(out / shard_file(k)), "pt") as fh:
            index.add_with_ids(fh.get_tensor("triplet_vectors").numpy(), fh.get_tensor("triplet_ids").numpy())
    vectors.save(index, out / VECTORS)
