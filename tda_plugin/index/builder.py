"""Build an index in resumable stages (DESIGN.md, "The index on disk").

Stages, each checking the one before it and skipping finished work:
1. ``catalog``  read tracks.csv, decode every file (bad ones are recorded and skipped), plan segments;
2. ``shards``   per shard: decode, encode, baseline losses under the fixed draws, embeddings;
                one atomic file per shard, so an interrupted build resumes at the first missing shard;
3. ``fisher``   diagonal Fisher over a seeded sample of segments, in fixed chunks of
                ``FISHER_CHUNK`` segments (one atomic partial file each), merged in chunk order;
4. ``sensitivity`` per shard: each segment's preconditioned gradient norm per parameter subset and,
                for the ``gradient_sketch`` embedder, its sketch, from one backward pass per segment;
5. ``finalize`` baseline.safetensors, vectors.faiss (streamed shard by shard), then index.json with
                ``complete: true``.
Every stage is deterministic, so a resumed build ends identical to an uninterrupted one. Under
torchrun, shards, Fisher chunks and sensitivity shards are dealt out round-robin across ranks
(tda_plugin/distributed.py); each unit is computed exactly as one process would, so the index is
bit-identical.
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
from safetensors import safe_open
from safetensors.torch import load_file

from .. import audio as audio_io
from .. import distributed
from ..adapter import Conditioning, ModelAdapter
from ..atomic import write_json, write_tensors
from ..catalog import catalog_csv, read_catalog
from ..errors import AudioError, CatalogError, IndexMismatchError
from ..embedders import uses_gradients
from ..fisher import diagonal_fisher, group_damping, sensitivities
from ..progress import task
from ..randomness import segment_stream
from ..registry import get_embedder_spec
from ..scoring import losses
from ..settings import IndexSettings
from ..sketch import for_model as sketch_for_model
from . import vectors
from .catalog_db import CatalogDB, SegmentRow, TrackRow
from .store import INDEX_FILES, Index, IndexMeta, conditioned, read_meta, sensitivity_name, shard_name, vectors_name

log = logging.getLogger(__name__)

ENCODE_BATCH = 16
#: Fisher sample segments per partial file: the unit of resumption and of distribution
FISHER_CHUNK = 16


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


def segment_conditioning(track: TrackRow, seg: SegmentRow, conditioning: str = "prompt") -> Conditioning:
    """What the model saw for a training segment: its caption and position in its track (under
    ``conditioning="unconditional"``, the null branch in place of the caption)."""
    return Conditioning(prompt=track.caption, start_s=seg.start_s, total_s=track.duration_s,
                        unconditional=conditioning == "unconditional")


def conditionings(adapter: ModelAdapter, settings: IndexSettings) -> tuple[str, ...]:
    """The conditionings whose per-segment losses, sensitivities and vectors the build caches."""
    both = settings.unconditional and getattr(adapter, "supports_unconditional", False)
    return ("prompt", "unconditional") if both else ("prompt",)


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
    streams = [segment_stream(s.segment_id) for s in rows]
    out = {"segment_ids": torch.tensor([s.segment_id for s in rows], dtype=torch.int64), "latents": latents}
    spec = get_embedder_spec(settings.embedder)
    for kind in conditionings(adapter, settings):
        conds = [segment_conditioning(tracks[s.track_id], s, kind) for s in rows]
        out[conditioned("baseline", kind)] = losses(adapter, latents, conds, streams, seed=settings.seed,
                                                    draws=settings.draws, batch_size=batch_size)
        if not uses_gradients(spec):  # a gradient sketch comes from the sensitivity pass, after the Fisher
            step = max(1, batch_size // 2)
            out[conditioned("embeddings", kind)] = torch.cat([
                spec.embed(adapter, latents[i:i + step], adapter.condition(conds[i:i + step]), streams[i:i + step],
                           settings.seed) for i in range(0, len(rows), step)]).float()
    return out


def fisher_sample(segment_ids: list[int], count: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(segment_ids), generator=gen)[:count]
    return sorted(segment_ids[i] for i in order.tolist())


def build_index(corpus: Path, out: Path, adapter: ModelAdapter, *, checkpoint: Path, model_config: Path | None = None,
                settings: IndexSettings = IndexSettings(), batch_size: int = 64, overwrite: bool = False) -> BuildReport:
    """Build (or resume) the index of ``corpus`` in ``out``; under torchrun every rank calls this alike."""
    out = Path(out)
    distributed.init_from_env()
    get_embedder_spec(settings.embedder)  # fail before any work on an unknown name
    new = _meta(adapter, checkpoint, model_config, corpus, settings)
    if distributed.is_main():  # rank 0 writes index.json and plans the catalogue; the others then agree
        meta = _start(out, new, overwrite)
    distributed.barrier()
    if not distributed.is_main():
        meta = _start(out, new, overwrite=False)
    settings = meta.index_settings
    db = CatalogDB(out / "catalog.sqlite") if distributed.is_main() else None
    try:
        if db is not None and not db.is_done("catalog"):
            _plan_catalog(db, Path(corpus), meta, settings.shard_size)
        distributed.barrier()
        db = db or CatalogDB(out / "catalog.sqlite")
        tracks = db.tracks()
        shards = db.shards()
        todo = [k for k in shards if not (out / shard_name(k)).is_file()]
        resumed = len(shards) - len(todo)
        all_rows = db.segments()
        mine = distributed.mine(todo)
        with task("encoding + baseline", sum(len(db.segments(k)) for k in mine)) as advance:
            for k in mine:
                rows = db.segments(k)
                tensors = _build_shard(adapter, meta, rows, tracks, settings, batch_size)
                write_tensors(out / shard_name(k), tensors, {"fingerprint": meta.fingerprint})
                advance(len(rows))
        distributed.barrier()
        meta.encoded_shape = list(_shard_latent_shape(out, shards[0]))
        if not (out / "fisher.safetensors").is_file():
            _build_fisher(adapter, out, meta, all_rows, tracks, settings)
        _build_sensitivities(adapter, out, meta, db, tracks, settings)
        distributed.barrier()
        if distributed.is_main():
            _finalize(out, meta, db, uses_gradients(get_embedder_spec(settings.embedder)), conditionings(adapter, settings))
        distributed.barrier()
        failures = db.failures()
        report = BuildReport(out, len(all_rows), len({s.track_id for s in all_rows}), failures, resumed)
    finally:
        if db is not None:
            db.close()
    if distributed.is_main():
        from ..plugins import get_plugin_manager

        get_plugin_manager().hook.tda_index_built(index_dir=str(out), info=Index(out).info())
    return report


def _shard_latent_shape(out: Path, shard: int) -> tuple[int, ...]:
    with safe_open(str(out / shard_name(shard)), "pt") as fh:
        return tuple(fh.get_slice("latents").get_shape()[1:])


def _build_fisher(adapter: ModelAdapter, out: Path, meta: IndexMeta, rows: list[SegmentRow],
                  tracks: dict[int, TrackRow], settings: IndexSettings) -> None:
    """F over the seeded sample, computed in chunks (resumable, spread over ranks) and merged in chunk order."""
    ids = fisher_sample([s.segment_id for s in rows], settings.fisher_segments, settings.seed)
    by_id = {s.segment_id: s for s in rows}
    names = adapter.parameter_groups()["blocks"]
    chunks = [ids[i:i + FISHER_CHUNK] for i in range(0, len(ids), FISHER_CHUNK)]
    todo = [j for j in range(len(chunks)) if not (out / _fisher_part(j)).is_file()]
    mine = distributed.mine(todo)
    with task("fisher", sum(len(chunks[j]) for j in mine)) as advance:
        for j in mine:
            chunk = chunks[j]
            conds = [segment_conditioning(tracks[by_id[i].track_id], by_id[i]) for i in chunk]
            part = diagonal_fisher(adapter, _gather_latents(out, chunk, by_id), conds,
                                   [segment_stream(i) for i in chunk], names, seed=settings.seed,
                                   draws=settings.draws, advance=advance)
            write_tensors(out / _fisher_part(j), part, {"fingerprint": meta.fingerprint})
    distributed.barrier()
    if distributed.is_main():
        fisher: dict[str, torch.Tensor] = {}
        for j, chunk in enumerate(chunks):  # the same order whatever the number of ranks
            part = load_file(str(out / _fisher_part(j)))
            for n in names:
                term = part[n] * (len(chunk) / len(ids))
                fisher[n] = term if n not in fisher else fisher[n] + term
        write_tensors(out / "fisher.safetensors", fisher, {"fingerprint": meta.fingerprint, "segments": str(len(ids))})
        for j in range(len(chunks)):
            (out / _fisher_part(j)).unlink()
    distributed.barrier()


def _fisher_part(chunk: int) -> str:
    return f"shards/fisher-part-{chunk:05d}.safetensors"


def _gather_latents(out: Path, ids: list[int], by_id: dict[int, SegmentRow]) -> torch.Tensor:
    """Latents of ``ids`` read back from their shards, each shard opened once."""
    rows = []
    for k in sorted({by_id[i].shard for i in ids}):
        with safe_open(str(out / shard_name(k)), "pt") as fh:
            sids = fh.get_tensor("segment_ids").tolist()
            wanted = [(i, sids.index(i)) for i in ids if by_id[i].shard == k]
            latents = fh.get_slice("latents")
            rows += [(i, latents[p:p + 1][0]) for i, p in wanted]
    order = {i: t for i, t in rows}
    return torch.stack([order[i] for i in ids])


def _build_sensitivities(adapter: ModelAdapter, out: Path, meta: IndexMeta, db: CatalogDB,
                         tracks: dict[int, TrackRow], settings: IndexSettings) -> None:
    todo = distributed.mine([k for k in db.shards() if not (out / sensitivity_name(k)).is_file()])
    if not todo:
        return
    fisher = load_file(str(out / "fisher.safetensors"))
    groups = adapter.parameter_groups()
    sketch = None
    if uses_gradients(get_embedder_spec(settings.embedder)):
        sketch = sketch_for_model(adapter.module, groups["blocks"], fisher,
                                  group_damping(fisher, groups["blocks"], settings.damping), seed=settings.seed)
    kinds = conditionings(adapter, settings)
    with task("sensitivities", len(kinds) * sum(len(db.segments(k)) for k in todo)) as advance:
        for k in todo:
            rows = db.segments(k)
            with safe_open(str(out / shard_name(k)), "pt") as fh:
                latents = fh.get_tensor("latents")
            sens: dict[str, torch.Tensor] = {}
            for kind in kinds:
                conds = [segment_conditioning(tracks[s.track_id], s, kind) for s in rows]
                part = sensitivities(adapter, latents, conds, [segment_stream(s.segment_id) for s in rows], groups,
                                     fisher, damping=settings.damping, seed=settings.seed, draws=settings.draws,
                                     advance=advance, sketch=sketch)
                sens.update({conditioned(g, kind): v for g, v in part.items()})
            write_tensors(out / sensitivity_name(k), sens, {"fingerprint": meta.fingerprint})


def _finalize(out: Path, meta: IndexMeta, db: CatalogDB, sketched: bool, kinds: tuple[str, ...]) -> None:
    """Concatenate baseline rows and sensitivities, stream the vectors into FAISS, mark complete.

    Only the small per-segment tensors are read (never the latents), so memory stays at the size of
    baseline.safetensors plus one shard's vectors and the FAISS index.
    """
    shards = db.shards()
    ids, base, sens = [], [], []
    for k in shards:
        with safe_open(str(out / shard_name(k)), "pt") as fh:
            ids.append(fh.get_tensor("segment_ids"))
            base.append({kind: fh.get_tensor(conditioned("baseline", kind)) for kind in kinds})
        with safe_open(str(out / sensitivity_name(k)), "pt") as fh:
            sens.append({g: fh.get_tensor(g) for g in fh.keys() if not g.startswith("sketch")})
    seg_ids = torch.cat(ids)
    merged = {"segment_ids": seg_ids}
    merged.update({conditioned("losses", kind): torch.cat([b[kind] for b in base]) for kind in kinds})
    merged.update({f"sensitivity.{g}": torch.cat([s[g] for s in sens]) for g in sens[0]})
    write_tensors(out / "baseline.safetensors", merged, {"fingerprint": meta.fingerprint})

    for kind in kinds:
        def chunks(kind: str = kind):
            for k, sid in zip(shards, ids):
                path, key = (sensitivity_name(k), "sketch") if sketched else (shard_name(k), "embeddings")
                with safe_open(str(out / path), "pt") as fh:
                    yield fh.get_tensor(conditioned(key, kind)).numpy(), sid.numpy()

        first = next(iter(chunks()))[0]
        vectors.save(vectors.build_streaming(len(seg_ids), first.shape[1], chunks), out / vectors_name(kind))
    meta.complete = True
    write_json(out / "index.json", meta.to_dict())
