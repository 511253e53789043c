"""Models retrained by an adapter's :class:`~tda_plugin.registry.TrainingRecipe`, and the queries measured on them.

Shared by the counterfactual (:mod:`.counterfactual`) and the linear datamodeling score (:mod:`.lds`):
both train many models on parts of one catalogue with one recipe and measure fixed queries' losses on
each. Every model lives in a cache folder keyed by everything that decides it — the catalogue's audio,
the recipe's source, seed, step budget, the checkpoint it was fine-tuned from and the excluded audio —
so an equal request from any run, experiment or query reuses one training, and an edited recipe or
catalogue never reuses a stale one. Seed discipline (the recipe's contract): every model of one seed
starts from the same initialisation and draws its crops as the full-data model does; only crops that
touch removed audio are swapped, so two models differ by their data, not by a reshuffled data order.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import soundfile as sf
import torch

from .. import audio as audio_io
from ..adapter import Conditioning
from ..atomic import atomic_path, write_json
from ..attributor import Attributor, EncodedQuery
from ..catalog import Track, hash_tracks
from ..errors import CatalogError, TdaError
from ..index.builder import build_index
from ..progress import stderr
from ..randomness import make_draws, query_stream
from ..registry import AdapterSpec, TrainingRecipe
from ..settings import IndexSettings

#: the query loss's draws are seeded by the index seed plus this (the unlearning step uses + 1)
LOSS_SEED_OFFSET = 2
#: training steps of the shorter timing probe (the longer one is 4x)
PROBE_STEPS = 5
#: names of the held-out query list inside ``--query-audio DIR``, in the order they are looked for
QUERY_LISTS = ("queries.csv", "tracks.csv")

Exclusions = Mapping[Path, Sequence[tuple[float, float]]]


def recipe_of(spec: AdapterSpec) -> TrainingRecipe:
    if spec.recipe is None:
        raise TdaError(f"adapter {spec.name!r} provides no training recipe; retraining experiments need one")
    return spec.recipe


def can_fine_tune(recipe: TrainingRecipe) -> bool:
    """Whether the recipe's ``train`` takes ``init`` (the contract lets recipes that cannot fine-tune leave it
    out): asked before a fine-tuning run, so such a recipe fails at once and not in its first training."""
    params = inspect.signature(recipe.train).parameters.values()
    return any(p.name == "init" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def catalogue_digest(tracks: Sequence[Track]) -> str:
    """Hash of every track's caption and audio bytes: the data a recipe trains on."""
    return hash_tracks(hashlib.sha1(), tracks, lambda t: f"{t.path}\0{t.caption}\0").hexdigest()


def recipe_digest(recipe: TrainingRecipe) -> str:
    """Hash of the source of the module that defines the recipe's ``train``: editing it retires old models."""
    module = inspect.getmodule(recipe.train)
    try:
        source = inspect.getsource(module) if module is not None else repr(recipe.train)
    except (OSError, TypeError):  # no source (a frozen or interactive definition): its name is all we have
        source = getattr(recipe.train, "__qualname__", repr(recipe.train))
    return hashlib.sha1(source.encode()).hexdigest()


class ModelCache:
    """Trained models in ``root/<key>/`` (model.safetensors, model_config.json, train.json), keyed by what decides them."""

    def __init__(self, root: Path, spec: AdapterSpec, tracks: list[Track]) -> None:
        self.root = Path(root)
        self.spec = spec
        self.recipe = recipe_of(spec)
        self.tracks = tracks
        self._identity = {"adapter": spec.name, "catalogue": catalogue_digest(tracks), "recipe": recipe_digest(self.recipe)}

    def key(self, *, seed: int, steps: int, exclude: Exclusions, init: str | None = None) -> str:
        ranges = sorted((str(Path(p).resolve()), sorted(map(list, r))) for p, r in exclude.items() if r)
        return _digest({**self._identity, "seed": seed, "steps": steps, "init": init, "exclude": ranges})[:16]

    def files(self, key: str) -> tuple[Path, Path]:
        return self.root / key / "model.safetensors", self.root / key / "model_config.json"

    def has(self, key: str) -> bool:
        return all(p.is_file() for p in self.files(key)) and (self.root / key / "train.json").is_file()

    def train(self, *, seed: int, steps: int, exclude: Exclusions, init: str | None = None,
              note: Mapping[str, Any] | None = None) -> str:
        """The key of the model trained with these settings, training it first unless the cache holds it.

        ``init`` is the key of a cached model to fine-tune from; ``note`` is recorded beside the model."""
        key = self.key(seed=seed, steps=steps, exclude=exclude, init=init)
        if self.has(key):
            return key
        kwargs: dict[str, Any] = {} if init is None else {"init": self.files(init)[0]}
        cpu, wall = time.process_time(), time.monotonic()
        self.recipe.train(self.tracks, self.root / key, seed=seed, steps=steps, exclude=exclude, **kwargs)
        write_json(self.root / key / "train.json", {
            **self._identity, "seed": seed, "steps": steps, "init": init,
            "exclude": {str(p): [list(r) for r in rs] for p, rs in exclude.items()},
            "cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.monotonic() - wall, 2), **(note or {})})
        return key

    def record(self, key: str) -> dict[str, Any]:
        return json.loads((self.root / key / "train.json").read_text())

    def load(self, key: str, device: str = "cpu") -> Any:
        ckpt, cfg = self.files(key)
        return self.spec.load(ckpt, model_config=cfg, device=device)

    def index_dir(self, key: str, settings: IndexSettings) -> Path:
        return self.root / key / f"index-{_digest(settings.to_dict())[:10]}"

    def has_index(self, key: str, settings: IndexSettings) -> bool:
        meta = self.index_dir(key, settings) / "index.json"
        return self.has(key) and meta.is_file() and bool(json.loads(meta.read_text()).get("complete"))

    def reference_index(self, key: str, corpus: Path, settings: IndexSettings, device: str = "cpu") -> Attributor:
        """The index of a cached model over ``corpus`` (built beside the model once per index settings)."""
        ckpt, cfg = self.files(key)
        out = self.index_dir(key, settings)
        adapter = self.load(key, device)
        if not self.has_index(key, settings):
            build_index(corpus, out, adapter, checkpoint=ckpt, model_config=cfg, settings=settings)
        return Attributor.from_index(out, adapter=adapter)

    def reference(self, corpus: Path, *, seed: int, steps: int, draws: int) -> Attributor:
        """The reference model (trained from scratch with ``seed`` for ``steps``) and its index with ``draws`` draws:
        what the retraining experiments attribute with and fine-tune from (:meth:`reference_key`)."""
        key = self.train(seed=seed, steps=steps, exclude={}, note={"role": "reference"})
        return self.reference_index(key, corpus, IndexSettings(seed=seed, draws=draws))

    def reference_key(self, *, seed: int, steps: int) -> str:
        return self.key(seed=seed, steps=steps, exclude={})

    def has_reference(self, *, seed: int, steps: int, draws: int) -> bool:
        return self.has_index(self.reference_key(seed=seed, steps=steps), IndexSettings(seed=seed, draws=draws))


def check_queries(queries: int, query_audio: Path | None) -> None:
    """A retraining experiment's queries: generated ones, held-out audio, or both, never neither."""
    if queries < 0 or (queries == 0 and query_audio is None):
        raise TdaError("give generated queries (--queries N), held-out audio (--query-audio DIR), or both")


def excluded_ranges(att: Attributor, segment_ids: Sequence[int]) -> dict[Path, list[tuple[float, float]]]:
    """The audio of these index segments, as the recipe's ``exclude`` wants it."""
    out: dict[Path, list[tuple[float, float]]] = {}
    for sid in sorted(segment_ids):
        seg = att.index.segments[sid]
        out.setdefault(Path(att.index.tracks[seg.track_id].resolved), []).append((seg.start_s, seg.end_s))
    return out


# -- queries ------------------------------------------------------------------------------------------
@dataclass
class Query:
    """A clip whose loss the experiments measure: generated by the reference model, or held-out audio."""

    name: str
    source: str  # "generated" or "held-out"
    audio: np.ndarray  # [channels, samples]
    sample_rate: int
    prompt: str | None
    seconds_start: float = 0.0
    seconds_total: float | None = None
    #: the generation seed (generated queries): the same prompt and seed regenerate it
    seed: int | None = None
    #: the encoding under the reference model (silence masked), filled by :func:`encode`
    encoded: EncodedQuery | None = None
    #: per-query results that several methods share (e.g. one unlearning step for two normalisations)
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Hash of the audio and its conditioning: names the query's cached scores and losses."""
        h = hashlib.sha1(np.ascontiguousarray(self.audio, dtype=np.float32).tobytes())
        h.update(json.dumps([self.sample_rate, self.prompt, self.seconds_start, self.seconds_total]).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "prompt": self.prompt, "key": self.key,
                "seconds": round(self.audio.shape[-1] / self.sample_rate, 3)}


def spread_prompts(tracks: Sequence[Track], count: int) -> list[str | None]:
    """``count`` prompts taken evenly over the catalogue's distinct captions (in sorted order)."""
    prompts = sorted({t.caption for t in tracks if t.caption}) or [None]
    return [prompts[int(q * len(prompts) / count) % len(prompts)] for q in range(count)]


def generated_queries(recipe: TrainingRecipe, att: Attributor, tracks: Sequence[Track], count: int, seed: int,
                      folder: Path) -> list[Query]:
    """``count`` clips generated by the index's model (prompt q spread over the captions, seed ``seed + q``).

    Each is saved as ``folder/generated-<model>-<q>.wav`` and read back on a rerun instead of regenerated."""
    meta = att.index.meta
    total = float(np.median([t.duration_s for t in att.index.tracks.values()]))
    out = []
    for q, prompt in enumerate(spread_prompts(tracks, count)):
        wav = Path(folder) / f"generated-{meta.fingerprint[:8]}-{q:02d}.wav"
        if wav.is_file():
            clip, _ = audio_io.load(wav)
        else:
            clip = recipe.generate(att.adapter, prompt, seconds_total=total, samples=meta.segment_samples, seed=seed + q)
            with atomic_path(wav) as tmp:
                sf.write(str(tmp), clip.T, meta.sample_rate, format="WAV", subtype="FLOAT")
        out.append(Query(wav.name, "generated", np.asarray(clip, dtype=np.float32), meta.sample_rate, prompt,
                         seconds_total=total, seed=seed + q))
    return out


def held_out_queries(folder: Path) -> list[Query]:
    """Audio the model never trained on, listed in ``folder/queries.csv`` (or a catalogue's ``tracks.csv``).

    Columns: ``path`` (relative to the folder or absolute), ``prompt`` (or ``caption``; empty: no prompt),
    optionally ``seconds_start`` and ``seconds_total`` (the timing conditioning; default 0 and the file's length).
    """
    folder = Path(folder)
    listing = next((folder / n for n in QUERY_LISTS if (folder / n).is_file()), None)
    if listing is None:
        raise CatalogError(f"{folder}: no {' or '.join(QUERY_LISTS)} listing the held-out audio "
                           "(columns: path, prompt[, seconds_start, seconds_total])")
    with listing.open(newline="", encoding="utf-8") as fh:
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    out = []
    for row in rows:
        if not row.get("path"):
            continue
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else folder / row["path"]
        data, rate = audio_io.load(path)
        prompt = row.get("prompt") or row.get("caption") or None
        try:
            start = float(row.get("seconds_start") or 0.0)
            total = float(row["seconds_total"]) if row.get("seconds_total") else None
        except ValueError:
            raise CatalogError(f"{listing}: seconds_start / seconds_total of {row['path']} are not numbers") from None
        out.append(Query(f"held-out/{row['path']}", "held-out", data, rate, prompt, start, total))
    if not out:
        raise CatalogError(f"{listing}: lists no audio")
    return out


def experiment_queries(recipe: TrainingRecipe, att: Attributor, tracks: Sequence[Track], *, generated: int, seed: int,
                       folder: Path, held_out: Path | None) -> list[Query]:
    """An experiment's queries, encoded: ``generated`` clips of the reference model and the held-out audio."""
    qs = generated_queries(recipe, att, tracks, generated, seed, folder) if generated else []
    if held_out is not None:
        qs += held_out_queries(held_out)
    return [encode(att, q) for q in qs]


def encode(att: Attributor, query: Query) -> Query:
    """Fill ``query.encoded`` (the reference's encoding, silence masked); the recipe never trains the encoder,
    so every retrained model scores this same encoding."""
    if query.encoded is None:
        query.encoded = att.encode_query(query.audio, query.sample_rate, query.prompt, True, name=query.name,
                                         seconds_start=query.seconds_start, seconds_total=query.seconds_total)
    return query


def query_loss(adapter: Any, query: EncodedQuery, seed: int, draws: int) -> float:
    """The query's training loss under its own fixed draws, over its unmasked frames."""
    d = make_draws(seed, [query_stream(w) for w in range(len(query.conditioning))], draws)
    with torch.no_grad():
        return float(adapter.loss(query.encoded, adapter.condition(query.conditioning), d, query.mask).mean())


# -- time estimates ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Costs:
    """Measured wall seconds of the pieces a retraining experiment is made of, on this machine now."""

    train_fixed: float
    train_step: float
    #: one forward pass of one segment over all its draws (scoring, baselines, query losses)
    segment_forward: float
    #: the model's default segment length (what an index of it cuts tracks into)
    segment_seconds: float
    #: one clip of one segment generated by the recipe
    generation: float

    def training(self, steps: int, models: int) -> float:
        return models * (self.train_fixed + steps * self.train_step)

    def unlearning(self, segments: int, unlearn_draws: int, draws: int, windows: int = 1) -> float:
        """One exact attribution: the query gradient (backward ≈ 2 forwards) and every segment's loss."""
        return self.segment_forward * (segments + 3 * windows * unlearn_draws / max(1, draws))

    def gradient_pass(self, segments: int) -> float:
        return 3 * segments * self.segment_forward


def measure_costs(recipe: TrainingRecipe, spec: AdapterSpec, tracks: list[Track], seed: int, draws: int, *,
                  model: Any | None = None, train: bool = True) -> Costs:
    """Time what an experiment is made of, on this machine now.

    Training (``train``): two short trainings (PROBE_STEPS and 4×PROBE_STEPS) after an untimed one-step run that
    pays the one-time costs (imports, first allocations); their difference is the cost per step, the rest the
    fixed cost of a run; when timing noise hides the difference every probe second counts as steps (an upper
    bound). Without ``train`` (nothing left to train) training costs 0. One batch of segment losses and one
    generation are timed on ``model`` (e.g. the reference), else on a probe model: weights do not change their cost."""
    fixed = per_step = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if train:
            recipe.train(tracks, Path(tmp) / "warm-up", seed=seed, steps=1, exclude={})
            took = []
            for steps in (PROBE_STEPS, 4 * PROBE_STEPS):
                t0 = time.monotonic()
                ckpt, cfg = recipe.train(tracks, Path(tmp) / str(steps), seed=seed, steps=steps, exclude={})
                took.append(time.monotonic() - t0)
            per_step = (took[1] - took[0]) / (3 * PROBE_STEPS)
            if per_step <= 0.02 * took[0] / PROBE_STEPS:  # lost in noise: bound it by the longer probe
                per_step = took[1] / (4 * PROBE_STEPS)
            fixed = max(0.0, took[0] - PROBE_STEPS * per_step)
        elif model is None:
            ckpt, cfg = recipe.train(tracks, Path(tmp) / "probe", seed=seed, steps=1, exclude={})
        if model is None:
            model = spec.load(ckpt, model_config=cfg, device="cpu")
        forward = _forward_seconds(model, tracks, draws)
        samples = model.default_segment_samples()
        t0 = time.monotonic()
        recipe.generate(model, tracks[0].caption, seconds_total=samples / model.sample_rate, samples=samples, seed=seed)
        generation = time.monotonic() - t0
    return Costs(fixed, per_step, forward, samples / model.sample_rate, generation)


def _forward_seconds(adapter: Any, tracks: list[Track], draws: int, batch: int = 4) -> float:
    seg = adapter.default_segment_samples()
    data, rate = audio_io.load(tracks[0].resolved)
    data, _ = audio_io.conform(data, rate, adapter.sample_rate, adapter.channels)
    crop = np.zeros((adapter.channels, seg), dtype=np.float32)
    crop[:, :min(seg, data.shape[1])] = data[:, :seg]
    encoded = adapter.encode(torch.from_numpy(crop)[None]).repeat_interleave(batch, dim=0)
    cond = adapter.condition([Conditioning(tracks[0].caption, 0.0, data.shape[1] / adapter.sample_rate)] * batch)
    streams = [f"probe/{i}" for i in range(batch)]
    runs = []
    with torch.no_grad():
        for _ in range(2):  # the first pass pays one-time costs
            t0 = time.monotonic()
            adapter.loss(encoded, cond, make_draws(0, streams, draws))
            runs.append(time.monotonic() - t0)
    return runs[-1] / batch


def catalogue_segments(tracks: Sequence[Track], segment_seconds: float) -> int:
    """How many whole segments an index of these tracks will hold."""
    return sum(int(audio_io.probe(t.resolved).duration_s // segment_seconds) for t in tracks)


def announce(experiment: str, lines: Sequence[tuple[str, float]]) -> float:
    """Print the estimate (stderr), one line per part; returns the total seconds."""
    total = sum(s for _, s in lines)
    stderr.print(f"{experiment}: about {total / 60:.0f} min on this machine (finished work is reused on a rerun):")
    for what, seconds in lines:
        stderr.print(f"  {what}: {seconds / 60:.1f} min")
    return total


def median_cpu(cache: ModelCache, keys: Sequence[str]) -> float:
    """Median CPU seconds of the cached trainings among ``keys`` (nan if none recorded)."""
    cpus = [cache.record(k)["cpu_s"] for k in keys if cache.has(k)]
    return float(statistics.median(cpus)) if cpus else float("nan")
