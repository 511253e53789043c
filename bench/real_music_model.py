"""A small DiT of the demo's architecture trained on the whole real catalogue, for catalogue-scale benches.

    python bench/fetch_real_music.py /tmp/real/fetched
    python bench/real_music_model.py /tmp/real/fetched /tmp/real-model --steps 2000

Every track is decoded once and written whole to ``OUT/audio/`` at the model's format (8 kHz mono,
float32 WAV: exactly the samples the index and the trainer would conform it to, and cheap to read back).
Writes ``OUT/catalogue/tracks.csv`` (every credited track, captioned "music by <artist>"; the
``--hold-out`` tracks, one per artist for the first K artists, are left out of it), ``OUT/held_out/*.wav``
(a ``--query-seconds`` excerpt from the middle of each held-out track: queries that are not in the index,
listed with their prompts in ``OUT/held_out/queries.json``) and ``OUT/model/`` (model_config.json + model.safetensors): stable-audio-tools' ``diffusion_cond`` DiT as in
the demo, with ``--segment-samples`` at 8 kHz (default 0.512 s, so the 3.2 h catalogue holds about 22 000
segments), trained on every track (held-out ones too) for a fixed number of steps, so reruns give the same
model. Audio stays outside the repository (GPL / CC-BY-SA).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import soundfile as sf

from tda_plugin import audio as audio_io
from tda_plugin.adapters.stable_audio_demo import demo_config, train_demo_model
from tda_plugin.catalog import read_catalog

#: the demo model's rate (demo_config's default); the model is mono
SAMPLE_RATE = 8000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fetched", type=Path, help="folder written by fetch_real_music.sh")
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--segment-samples", type=int, default=4096)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--hold-out", type=int, default=3, help="artists with one track kept out of the catalogue")
    ap.add_argument("--query-seconds", type=float, default=2.048)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    rows = list(csv.DictReader((args.fetched / "tracks.csv").open()))
    artists = sorted({r["artist"] for r in rows})
    held = {next(i for i, r in enumerate(rows) if r["artist"] == a) for a in artists[: args.hold_out]}
    (args.out / "catalogue").mkdir(parents=True, exist_ok=True)
    (args.out / "held_out").mkdir(parents=True, exist_ok=True)
    fields = ["path", "title", "artist", "license", "caption"]
    (args.out / "all-tracks").mkdir(exist_ok=True)
    (args.out / "audio").mkdir(exist_ok=True)
    queries = []
    with (args.out / "catalogue" / "tracks.csv").open("w", newline="") as fh, \
            (args.out / "all-tracks" / "tracks.csv").open("w", newline="") as every:
        kept, both = csv.DictWriter(fh, fieldnames=fields), csv.DictWriter(every, fieldnames=fields)
        kept.writeheader()
        both.writeheader()
        for i, r in enumerate(rows):
            data, _ = audio_io.conform(*audio_io.load(args.fetched / r["path"]), SAMPLE_RATE, 1)
            wav = (args.out / "audio" / f"track_{i:02d}.wav").resolve()
            sf.write(wav, data.T, SAMPLE_RATE, subtype="FLOAT")
            row = {"path": str(wav), "title": r["title"], "artist": r["artist"], "license": r["license"],
                   "caption": f"music by {r['artist']}"}
            both.writerow(row)
            if i not in held:
                kept.writerow(row)
                continue
            mid, n = data.shape[1] // 2, int(args.query_seconds * SAMPLE_RATE)
            sf.write(args.out / "held_out" / f"held_{i:02d}.wav", data[:, mid:mid + n].T, SAMPLE_RATE, subtype="FLOAT")
            queries.append({"path": f"held_{i:02d}.wav", "prompt": row["caption"]})
    (args.out / "held_out" / "queries.json").write_text(json.dumps(queries, indent=2) + "\n")
    tracks = read_catalog(args.out / "all-tracks")  # the model trains on every track, held-out ones too
    config = demo_config(sorted({t.caption or "" for t in tracks}), segment_samples=args.segment_samples,
                         embed_dim=args.embed_dim, depth=args.depth)
    ckpt, _ = train_demo_model(tracks, args.out / "model", steps=args.steps, config=config)
    print(f"{len(rows) - len(held)} tracks in {args.out / 'catalogue'}, {len(held)} held out; model {ckpt}")


if __name__ == "__main__":
    main()
