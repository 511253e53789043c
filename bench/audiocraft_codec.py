"""How good is an audiocraft demo EnCodec? Codes used, reconstruction, re-encoding, and the style check.

    python bench/audiocraft_codec.py [--checkpoint adapters/audiocraft_demo_model]
    python bench/audiocraft_codec.py --train '{"steps": 200, "lr": 3e-3, "n_mels": 32, "mel_scales": [6, 9]}' \
                                     --codec '{"n_filters": 8, "dimension": 32}'

On the demo's synthetic catalogue (seed 0), per codebook: how many of its codes the catalogue uses and what
share of them survive decode -> re-encode; the reconstruction SNR; and how many reconstructed 2 s crops the
independent style check (:mod:`tda_plugin.style_check`) places with their own artist (two crops per track).
An LM over an EnCodec whose reconstructions the style check cannot place cannot make clips that sound like
an artist, whatever it learned. ``--train`` trains an EnCodec with ``train_compression`` (one thread) instead
of loading one, to compare recipes. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from tda_plugin.adapters import audiocraft_demo
from tda_plugin.adapters.audiocraft_toolkit import quiet, toolkit
from tda_plugin.catalog import read_catalog
from tda_plugin.demo.synth import synthesise_catalogue
from tda_plugin.style_check import StyleClassifier

CROP = 16000  # 2 s at 8 kHz: the LM's training segment


def measure(compression: torch.nn.Module, loaded: list, classifier: StyleClassifier) -> dict[str, object]:
    """Codes used and surviving per codebook, mean SNR (dB) over whole tracks, and style-check hits on crops."""
    hop = compression.sample_rate // compression.frame_rate
    snrs, survive, hits = [], [], 0
    with torch.no_grad():
        for track, audio, _ in loaded:
            x = audio[None, :, : audio.shape[-1] - audio.shape[-1] % hop]
            codes, _ = compression.encode(x)
            y = compression.decode(codes, None)[..., : x.shape[-1]]
            snrs.append(float(10 * torch.log10(x.pow(2).sum() / (x - y).pow(2).sum())))
            survive.append((compression.encode(y)[0] == codes).float().mean(dim=(0, 2)))
            for off in (0, audio.shape[-1] // 2 - CROP // 2):
                crop = audio[None, :, off:off + CROP]
                heard = compression.decode(compression.encode(crop)[0], None)[0].numpy()
                hits += classifier.predict(heard, compression.sample_rate) == track.artist
    return {"codes_used": audiocraft_demo.codes_used(compression, [a for _, a, _ in loaded]), "of": compression.cardinality,
            "survive_reencode": [round(float(v), 3) for v in torch.stack(survive).mean(0)],
            "snr_db": round(sum(snrs) / len(snrs), 2), "style_check_on_reconstructions": f"{hits}/{2 * len(loaded)}",
            "style_check_on_originals": f"{classifier.held_out_accuracy():.3f} (held-out accuracy)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=audiocraft_demo.SHIPPED)
    ap.add_argument("--train", type=json.loads, default=None, help="train_compression's settings (JSON) instead")
    ap.add_argument("--codec", type=json.loads, default={}, help="compression_config overrides (JSON), with --train")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synthesise_catalogue(Path(tmp) / "catalogue", seed=0)
        tracks = read_catalog(Path(tmp) / "catalogue")
        loaded = audiocraft_demo._load_tracks(tracks, 8000, CROP)
        classifier = StyleClassifier.from_tracks(tracks, 8000, CROP)
    start = time.monotonic()
    if args.train is None:
        with quiet():
            compression = toolkit().loaders.load_compression_model(args.checkpoint)
        source = str(args.checkpoint)
    else:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        compression, _ = audiocraft_demo.build_models(audiocraft_demo.compression_config(**args.codec),
                                                      audiocraft_demo.lm_config())
        audiocraft_demo.train_compression(compression, [a for _, a, _ in loaded], rng=random.Random(0), crop=CROP,
                                          **args.train)
        source = {"train": args.train, "codec": args.codec}
    print(json.dumps({"encodec": source, **measure(compression.eval(), loaded, classifier),
                      "seconds": round(time.monotonic() - start, 1)}))


if __name__ == "__main__":
    main()
