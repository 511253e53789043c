"""`tda demo`: the whole job on an embedded default, end to end.

Synthesise (or read) a credited catalogue -> train a small model of the toolkit's real architecture
within a time budget -> build the attribution index -> generate clips with the toolkit's own
generate call -> attribute each -> credits JSON beside each WAV, a table, one HTML report.
Every step that already finished in ``out`` (catalogue, model, index) is reused on a rerun.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ..atomic import atomic_path, write_json
from ..attributor import AttributionResult, Attributor
from ..catalog import read_catalog
from ..index.builder import build_index
from ..evaluation import segment_audio
from ..report import ClipReport, SegmentAudio, write_html_report
from ..settings import AttributeSettings, IndexSettings
from .synth import synthesise_catalogue

log = logging.getLogger(__name__)


@dataclass
class DemoRun:
    out: Path
    clips: list[tuple[Path, AttributionResult]] = field(default_factory=list)
    report: Path | None = None
    styles_credited_first: int = 0


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


def run_demo(out: Path, *, corpus: Path | None = None, minutes: float = 3.0, clips: int = 4, seed: int = 0,
             device: str = "cpu", steps: int = 50, settings: AttributeSettings = AttributeSettings(),
             show: Callable[[AttributionResult], None] = lambda r: None) -> DemoRun:
    from ..adapters.stable_audio import load as load_adapter
    from ..adapters.stable_audio_demo import train_demo_model
    from ..adapters.stable_audio_generation import generate_with_credits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus_dir = out / "catalogue"
        if not (corpus_dir / "tracks.csv").is_file():
            synthesise_catalogue(corpus_dir, seed=seed)
    else:
        corpus_dir = _with_captions(Path(corpus), out)
    tracks = read_catalog(corpus_dir)
    model_dir = out / "model"
    ckpt, cfg = model_dir / "model.safetensors", model_dir / "model_config.json"
    if not (ckpt.is_file() and cfg.is_file()):
        train_demo_model(tracks, model_dir, minutes=minutes, seed=seed)
    adapter = load_adapter(ckpt, model_config=cfg, device=device)
    build_index(corpus_dir, out / "index", adapter, checkpoint=ckpt, model_config=cfg,
                settings=IndexSettings(seed=seed), overwrite=True)
    attributor = Attributor.from_index(out / "index", adapter=adapter)

    prompts = sorted({t.caption for t in tracks if t.caption})
    artist_of = {t.caption: t.artist for t in tracks}
    picks = [prompts[int(i * len(prompts) / clips) % len(prompts)] for i in range(clips)]  # spread over styles
    seg = attributor.index.meta.segment_samples
    # timing conditioning as in training: the start of a track of typical length
    total = float(np.median([t.duration_s for t in attributor.index.tracks.values()]))
    run = DemoRun(out)
    reports = []
    for i, prompt in enumerate(picks):
        latents, (result,) = generate_with_credits(
            attributor, settings=settings, steps=steps, cfg_scale=3.0, batch_size=1, sample_size=seg, seed=seed + i,
            return_latents=True, device=device,
            conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": total}])
        clip_audio = adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()
        wav = out / "clips" / f"clip_{i:02d}.wav"
        result.query["path"] = str(wav.relative_to(out))
        _write_wav(wav, clip_audio, adapter.sample_rate)
        write_json(wav.with_suffix(".credits.json"), result.to_dict())
        run.clips.append((wav, result))
        run.styles_credited_first += bool(result.artists and result.artists[0]["artist"] == artist_of[prompt])
        show(result)
        reports.append(ClipReport(result.to_dict(), clip_audio.reshape(-1), adapter.sample_rate,
                                  [SegmentAudio(seg["segment_id"], segment_audio(attributor, seg["segment_id"]).mean(axis=0))
                                   for seg in result.segments]))
    run.report = write_html_report(out / "report.html", reports, title="tda-plugin demo: who made this music?")
    return run


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, format="WAV", subtype="PCM_16")
