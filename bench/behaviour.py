"""Behavioural rates on the demo's trained model: self-rank, planted copies, prompt swap, generated clips.

    python bench/behaviour.py --demo-dir demo-out [--queries 24] [--clips-per-style 2] [--name behaviour]
                              [--subset blocks] [--null-branch] [--only-swap]

Needs a finished `tda demo --out DIR [--adapter audiocraft]` (model/, catalogue/, index/); the adapter
is the index's. Writes bench/results/NAME.json and NAME.md (the rates, with the settings and the wall time).
``--null-branch`` scores every segment and query on the model's null (classifier-free guidance) branch
instead of its prompt, from DIR/index-null (built on first use): every Conditioning is marked
``unconditional`` until the core's conditioning mode offers it. ``--only-swap`` runs the self and
prompt-swap checks only.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from tda_plugin import Attributor, AttributeSettings
from tda_plugin.settings import UnlearnSettings
from tda_plugin.evaluation import (CheckOutcome, add_noise, generated_checks, pitch_shift, prompt_swap_check,
                                   segment_checks, spread_segments)


def audiocraft_generated_check(att: Attributor, styles: dict[str, str], settings: AttributeSettings,
                               clips_per_style: int) -> CheckOutcome:
    """Clips from audiocraft's own MusicGen.generate, attributed from the tokens it generated (the wrapper's way)."""
    from tda_plugin.adapters.audiocraft_generation import gen_model, generate

    model = gen_model(att)
    model.set_generation_params(duration=att.index.meta.segment_seconds, top_k=0, cfg_coef=3.0)
    out = CheckOutcome("generated: prompted artist credited first")
    for k, (prompt, artist) in enumerate(sorted(styles.items())):
        for j in range(clips_per_style):
            torch.manual_seed(1000 * j + k)
            _, (result,) = generate(att, model, [prompt], settings=settings)
            out.total += 1
            out.hits += bool(result.artists) and result.artists[0]["artist"] == artist
    return out


def stable_audio_generated_check(att: Attributor, styles: dict[str, str], settings: AttributeSettings,
                                 clips_per_style: int, steps: int) -> CheckOutcome:
    from tda_plugin.adapters.stable_audio_generation import generate_with_credits

    seg = att.index.meta.segment_samples
    total = float(np.median([t.duration_s for t in att.index.tracks.values()]))  # timing as in training

    def generate(prompt: str, seed: int) -> np.ndarray:
        latents, _ = generate_with_credits(att, settings=AttributeSettings(candidates=1), steps=steps, cfg_scale=3.0,
                                           conditioning=[{"prompt": prompt, "seconds_start": 0, "seconds_total": total}],
                                           batch_size=1, sample_size=seg, seed=seed, device="cpu", return_latents=True)
        return att.adapter.decode(latents)[0].clamp(-1, 1).cpu().numpy()

    return generated_checks(att, styles, generate, settings, clips_per_style, seconds_total=total)


def null_branch(demo_dir: Path) -> Attributor:
    """The demo's model with every Conditioning on the null branch, over DIR/index-null (built if missing)."""
    import functools

    import tda_plugin.attributor as attributor_module
    from tda_plugin.adapter import Conditioning
    from tda_plugin.index import builder
    from tda_plugin.settings import IndexSettings

    null = functools.partial(Conditioning, unconditional=True)
    builder.Conditioning = attributor_module.Conditioning = null  # type: ignore[misc]
    prompted = Attributor.from_index(demo_dir / "index")
    if not getattr(prompted.adapter, "supports_unconditional", False):
        raise SystemExit(f"the {prompted.adapter.name} adapter has no null branch")
    meta = prompted.index.meta
    builder.build_index(Path(meta.corpus), demo_dir / "index-null", prompted.adapter, checkpoint=Path(meta.checkpoint),
                        model_config=Path(meta.model_config) if meta.model_config else None,
                        settings=IndexSettings(**meta.settings))
    return Attributor.from_index(demo_dir / "index-null", adapter=prompted.adapter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-dir", type=Path, default=Path("demo-out"))
    ap.add_argument("--queries", type=int, default=24, help="training segments probed (spread over the catalogue)")
    ap.add_argument("--clips-per-style", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="sampler steps for generated clips")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--name", default="behaviour", help="results file name (e.g. behaviour-audiocraft)")
    ap.add_argument("--subset", default=UnlearnSettings.subset, help="parameter subset unlearning moves")
    ap.add_argument("--null-branch", action="store_true", help="score on the model's null branch, not the prompt")
    ap.add_argument("--only-swap", action="store_true", help="self and prompt-swap checks only")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.monotonic()
    att = null_branch(args.demo_dir) if args.null_branch else Attributor.from_index(args.demo_dir / "index")
    settings = AttributeSettings(UnlearnSettings(subset=args.subset), candidates="all")
    ids = spread_segments(att, args.queries)
    transforms = {"self: segment ranks itself first": None}
    if not args.only_swap:
        transforms.update({"noise 20 dB SNR: source track credited first": add_noise,
                           "pitch +1 semitone: source track credited first": pitch_shift})
    outcomes = segment_checks(att, ids, settings, transforms)
    outcomes.extend(prompt_swap_check(att, ids, settings))
    styles = {t.caption: t.artist for t in att.index.tracks.values() if t.caption}
    if not args.only_swap and att.adapter.name == "audiocraft":
        outcomes.append(audiocraft_generated_check(att, styles, settings, args.clips_per_style))
    elif not args.only_swap:
        outcomes.append(stable_audio_generated_check(att, styles, settings, args.clips_per_style, args.steps))
    wall = time.monotonic() - t0
    doc = {"demo_dir": str(args.demo_dir), "adapter": att.adapter.name, "null_branch": args.null_branch,
           "segments": len(att.index.segments), "queries": len(ids),
           "method": settings.unlearn.to_dict() | {"draws": att.index.meta.settings["draws"], "candidates": "all"},
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "wall_s": round(wall, 1),
           "checks": [o.to_dict() for o in outcomes]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| check | hits | rate | mean rank |", "|---|---|---|---|"]
    for o in doc["checks"]:
        lines.append(f"| {o['check']} | {o['hits']}/{o['total']} | {o['rate']:.2f} | {o.get('mean_rank', '')} |")
    md = (f"Behavioural checks on `{args.demo_dir}` ({doc['segments']} segments, {len(ids)} probed), "
          f"{doc['machine']}, {wall:.0f} s\n\n" + "\n".join(lines) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
