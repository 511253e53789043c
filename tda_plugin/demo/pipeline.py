"""`tda demo`: the whole job on an embedded default, end to end.

Synthesise (or read) a credited catalogue -> take the shipped model of the toolkit's real architecture
that was trained on it (or train one for a fixed number of steps: ``train=True``, a real catalogue, or
a catalogue the shipped model was not trained on) -> build the attribution index -> generate clips
with the toolkit's own generate call -> attribute each -> credits beside each WAV (the sidecar sink) and
in the credits ledger, a table, one HTML report (the code of ``tda report``), with two separate figures
at its top: how many clips sound like the prompted artist (an independent check,
:mod:`tda_plugin.style_check`) and how many credit the prompted artist first.
Every step that already finished in ``out`` (catalogue, model, index) is reused on a rerun.
"""
from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import soundfile as sf

from ..atomic import atomic_path
from ..attributor import AttributionResult, Attributor
from ..catalog import read_catalog
from ..errors import TdaError
from ..index.builder import build_index
from ..report_files import build_report
from ..settings import AttributeSettings, IndexSettings
from ..sinks import SinkOptions, write_credits
from ..sinks.ledger import default_ledger_path
from ..stability import SETTLED, settled
from ..style_check import StyleClassifier, StyleFit, style_fit
from .synth import synthesise_catalogue

log = logging.getLogger(__name__)


@dataclass
class DemoRun:
    out: Path
    clips: list[tuple[Path, AttributionResult]] = field(default_factory=list)
    report: Path | None = None
    styles_credited_first: int = 0
    #: clips whose first artist is settled under resampled loss draws (tda_plugin/stability.py); None where the
    #: index keeps one draw, so that nothing can be resampled (:attr:`not_estimable` says why)
    artists_settled: int | None = 0
    not_estimable: str | None = None
    #: the independent check: how many clips sound like the prompted artist (no model, no attribution)
    style_fit: StyleFit | None = None
    #: the credits ledger the clips' credits were appended to
    ledger: Path | None = None


def _with_captions(corpus: Path, out: Path) -> Path:
    """A real catalogue without captions gets "music by <artist>" prompts (written to a copy)."""
    tracks = read_catalog(corpus)
    if all(t.caption for t in tracks):
        return corpus
    target = out / "catalogue" / "tracks.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "title", "artist", "license", "caption"])
        for t in tracks:
            w.writerow([str(t.resolved.resolve()), t.title, t.artist, t.license, t.caption or f"music by {t.artist}"])
    return target.parent


@dataclass
class DemoModel:
    """One toolkit's part of the demo: its trained model, where it lives, and its generate-with-credits call."""

    adapter: Any
    checkpoint: Path
    model_config: Path | None
    #: (attributor, prompt, clip number) -> (audio [C, S], its attribution)
    generate: Callable[[Attributor, str, int], tuple[np.ndarray, AttributionResult]]


def _stable_audio(tracks: list, model_dir: Path, *, train: bool, seed: int, device: str, steps: int,
                  settings: AttributeSettings) -> DemoModel:
    from ..adapters.stable_audio import load as load_adapter
    from ..adapters.stable_audio_demo import shipped_model, train_demo_model
    from ..adapters.stable_audio_generation import generate_with_credits

    ckpt, cfg = model_dir / "model.safetensors", model_dir / "model_config.json"
    if not (ckpt.is_file() and cfg.is_file()):
        shipped = None if train else shipped_model(tracks, seed=seed)
        if shipped is None:
            train_demo_model(tracks, model_dir, seed=seed)
        else:
            _copy_shipped(zip(shipped, (ckpt, cfg)))

    def generate(attributor: Attributor, prompt: str, i: int) -> tuple[np.ndarray, AttributionResult]:
        # timing conditioning as in training: the start of a track of typical length
        total = float(np.median([t.duration_s for t in attributor.index.tracks.values()]))
        latents, (result,) = generate_with_credits(
            attributor, settings=settings, steps=steps, cfg_scale=3.0, batch_size=1,
            sample_size=attributor.index.meta.segment_samples, seed=seed + i, return_latents=True, device=device,
            conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": total}])
        return attributor.adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy(), result

    return DemoModel(load_adapter(ckpt, model_config=cfg, device=device), ckpt, cfg, generate)


def _copy_shipped(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Copy a shipped model's files into the demo's folder, so that it holds everything its index refers to."""
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _audiocraft(tracks: list, model_dir: Path, *, train: bool, seed: int, device: str, steps: int,
                settings: AttributeSettings) -> DemoModel:
    import torch

    from ..adapters.audiocraft import load as load_adapter
    from ..adapters.audiocraft_demo import RECIPE, shipped_model, train_demo_model, with_steps
    from ..adapters.audiocraft_generation import gen_model, generate as generate_with_credits
    from ..adapters.audiocraft_toolkit import COMPRESSION_FILE, LM_FILE

    if not (model_dir / LM_FILE).is_file():
        # a step budget, so that machine load cannot change the model
        recipe = RECIPE if AUDIOCRAFT_STEPS is None else with_steps(RECIPE, *AUDIOCRAFT_STEPS)
        shipped = None if train else shipped_model(tracks, seed=seed, recipe=recipe)
        if shipped is None:
            train_demo_model(tracks, model_dir, recipe=recipe, seed=seed)
        else:
            _copy_shipped((shipped / name, model_dir / name) for name in (COMPRESSION_FILE, LM_FILE))

    def generate(attributor: Attributor, prompt: str, i: int) -> tuple[np.ndarray, AttributionResult]:
        model = gen_model(attributor)
        model.set_generation_params(duration=attributor.index.meta.segment_seconds, top_k=0, cfg_coef=3.0)
        torch.manual_seed(seed + i)
        audio, (result,) = generate_with_credits(attributor, model, [prompt], settings=settings)
        return audio[0].clamp(-1, 1).cpu().numpy(), result

    return DemoModel(load_adapter(model_dir, device=device), model_dir, None, generate)


DEMO_MODELS = {"stable-audio": _stable_audio, "audiocraft": _audiocraft}
#: the audiocraft demo's (EnCodec, LM) training steps; None: the shipped model's recipe's own
AUDIOCRAFT_STEPS: tuple[int, int] | None = None


def run_demo(out: Path, *, corpus: Path | None = None, train: bool = False, clips: int = 8, seed: int = 0,
             device: str = "cpu", steps: int = 50, settings: AttributeSettings = AttributeSettings(),
             adapter: str = "stable-audio", show: Callable[[AttributionResult], None] = lambda r: None,
             ledger: Path | None = None) -> DemoRun:
    """``ledger``: where the clips' credits are appended (default: the ledger `tda credits list` reads)."""
    if adapter not in DEMO_MODELS:
        raise TdaError(f"no demo for adapter {adapter!r} (available: {', '.join(DEMO_MODELS)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus_dir = out / "catalogue"
        if not (corpus_dir / "tracks.csv").is_file():
            synthesise_catalogue(corpus_dir, seed=seed)
    else:
        corpus_dir = _with_captions(Path(corpus), out)
    tracks = read_catalog(corpus_dir)
    demo = DEMO_MODELS[adapter](tracks, out / "model", train=train, seed=seed, device=device, steps=steps, settings=settings)
    build_index(corpus_dir, out / "index", demo.adapter, checkpoint=demo.checkpoint, model_config=demo.model_config,
                settings=IndexSettings(seed=seed), overwrite=True)
    attributor = Attributor.from_index(out / "index", adapter=demo.adapter)

    prompts = sorted({t.caption for t in tracks if t.caption})
    artist_of = {t.caption: t.artist for t in tracks}
    picks = [prompts[int(i * len(prompts) / clips) % len(prompts)] for i in range(clips)]  # spread over styles
    run = DemoRun(out, ledger=Path(ledger) if ledger is not None else default_ledger_path())
    heard = []
    for i, prompt in enumerate(picks):
        clip_audio, result = demo.generate(attributor, prompt, i)
        wav = out / "clips" / f"clip_{i:02d}.wav"
        result.query["path"] = str(wav.relative_to(out))
        _write_wav(wav, clip_audio, demo.adapter.sample_rate)
        heard.append((clip_audio, demo.adapter.sample_rate, artist_of[prompt]))
        write_credits(result.to_dict(), wav, ("sidecar", "ledger"), SinkOptions(ledger=run.ledger))
        run.clips.append((wav, result))
        run.styles_credited_first += bool(result.artists and result.artists[0]["artist"] == artist_of[prompt])
        why = result.method["stability"].get("not_estimable")
        if why is not None:
            run.artists_settled, run.not_estimable = None, why
        elif run.artists_settled is not None:
            run.artists_settled += settled(result.artists)
        show(result)
    classifier = StyleClassifier.from_tracks(tracks, demo.adapter.sample_rate, attributor.index.meta.segment_samples)
    run.style_fit = fit = style_fit(classifier, heard)
    summary = [("The model's clips sound like the prompted artist (independent check)", f"{fit.hits} of {fit.total} clips"),
               ("The prompted artist is credited first", f"{run.styles_credited_first} of {len(run.clips)} clips"),
               (f"The first artist stays first in ≥ {SETTLED:.0%} of resamples of the model's loss draws",
                f"{run.artists_settled} of {len(run.clips)} clips") if run.artists_settled is not None else
               # the reason in the label's small type: the value is shown in the figures' large one
               (f"Whether the first artist stays first under resampled loss draws: {run.not_estimable}",
                "not estimable")]
    run.report = build_report([wav for wav, r in run.clips if not r.vetoes], out / "report.html", index=out / "index",
                              title="tda-plugin demo: who made this music?", summary=summary,
                              segment_players=5)  # eight clips, top five segments each: a page under 1 MB
    return run


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, format="WAV", subtype="PCM_16")
