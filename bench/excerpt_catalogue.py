"""Cut a fixed excerpt out of every track of a catalogue, keeping its credits: a CPU-sized real catalogue.

    python bench/excerpt_catalogue.py real-music/ real-excerpts/ --offset 30 --seconds 10 --sample-rate 8000

Reads SRC/tracks.csv (e.g. from ../shared/data/fetch_real_music.sh SRC), writes DST/audio/*.wav
(mono, at --sample-rate) and DST/tracks.csv with the same title, artist and licence, and a
``source`` column naming the excerpt. Tracks shorter than offset + seconds are left out. The audio is
derived from the fetched files at run time; never commit it.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import soundfile as sf

from tda_plugin import audio as audio_io
from tda_plugin.catalog import read_catalog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--offset", type=float, default=30.0, help="seconds into each track")
    ap.add_argument("--seconds", type=float, default=10.0, help="excerpt length")
    ap.add_argument("--sample-rate", type=int, default=8000)
    args = ap.parse_args()
    (args.dst / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for t in read_catalog(args.src):
        data, sr = audio_io.load(t.resolved)
        data, _ = audio_io.conform(data, sr, args.sample_rate, 1)
        start, length = int(args.offset * args.sample_rate), int(args.seconds * args.sample_rate)
        if data.shape[1] < start + length:
            continue
        out = args.dst / "audio" / f"{t.track_id:03d}.wav"
        sf.write(out, data[0, start:start + length], args.sample_rate, subtype="PCM_16")
        rows.append({"path": f"audio/{out.name}", "title": t.title, "artist": t.artist, "license": t.license,
                     "source": f"{t.path} [{args.offset:g}s, {args.offset + args.seconds:g}s)"})
    with (args.dst / "tracks.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "title", "artist", "license", "source"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} excerpts in {args.dst}")


if __name__ == "__main__":
    main()
