"""Build an index in resumable stages (DESIGN.md, "The index on disk").

Stages, each checking the one before it and skipping finished work:
1. ``catalog``  read tracks.csv, decode every file (bad ones are recorded and skipped), plan segments;
2. ``shards``   per shard: decode, encode, baseline losses under the fixed draws, embeddings;
                one atomic file per shard, so an interrupted build resumes at the first missing shard;
3. ``fisher``   diagonal Fisher over a seeded sample of segments;
4. ``sensitivity`` per shard: each segment's preconditioned gradient norm per parameter subset;
5. ``finalize`` baseline.safetensors, vectors.faiss, then index.json with ``complete: true``.
Every stage is deterministic, so a resumed build ends identical to an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from .. import audio as audio_io
from ..adapter import Conditioning, ModelAdapter
from ..atomic import write_json, write_tensors
from ..catalog import catalog_csv, read_catalog
from ..errors import AudioError, CatalogError, IndexMismatchError
from ..fisher import diagonal_fisher, sensitivities
from ..progress import task
from ..randomness import segment_stream
from ..registry import get_embedder_spec
from ..scoring import losses
from ..settings import IndexSettings
from . import vectors
from .catalog_db import CatalogDB, SegmentRow, TrackRow
from .store import INDEX_FILES, Index, IndexMeta, read_meta, sensitivity_name, shard_name

log = logging.getLogger(__name__)

ENCODE_BATCH = 16


@dataclass(frozen=True)
class BuildReport:
    index_dir: Path
    segments: int
    tracks: int
    failures: list[tuple[str, str]]
    resumed_shards: int


def _meta(adapter: ModelAdapter, checkpoint: Path, model_config: Path | None, corpus: Path,
          settings: IndexSettings) -> IndexMeta:
    seg = adapter.default_segment_samples() if settings.segment_seconds is None else \
        adapter.valid_segment_samples(int(round(settings.segment_seconds * adapter.sample_rate)))
    return IndexMeta(adapter=adapter.name, fingerprint=adapter.fingerprint, checkpoint=str(Path(checkpoint).resolve()),
                     model_config=str(Path(model_config).resolve()) if model_config else None,
                     sample_rate=adapter.sample_rate, channels=adapter.channels, segment_samples=seg,
                     settings=settings.to_dict(), corpus=str(Path(corpus).resolve()), corpus_hash=_corpus_hash(corpus))


def _corpus_hash(corpus: Path) -> str:
    path = catalog_csv(corpus)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _remove_index(out: Path) -> None:
    for name in INDEX_FILES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _start(out: Path, meta: IndexMeta, overwrite: bool) -> IndexMeta:
    """Resume a build with the same identity, refuse a different one unless ``overwrite``."""
    if (out / "index.json").is_file():
        old = read_meta(out)
        if old.identity() != meta.identity():
            if not overwrite:
                diff = [k for k in meta.identity() if meta.identity()[k] != old.identity()[k]]
                raise IndexMismatchError(f"{out} holds an index built with other {', '.join(diff)}; "
                                         "use another --out or pass --overwrite")
            _remove_index(out)
        else:
            return old
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "index.json", meta.to_dict())
    return meta


def _plan_catalog(db: CatalogDB, corpus: Path, meta: IndexMeta, shard_size: int) -> None:
    tracks = read_catalog(corpus)
    kept: list[tuple[Any, float]] = []
    segments: list[SegmentRow] = []
    failures: list[tuple[str, str]] = []
    seg_s = meta.segment_seconds
    with task("decoding catalogue", len(tracks)) as advance:
        for t in tracks:
            try:
                # a full decode, not just the header: a file that fails later would stop a shard
                data, rate = audio_io.load(t.resolved)
                duration = data.shape[1] / rate
                starts = audio_io.segment_starts(int(data.shape[1] * meta.sample_rate / rate), meta.segment_samples)
                if not starts:
                    raise AudioError(f"{t.path}: {duration:.2f} s is shorter than one {seg_s:.2f} s segment")
            except AudioError as exc:
                failures.append((t.path, str(exc)))
                advance(1)
                continue
            kept.append((t, duration))
            for k, start in enumerate(starts):
                sid = len(segments)
                segments.append(SegmentRow(sid, t.track_id, k, start / meta.sample_rate,
                                           (start + meta.segment_samples) / meta.sample_rate, sid // shard_size))
            advance(1)
    if not segments:
        raise CatalogError(f"{corpus}: no track could be decoded into a whole segment "
                           f"({len(failures)} failed, e.g. {failures[0][1] if failures else 'none'})")
    db.add_tracks_and_segments(kept, segments, failures)


def segment_conditioning(track: TrackRow, seg: SegmentRow) -> Conditioning:
    """What the model saw for a training segment: its caption and position in its track."""
    return Conditioning(prompt=track.caption, start_s=seg.start_s, total_s=track.duration_s)


def _encode_shard(adapter: ModelAdapter, meta: IndexMeta, rows: list[SegmentRow], tracks: dict[int, TrackRow]) -> torch.Tensor:
    cache: dict[int, np.ndarray] = {}
    pieces = []
    for s in rows:
        if s.track_id not in cache:
            cache.clear()
            data, sr = audio_io.load(Path(tracks[s.track_id].resolved))
            cache[s.track_id], _ = audio_io.conform(data, sr, meta.sample_rate, meta.channels)
        start = int(round(s.start_s * meta.sample_rate))
        pieces.append(cache[s.track_id][:, start:start + meta.segment_samples])
    batch = torch.from_numpy(np.stack(pieces))
    return torch.cat([adapter.encode(batch[i:i + ENCODE_BATCH]).cpu() for i in range(0, len(batch), ENCODE_BATCH)])


def _build_shard(adapter: ModelAdapter, meta: IndexMeta, rows: list[SegmentRow], tracks: dict[int, TrackRow],
                 settings: IndexSettings, batch_size: int) -> dict[str, torch.Tensor]:
    latents = _encode_shard(adapter, meta, rows, tracks)
    conds = [segment_conditioning(tracks[s.track_id], s) for s in rows]
    streams = [segment_stream(s.segment_id) for s in rows]
    base = losses(adapter, latents, conds, streams, seed=settings.seed, draws=settings.draws, batch_size=batch_size)
    embed = get_embedder_spec(settings.embedder).embed
    step = max(1, batch_size // 2)
    emb = torch.cat([embed(adapter, latents[i:i + step], adapter.condition(conds[i:i + step]), streams[i:i + step],
                           settings.seed) for i in range(0, len(rows), step)])
    return {"segment_ids": torch.tensor([s.segment_id for s in rows], dtype=torch.int64),
            "latents": latents, "baseline": base, "embeddings": emb.float()}


def fisher_sample(segment_ids: list[int], count: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(segment_ids), generator=gen)[:count]
    return sorted(segment_ids[i] for i in order.tolist())


def build_index(corpus: Path, out: Path, adapter: ModelAdapter, *, checkpoint: Path, model_config: Path | None = None,
                settings: IndexSettings = IndexSettings(), batch_size: int = 64, overwrite: bool = False) -> BuildReport:
    out = Path(out)
    meta = _start(out, _meta(adapter, checkpoint, model_config, corpus, settings), overwrite)
    settings = meta.index_settings
    get_embedder_spec(settings.embedder)  # fail before any work on an unknown name
    db = CatalogDB(out / "catalog.sqlite")
    try:
        if not db.is_done("catalog"):
            _plan_catalog(db, Path(corpus), meta, settings.shard_size)
        tracks = db.tracks()
        shards = db.shards()
        todo = [k for k in shards if not (out / shard_name(k)).is_file()]
        resumed = len(shards) - len(todo)
        all_rows = db.segments()
        with task("encoding + baseline", sum(len(db.segments(k)) for k in todo)) as advance:
            for k in todo:
                rows = db.segments(k)
                tensors = _build_shard(adapter, meta, rows, tracks, settings, batch_size)
                write_tensors(out / shard_name(k), tensors, {"fingerprint": meta.fingerprint})
                advance(len(rows))
        meta.encoded_shape = list(_shard_latent_shape(out, shards[0]))
        if not (out / "fisher.safetensors").is_file():
            _build_fisher(adapter, out, meta, all_rows, tracks, settings)
        _build_sensitivities(adapter, out, meta, db, tracks, settings)
        _finalize(out, meta)
        failures = db.failures()
        report = BuildReport(out, len(all_rows), len({s.track_id for s in all_rows}), failures, resumed)
    finally:
        db.close()
    from ..plugins import get_plugin_manager

    get_plugin_manager().hook.tda_index_built(index_dir=str(out), info=Index(out).info())
    return report


def _shard_latent_shape(out: Path, shard: int) -> tuple[int, ...]:
    from safetensors import safe_open

    with safe_open(str(out / shard_name(shard)), "pt") as fh:
        return tuple(fh.get_slice("latents").get_shape()[1:])


def _build_fisher(adapter: ModelAdapter, out: Path, meta: IndexMeta, rows: list[SegmentRow],
                  tracks: dict[int, TrackRow], settings: IndexSettings) -> None:
    ids = fisher_sample([s.segment_id for s in rows], settings.fisher_segments, settings.seed)
    by_id = {s.segment_id: s for s in rows}
    shards: dict[int, dict[str, torch.Tensor]] = {}
    latents = []
    for sid in ids:  # each shard is read once
        k = by_id[sid].shard
        if k not in shards:
            shards[k] = load_file(str(out / shard_name(k)))
        sh = shards[k]
        latents.append(sh["latents"][int((sh["segment_ids"] == sid).nonzero()[0, 0])])
    names = adapter.parameter_groups()["blocks"]
    conds = [segment_conditioning(tracks[by_id[i].track_id], by_id[i]) for i in ids]
    with task("fisher", len(ids)) as advance:
        fisher = diagonal_fisher(adapter, torch.stack(latents), conds, [segment_stream(i) for i in ids], names,
                                 seed=settings.seed, draws=settings.draws, advance=advance)
    write_tensors(out / "fisher.safetensors", fisher, {"fingerprint": meta.fingerprint, "segments": str(len(ids))})


def _build_sensitivities(adapter: ModelAdapter, out: Path, meta: IndexMeta, db: CatalogDB,
                         tracks: dict[int, TrackRow], settings: IndexSettings) -> None:
    todo = [k for k in db.shards() if not (out / sensitivity_name(k)).is_file()]
    if not todo:
        return
    fisher = load_file(str(out / "fisher.safetensors"))
    groups = adapter.parameter_groups()
    with task("sensitivities", sum(len(db.segments(k)) for k in todo)) as advance:
        for k in todo:
            rows = db.segments(k)
            latents = load_file(str(out / shard_name(k)))["latents"]
            conds = [segment_conditioning(tracks[s.track_id], s) for s in rows]
            sens = sensitivities(adapter, latents, conds, [segment_stream(s.segment_id) for s in rows], groups, fisher,
                                 damping=settings.damping, seed=settings.seed, draws=settings.draws, advance=advance)
            write_tensors(out / sensitivity_name(k), sens, {"fingerprint": meta.fingerprint})


def _finalize(out: Path, meta: IndexMeta) -> None:
    db = CatalogDB(out / "catalog.sqlite")
    try:
        ids, base, vecs, sens = [], [], [], []
        for k in db.shards():
            sh = load_file(str(out / shard_name(k)))
            ids.append(sh["segment_ids"])
            base.append(sh["baseline"])
            vecs.append(sh["embeddings"])
            sens.append(load_file(str(out / sensitivity_name(k))))
    finally:
        db.close()
    seg_ids = torch.cat(ids)
    merged = {"segment_ids": seg_ids, "losses": torch.cat(base)}
    merged.update({f"sensitivity.{g}": torch.cat([s[g] for s in sens]) for g in sens[0]})
    write_tensors(out / "baseline.safetensors", merged, {"fingerprint": meta.fingerprint})
    vectors.save(vectors.build(torch.cat(vecs).numpy(), seg_ids.numpy()), out / "vectors.faiss")
    meta.complete = True
    write_json(out / "index.json", meta.to_dict())

