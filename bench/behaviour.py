"""Behavioural rates on the demo's trained model: self-rank, planted copies, prompt swap, generated clips.

    python bench/behaviour.py --demo-dir demo-out [--queries 24] [--clips-per-style 2] [--no-prompt] [--empty-prompt]
                              [--conditioning auto] [--subset blocks] [--query-timesteps 0:1] [--track-credit max]
                              [--only-swap]
                              [--name behaviour]

Needs a finished `tda demo --out DIR [--adapter audiocraft]` (model/, catalogue/, index/); the adapter
is the index's. Writes bench/results/NAME.json and NAME.md (the rates, with the settings and the wall time).
``--no-prompt`` also probes every segment as a copy found in the wild (no prompt: answered under the null
branch by default), ``--empty-prompt`` the same copies scored under an empty prompt against the captioned
baselines (how versions before the unconditional mode answered them). ``--conditioning unconditional``
scores every probe, the prompted ones included, on the model's null (classifier-free guidance) branch.
``--only-swap`` runs the self and prompt-swap checks only. Every credit check also says what it would have
counted under each track-credit rule (max, sum) from the same scores, and each edited copy is also answered
with no attribution at all: is its encoding nearest its source segment's (how far the edit moved it in the
space the model's loss is computed in)?
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edits import pitch_shift
from tda_plugin import Attributor, AttributeSettings
from tda_plugin.errors import AudioError
from tda_plugin.evaluation import (CheckOutcome, add_noise, credits_by_rule, latent_neighbour_checks, prompt_swap_check,
                                   segment_checks, spread_segments)
from tda_plugin.settings import UnlearnSettings
from tda_plugin.style_check import StyleClassifier, StyleFit, style_fit

log = logging.getLogger(__name__)


def hub(att: Attributor, outcome: CheckOutcome) -> dict[str, object]:
    """The segment that came first most often, and for how many queries not from its own track: a "hub"
    wins queries it has nothing to do with. Every segment should be first only for its own track's queries."""
    if not outcome.tops:
        return {}
    counts: dict[int, int] = {}
    for top, _ in outcome.tops:
        counts[top] = counts.get(top, 0) + 1
    sid = max(counts, key=lambda k: (counts[k], -k))
    track = att.index.segments[sid].track_id
    foreign = sum(1 for top, source in outcome.tops if top == sid and source != track)
    return {"segment_id": sid, "first_for": counts[sid], "of": outcome.total, "first_for_other_tracks": foreign}


def generated_checks(att: Attributor, style_artist: dict[str, str], generate: Callable[[str, int], np.ndarray],
                     settings: AttributeSettings, clips_per_style: int = 1, seed: int = 0,
                     seconds_total: float | None = None) -> tuple[CheckOutcome, StyleFit]:
    """Generate clips per style prompt; a hit is the style's artist holding the largest share.

    Also returns the independent check of the same clips (:mod:`tda_plugin.style_check`): do they sound like
    the prompted artist at all? ``seconds_total`` is the timing conditioning the clips were generated with."""
    out = CheckOutcome("generated: prompted artist credited first")
    sr = att.index.meta.sample_rate
    classifier = StyleClassifier.from_tracks(list(att.index.tracks.values()), sr, att.index.meta.segment_samples)
    clips = []
    for k, (prompt, artist) in enumerate(sorted(style_artist.items())):
        for j in range(clips_per_style):
            clip = generate(prompt, seed + 1000 * j + k)
            clips.append((clip, sr, artist))
            try:
                result = att.attribute(clip, sr, prompt=prompt, settings=settings, seconds_total=seconds_total)
            except AudioError as exc:  # a model that generates silence for a style credits no one: a miss
                log.warning("generated clip for %r not attributed: %s", prompt, exc)
                out.total += 1
                continue
            out.count(result, credits_by_rule(att, result),
                      lambda _, artists, a=artist: bool(artists) and artists[0]["artist"] == a)
    return out, style_fit(classifier, clips)


def audiocraft_generated_check(att: Attributor, styles: dict[str, str], settings: AttributeSettings,
                               clips_per_style: int) -> tuple[CheckOutcome, StyleFit]:
    """Clips from audiocraft's own MusicGen.generate, attributed from the tokens it generated (the wrapper's way)."""
    from tda_plugin.adapters.audiocraft_generation import gen_model, generate

    model = gen_model(att)
    model.set_generation_params(duration=att.index.meta.segment_seconds, top_k=0, cfg_coef=3.0)
    out = CheckOutcome("generated: prompted artist credited first")
    sr = att.index.meta.sample_rate
    clips = []
    for k, (prompt, artist) in enumerate(sorted(styles.items())):
        for j in range(clips_per_style):
            torch.manual_seed(1000 * j + k)
            audio, (result,) = generate(att, model, [prompt], settings=settings)
            clips.append((audio[0].cpu().numpy(), sr, artist))
            out.total += 1
            out.hits += bool(result.artists) and result.artists[0]["artist"] == artist
    classifier = StyleClassifier.from_tracks(list(att.index.tracks.values()), sr, att.index.meta.segment_samples)
    return out, style_fit(classifier, clips)


def stable_audio_generated_check(att: Attributor, styles: dict[str, str], settings: AttributeSettings,
                                 clips_per_style: int, steps: int) -> tuple[CheckOutcome, StyleFit]:
    from tda_plugin.adapters.stable_audio_demo import generate_clip

    seg = att.index.meta.segment_samples
    total = float(np.median([t.duration_s for t in att.index.tracks.values()]))  # timing as in training

    def generate(prompt: str, seed: int) -> np.ndarray:
        return generate_clip(att.adapter, prompt, seconds_total=total, samples=seg, seed=seed, steps=steps)

    return generated_checks(att, styles, generate, settings, clips_per_style, seconds_total=total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-dir", type=Path, default=Path("demo-out"))
    ap.add_argument("--queries", type=int, default=24, help="training segments probed (spread over the catalogue)")
    ap.add_argument("--clips-per-style", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="sampler steps for generated clips")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", default="behaviour", help="results file name (e.g. behaviour-audiocraft)")
    ap.add_argument("--subset", default=UnlearnSettings.subset, help="parameter subset unlearning moves")
    ap.add_argument("--no-prompt", action="store_true", help="also probe every segment as a copy found in the wild (no prompt)")
    ap.add_argument("--empty-prompt", action="store_true", help="also probe those copies under an empty prompt (the old way)")
    ap.add_argument("--conditioning", default=AttributeSettings.conditioning, help="auto, prompt, audio or unconditional")
    ap.add_argument("--only-swap", action="store_true", help="self and prompt-swap checks only")
    ap.add_argument("--query-timesteps", default="0:1",
                    help="lo:hi, the quantile range of training timesteps the clip's loss is forgotten over")
    ap.add_argument("--track-credit", default=AttributeSettings.track_credit, help="sum or max (the credits' rule)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.monotonic()
    att = Attributor.from_index(args.demo_dir / "index")
    span = tuple(float(v) for v in args.query_timesteps.split(":"))
    # every segment a candidate (no prefilter), scored as a user's query is: the default shortlist on a 64-draw index
    settings = AttributeSettings(UnlearnSettings(subset=args.subset, query_timesteps=span), candidates="100%",
                                 conditioning=args.conditioning, track_credit=args.track_credit)
    ids = spread_segments(att, args.queries)
    transforms = {"self: segment ranks itself first": None}
    if not args.only_swap:
        transforms.update({"noise 20 dB SNR: source track credited first": add_noise,
                           "pitch +1 semitone: source track credited first": pitch_shift})
    outcomes = segment_checks(att, ids, settings, transforms)
    outcomes.extend(latent_neighbour_checks(att, ids, transforms))  # the same probes, without the model's loss
    hubs = {o.name: hub(att, o) for o in outcomes}
    wild = [("no prompt", settings)] if args.no_prompt else []
    if args.empty_prompt:
        wild.append(("no prompt, empty-prompt scoring", replace(settings, conditioning="prompt")))
    for label, how in wild:  # as copies found in the wild: no prompt, no timing
        free = segment_checks(att, ids, how, transforms, with_prompt=False)
        for o in free:
            o.name = f"{label}: {o.name}"
            hubs[o.name] = hub(att, o)
        outcomes.extend(free)
    outcomes.extend(prompt_swap_check(att, ids, settings))
    styles = {t.caption: t.artist for t in att.index.tracks.values() if t.caption}
    fit = None
    if args.clips_per_style and not args.only_swap:
        if att.adapter.name == "audiocraft":
            generated, fit = audiocraft_generated_check(att, styles, settings, args.clips_per_style)
        else:
            generated, fit = stable_audio_generated_check(att, styles, settings, args.clips_per_style, args.steps)
        outcomes.append(generated)
    wall = time.monotonic() - t0
    doc = {"demo_dir": str(args.demo_dir), "adapter": att.adapter.name, "segments": len(att.index.segments), "queries": len(ids),
           "method": settings.unlearn.to_dict() | {"draws": att.index.meta.settings["draws"], "candidates": "all",
                                                   "conditioning": settings.conditioning,
                                                   "track_credit": settings.track_credit},
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(wall, 1),
           "checks": [o.to_dict() for o in outcomes],
           "style_fit": fit.to_dict() if fit else None, "hubs": hubs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| check | hits | rate | had tracks' credit been their best segment (max) / their sum | source segment's mean rank | "
             "most frequent first segment |", "|---|---|---|---|---|---|"]
    for o in doc["checks"]:
        h = hubs.get(o["check"]) or {}
        top = f"#{h['segment_id']}: first {h['first_for']}/{h['of']}, {h['first_for_other_tracks']} not its track's" if h else ""
        rules = o.get("hits_by_track_credit")
        by_rule = f"{rules['max']}/{o['total']} / {rules['sum']}/{o['total']}" if rules else ""
        lines.append(f"| {o['check']} | {o['hits']}/{o['total']} | {o['rate']:.2f} | {by_rule} | {o.get('mean_rank', '')} | {top} |")
    if fit:
        lines.append(f"| independent: generated clips sound like the prompted artist | {fit.hits}/{fit.total} | "
                     f"{fit.rate:.2f} | | | classifier's own held-out accuracy {fit.classifier_accuracy:.2f} |")
    md = (f"Behavioural checks on `{args.demo_dir}` ({doc['segments']} segments, {len(ids)} probed), "
          f"{doc['machine']}, {wall:.0f} s\n\n" + "\n".join(lines) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
