"""Build an index in resumable stages (docs/index-format.md).

Stages, each checking the one before it and skipping finished work:
1. ``catalog``  read tracks.csv, decode every file (bad ones are recorded and skipped), plan segments;
2. ``shards``   per shard: decode, encode, embeddings (of embedders that need no gradients);
                one atomic file per shard, so an interrupted build resumes at the first missing shard;
                then, per shard, the near-copy fingerprints of the audio (:mod:`tda_plugin.copies.build`);
3. ``fisher``   diagonal Fisher over a seeded sample of segments, in fixed chunks of
                ``FISHER_CHUNK`` segments (one atomic partial file each), merged in chunk order;
4. ``statistics`` per shard: each segment's baseline losses under the fixed draws, its preconditioned
                gradient norm per parameter subset and, for the ``gradient_sketch`` embedder, its sketch,
                all from one forward and one backward pass per segment (:mod:`tda_plugin.gradients`);
                the Fisher sample's gradients are kept from stage 3 when they fit in ``KEEP_BYTES``
                (one process, per-segment plan), so no segment's gradient is computed twice;
5. ``finalize`` baseline.safetensors, vectors.faiss (streamed shard by shard), then index.json with
                ``complete: true`` and every other file's size and sha256 (index/verify.py).
``build_index(..., reference=True)`` computes stages 3 and 4 as the original per-segment loop did (a
separate forward pass for the baseline, the adapter's activation checkpointing, every gradient computed
in each stage): the reference the faster path is checked and timed against (bench/build_throughput.py).
Rerunning the build on a finished index first verifies those checksums and deletes what is damaged
(and what was derived from it), so the same command repairs it.
Every stage is deterministic, so a resumed build ends identical to an uninterrupted one. Under
torchrun, shards, Fisher chunks and sensitivity shards are dealt out round-robin across ranks
(tda_plugin/distributed.py); each unit is computed exactly as one process would, so the index is
bit-identical.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .. import audio as audio_io
from .. import distributed
from ..adapter import Conditioning, ModelAdapter, loss_draws
from ..atomic import write_json, write_tensors
from ..catalog import catalog_csv, read_catalog
from ..copies import build as copies_build
from ..errors import AudioError, CatalogError, IndexBusyError, IndexDamagedError, IndexMismatchError, TdaError
from ..embedders import uses_gradients
from ..fisher import fisher_sums, gradient_names, group_damping, named_parameters, statistics
from ..gradients import GradientChunk, GradientPlan, passes, plan_for, reference_chunks
from ..progress import Advance, task
from ..randomness import segment_stream
from ..registry import get_embedder_spec
from ..scoring import losses
from ..settings import IndexSettings
from ..sketch import GradientSketch
from ..sketch import for_model as sketch_for_model
from . import vectors, verify
from .catalog_db import CatalogDB, SegmentRow, TrackRow
from .paths import portable
from .store import (INDEX_FILES, Index, IndexMeta, conditioned, read_meta, sensitivity_name, shard_name, track_audio,
                    vectors_name)

log = logging.getLogger(__name__)

ENCODE_BATCH = 16
#: Fisher sample segments per partial file: the unit of resumption and of distribution
FISHER_CHUNK = 16
#: held by the build writing an index (:func:`_build_lock`); a dot file, so no checksum records it
LOCK_FILE = ".build.lock"
#: most memory the Fisher sample's kept gradients may take (fisher_segments × gradient size); above it
#: the statistics pass computes those segments' gradients again
KEEP_BYTES = 1 << 30


@dataclass(frozen=True)
class BuildReport:
    index_dir: Path
    segments: int
    tracks: int
    failures: list[tuple[str, str]]
    resumed_shards: int


def _meta(adapter: ModelAdapter, checkpoint: Path, model_config: Path | None, corpus: Path,
          settings: IndexSettings, out: Path) -> IndexMeta:
    """The index's identity; an adapter whose loss ignores its draws records the one draw it is built with."""
    settings = replace(settings, draws=loss_draws(adapter, settings.draws))
    seg = adapter.default_segment_samples() if settings.segment_seconds is None else \
        adapter.valid_segment_samples(int(round(settings.segment_seconds * adapter.sample_rate)))
    return IndexMeta(adapter=adapter.name, fingerprint=adapter.fingerprint, checkpoint=portable(checkpoint, out),
                     model_config=portable(model_config, out) if model_config else None,
                     sample_rate=adapter.sample_rate, channels=adapter.channels, segment_samples=seg,
                     settings=settings.to_dict(), corpus=portable(corpus, out), corpus_hash=_corpus_hash(corpus),
                     origin=str(Path(out).resolve()))


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
    old = None
    if (out / "index.json").is_file():
        try:
            old = read_meta(out)
        except IndexDamagedError:
            if not overwrite:
                raise
            _remove_index(out)
    if old is not None:
        if old.identity(out) != meta.identity(out):
            if not overwrite:
                diff = [k for k in meta.identity() if meta.identity(out)[k] != old.identity(out)[k]]
                raise IndexMismatchError(f"{out} holds an index built with other {', '.join(diff)}; "
                                         "use another --out or pass --overwrite")
            _remove_index(out)
        else:  # where the model and the index are now (not part of the identity)
            old.checkpoint, old.model_config, old.origin = meta.checkpoint, meta.model_config, meta.origin
            return old
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "index.json", meta.to_dict())
    return meta


def _remove_damaged(out: Path, meta: IndexMeta) -> bool:
    """On a finished index, delete damaged files and what derives from them; True: start over."""
    if not (meta.complete and meta.files):
        return False
    problems = verify.verify(out)
    for p in problems:
        log.warning("%s: %s; rebuilding it", out / p.name, p.what)
    stale = verify.stale_files(out, meta, problems)
    if stale == ["*"]:
        _remove_index(out)
        return True
    for name in stale:
        (out / name).unlink(missing_ok=True)
    return False


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
        if s.track_id not in cache:  # refused if changed since the catalogue stage (a resumed build)
            cache.clear()
            cache[s.track_id] = track_audio(tracks[s.track_id], meta.sample_rate, meta.channels)
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
    if uses_gradients(spec):  # a gradient sketch comes from the statistics pass, after the Fisher
        return out
    step = max(1, batch_size // 2)
    for kind in conditionings(adapter, settings):
        conds = [segment_conditioning(tracks[s.track_id], s, kind) for s in rows]
        out[conditioned("embeddings", kind)] = torch.cat([
            spec.embed(adapter, latents[i:i + step], adapter.condition(conds[i:i + step]), streams[i:i + step],
                       settings.seed) for i in range(0, len(rows), step)]).float()
    return out


def fisher_sample(segment_ids: list[int], count: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(segment_ids), generator=gen)[:count]
    return sorted(segment_ids[i] for i in order.tolist())


def build_index(corpus: Path, out: Path, adapter: ModelAdapter, *, checkpoint: Path, model_config: Path | None = None,
                settings: IndexSettings = IndexSettings(), batch_size: int = 64, overwrite: bool = False,
                reference: bool = False) -> BuildReport:
    """Build (or resume) the index of ``corpus`` in ``out``; under torchrun every rank calls this alike.

    ``reference``: compute the Fisher and the per-segment statistics the original way (module docstring),
    for checks and timing; the index is the same to float rounding."""
    out = Path(out)
    distributed.init_from_env()
    get_embedder_spec(settings.embedder)  # fail before any work on an unknown name
    with _build_lock(out) if distributed.is_main() else contextlib.nullcontext():
        return _build(corpus, out, adapter, checkpoint, model_config, settings, batch_size, overwrite, reference)


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.build.lock`` for the whole build. A second build of the same folder at the same time is
    refused with one line: the two would race, each removing the temporary files the other is writing, and
    the Fisher's part files the other is about to merge. The lock is the OS's (``flock``): it goes with its
    process, so a killed build (``kill -9`` included) leaves none behind to clear by hand."""
    import fcntl

    if out.exists() and not out.is_dir():
        raise TdaError(f"{out}: is a file; --out names the index's directory")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            raise IndexBusyError(f"{out}: another `tda index build` is writing this index"
                                 f"{f' (process {holder})' if holder else ''}; wait for it to finish, or build into "
                                 "another --out") from None
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield  # closing the file releases the lock


def _build(corpus: Path, out: Path, adapter: ModelAdapter, checkpoint: Path, model_config: Path | None,
           settings: IndexSettings, batch_size: int, overwrite: bool, reference: bool) -> BuildReport:
    """:func:`build_index`'s work, under its lock."""
    new = _meta(adapter, checkpoint, model_config, corpus, settings, out)
    if distributed.is_main():  # rank 0 writes index.json and plans the catalogue; the others then agree
        meta = _start(out, new, overwrite)
        if _remove_damaged(out, meta):
            meta = _start(out, new, overwrite)
        for stray in [*out.glob(".*.tmp"), *out.glob("shards/.*.tmp")]:  # left by a killed build (atomic.py)
            stray.unlink()
        if (out / "fisher.safetensors").is_file():  # a build killed after merging the Fisher, before deleting its parts
            for part in out.glob("shards/fisher-part-*.safetensors"):
                part.unlink()
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
        resumed = sum((out / shard_name(k)).is_file() for k in shards)
        all_rows = db.segments()
        mine = distributed.mine_pending(shards, lambda k: (out / shard_name(k)).is_file())
        with task("encoding", sum(len(db.segments(k)) for k in mine)) as advance:
            for k in mine:
                rows = db.segments(k)
                tensors = _build_shard(adapter, meta, rows, tracks, settings, batch_size)
                write_tensors(out / shard_name(k), tensors, {"fingerprint": meta.fingerprint})
                advance(len(rows))
        distributed.barrier()
        copies_build.build_shards(out, meta.fingerprint, db, tracks)  # near-copy fingerprints: audio only, no model
        distributed.barrier()
        meta.encoded_shape = list(_shard_latent_shape(out, shards[0]))
        source = _gradient_source(adapter, out, db, tracks, settings, batch_size, reference)
        kept: dict[int, GradientChunk] = {}
        if not (out / "fisher.safetensors").is_file():
            kept = _build_fisher(source, out, meta, all_rows, tracks, settings)
        _build_statistics(source, out, meta, db, tracks, settings, kept)
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


@dataclass(frozen=True)
class GradientSource:
    """Where the build's per-segment gradients (and baseline losses) come from: one object, two formulations.

    ``plan`` None is the reference (the original per-segment loop with the adapter's checkpointing, and
    the baseline from a separate forward pass); otherwise :func:`tda_plugin.gradients.passes` with that
    plan. Every method takes the segments' conditioning as an argument, so the same passes can run under
    another conditioning (e.g. a null prompt) for a second set of baselines and sensitivities.
    """

    adapter: ModelAdapter
    names: list[str]
    seed: int
    draws: int
    plan: GradientPlan | None
    batch_size: int = 64

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return named_parameters(self.adapter, self.names)

    def gradients(self, latents: torch.Tensor, conds: list[Conditioning], streams: list[str],
                  advance: Advance | None = None) -> Iterator[GradientChunk]:
        if self.plan is None:
            return reference_chunks(self.adapter, self.params, latents, conds, streams, seed=self.seed, draws=self.draws,
                                    advance=advance)
        return passes(self.adapter, self.params, latents, conds, streams, seed=self.seed, draws=self.draws,
                      plan=self.plan, advance=advance)

    def keeps_fisher_sample(self, fisher_segments: int) -> bool:
        """Whether the Fisher pass keeps its gradients for the statistics pass (see the module docstring)."""
        size = 4 * sum(p.numel() for p in self.params)
        return self.plan is not None and self.plan.batch == 1 and distributed.world() == 1 \
            and fisher_segments * size <= KEEP_BYTES

    def statistics(self, latents: torch.Tensor, conds: list[Conditioning], streams: list[str],
                   groups: dict[str, list[str]], fisher: dict[str, torch.Tensor], damping: float,
                   sketch: GradientSketch | None, kept: list[GradientChunk | None] | None = None,
                   advance: Advance | None = None) -> dict[str, torch.Tensor]:
        """Baseline losses [n, D], sensitivities per subset [n] and sketches [n, dim] of these segments.

        ``kept[i]``: segment i's one-segment chunk from the Fisher pass, used instead of recomputing it."""
        if self.plan is None:
            base = losses(self.adapter, latents, conds, streams, seed=self.seed, draws=self.draws,
                          batch_size=self.batch_size)
            out = statistics(self.gradients(latents, conds, streams, advance), self.names, groups, fisher,
                             damping=damping, sketch=sketch)
            return {**out, "baseline": base}
        chunks = self.gradients(latents, conds, streams, advance) if not kept or not any(kept) else \
            _merge_kept(kept, self.gradients(*_missing(kept, latents, conds, streams), advance), advance)
        return statistics(chunks, self.names, groups, fisher, damping=damping, sketch=sketch)


def _missing(kept: list[GradientChunk | None], latents: torch.Tensor, conds: list[Conditioning],
             streams: list[str]) -> tuple[torch.Tensor, list[Conditioning], list[str]]:
    todo = [i for i, k in enumerate(kept) if k is None]
    return latents[todo], [conds[i] for i in todo], [streams[i] for i in todo]


def _merge_kept(kept: list[GradientChunk | None], fresh: Iterator[GradientChunk],
                advance: Advance | None) -> Iterator[GradientChunk]:
    """Kept and fresh one-segment chunks in segment order (kept only exist under the per-segment plan)."""
    for k in kept:
        if k is None:
            yield next(fresh)
        else:
            yield k
            if advance:
                advance(1)


def _gradient_source(adapter: ModelAdapter, out: Path, db: CatalogDB, tracks: dict[int, TrackRow],
                     settings: IndexSettings, batch_size: int, reference: bool) -> GradientSource:
    names = gradient_names(adapter)
    if reference:
        return GradientSource(adapter, names, settings.seed, settings.draws, None, batch_size)
    first = db.segments(db.shards()[0])[0]
    with safe_open(str(out / shard_name(first.shard)), "pt") as fh:
        latent = fh.get_slice("latents")[0:1]
    plan = plan_for(adapter, named_parameters(adapter, names), latent, segment_conditioning(tracks[first.track_id], first),
                    segment_stream(first.segment_id), seed=settings.seed, draws=settings.draws)
    agreed = distributed.agree_min(0 if plan.recompute else plan.batch)  # every rank groups segments alike
    return GradientSource(adapter, names, settings.seed, settings.draws,
                          GradientPlan(max(1, agreed), agreed == 0), batch_size)


def _build_fisher(source: GradientSource, out: Path, meta: IndexMeta, rows: list[SegmentRow],
                  tracks: dict[int, TrackRow], settings: IndexSettings) -> dict[int, GradientChunk]:
    """F over the seeded sample, computed in chunks (resumable, spread over ranks) and merged in chunk order.

    Returns the sample's one-segment gradient chunks by segment id when the source keeps them, else {}."""
    ids = fisher_sample([s.segment_id for s in rows], settings.fisher_segments, settings.seed)
    by_id = {s.segment_id: s for s in rows}
    names = source.adapter.parameter_groups()["blocks"]
    chunks = [ids[i:i + FISHER_CHUNK] for i in range(0, len(ids), FISHER_CHUNK)]
    mine = distributed.mine_pending(range(len(chunks)), lambda j: (out / _fisher_part(j)).is_file())
    keep = source.keeps_fisher_sample(len(ids))
    kept: dict[int, GradientChunk] = {}
    with task("fisher", sum(len(chunks[j]) for j in mine)) as advance:
        for j in mine:
            chunk = chunks[j]
            conds = [segment_conditioning(tracks[by_id[i].track_id], by_id[i]) for i in chunk]
            grads = source.gradients(_gather_latents(out, chunk, by_id), conds, [segment_stream(i) for i in chunk], advance)
            sums = fisher_sums(_keeping(grads, chunk, kept) if keep else grads, source.names, names)
            part = {n: t / max(1, len(chunk)) for n, t in sums.items()}
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
    return kept


def _keeping(chunks: Iterator[GradientChunk], ids: list[int], kept: dict[int, GradientChunk]) -> Iterator[GradientChunk]:
    """Pass one-segment chunks through, keeping each under its segment id."""
    for sid, chunk in zip(ids, chunks):
        kept[sid] = chunk
        yield chunk


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


def _build_statistics(source: GradientSource, out: Path, meta: IndexMeta, db: CatalogDB,
                      tracks: dict[int, TrackRow], settings: IndexSettings, kept: dict[int, GradientChunk]) -> None:
    todo = distributed.mine_pending(db.shards(), lambda k: _statistics_done(out, k))
    if not todo:
        return
    adapter = source.adapter
    fisher = load_file(str(out / "fisher.safetensors"))
    groups = adapter.parameter_groups()
    sketch = None
    if uses_gradients(get_embedder_spec(settings.embedder)):
        sketch = sketch_for_model(adapter.module, groups["blocks"], fisher,
                                  group_damping(fisher, groups["blocks"], settings.damping), seed=settings.seed)
    kinds = conditionings(adapter, settings)
    with task("baseline + sensitivities", len(kinds) * sum(len(db.segments(k)) for k in todo)) as advance:
        for k in todo:
            rows = db.segments(k)
            with safe_open(str(out / shard_name(k)), "pt") as fh:
                latents = fh.get_tensor("latents")
            streams = [segment_stream(s.segment_id) for s in rows]
            stats: dict[str, torch.Tensor] = {}
            for kind in kinds:  # the Fisher sample's kept gradients are the prompted ones
                conds = [segment_conditioning(tracks[s.track_id], s, kind) for s in rows]
                reuse = [kept.pop(s.segment_id, None) for s in rows] if kind == "prompt" else None
                part = source.statistics(latents, conds, streams, groups, fisher, settings.damping, sketch, reuse, advance)
                stats.update({conditioned(g, kind): v for g, v in part.items()})
            write_tensors(out / sensitivity_name(k), stats, {"fingerprint": meta.fingerprint})


def _statistics_done(out: Path, shard: int) -> bool:
    """A statistics file with its baseline (one written before the baseline moved here is redone)."""
    path = out / sensitivity_name(shard)
    if not path.is_file():
        return False
    with safe_open(str(path), "pt") as fh:
        return "baseline" in fh.keys()


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
        with safe_open(str(out / sensitivity_name(k)), "pt") as fh:
            base.append({kind: fh.get_tensor(conditioned("baseline", kind)) for kind in kinds})
            sens.append({g: fh.get_tensor(g) for g in fh.keys() if not g.startswith(("sketch", "baseline"))})
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
    copies_build.finalize(out, shards)
    meta.complete = True
    meta.files = verify.manifest(out)
    write_json(out / "index.json", meta.to_dict())
