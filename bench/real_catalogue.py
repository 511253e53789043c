"""A bounded subset of the real catalogue of bench/fetch_real_music.py, plus held-out query clips.

    python bench/fetch_real_music.py /tmp/real/fetched
    python bench/real_catalogue.py /tmp/real/fetched /tmp/real --excerpt-seconds 20 --queries 6

Writes ``OUT/catalogue`` (tracks.csv + one excerpt per track: ``--excerpt-seconds`` starting at
``--skip-seconds``, the original rate and channels) and ``OUT/queries`` (``--queries`` clips of
``--query-seconds`` taken from *later* in evenly spread tracks, so they are not in the index: the
model saw other parts of the same recording), listed in ``OUT/queries/queries.csv`` with the prompt
"music by <artist>" that ``tda demo --corpus`` trains with (``tda eval lds|counterfactual --query-audio``).
Audio stays outside the repository (GPL / CC-BY-SA).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import soundfile as sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fetched", type=Path, help="folder written by bench/fetch_real_music.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--tracks", type=int, default=0, help="first N tracks of tracks.csv (0: all)")
    ap.add_argument("--skip-seconds", type=float, default=10.0)
    ap.add_argument("--excerpt-seconds", type=float, default=20.0)
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--query-seconds", type=float, default=4.096)
    ap.add_argument("--query-offset", type=float, default=60.0, help="query start, seconds into the track")
    args = ap.parse_args()
    rows = list(csv.DictReader((args.fetched / "tracks.csv").open()))
    rows = rows[: args.tracks] if args.tracks else rows
    cat, qdir = args.out / "catalogue", args.out / "queries"
    (cat / "audio").mkdir(parents=True, exist_ok=True)
    qdir.mkdir(parents=True, exist_ok=True)
    kept = []
    for k, row in enumerate(rows):
        info = sf.info(args.fetched / row["path"])
        sr = info.samplerate
        data, _ = sf.read(args.fetched / row["path"], dtype="float32", always_2d=True,
                          start=int(args.skip_seconds * sr), frames=int(args.excerpt_seconds * sr))
        if len(data) < int(args.excerpt_seconds * sr):
            continue  # shorter than skip + excerpt
        name = f"audio/track_{k:03d}.wav"
        sf.write(cat / name, data, sr)
        kept.append({**{f: row[f] for f in ("title", "artist", "license")}, "path": name, "source": row["path"],
                     "caption": f"music by {row['artist']}"})
    with (cat / "tracks.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "title", "artist", "license", "caption", "source"])
        w.writeheader()
        w.writerows(kept)
    made, listed = 0, []
    step = max(1, len(kept) // max(1, args.queries))
    for row in kept[::step]:
        if made == args.queries:
            break
        src = args.fetched / row["source"]
        sr = sf.info(src).samplerate
        data, _ = sf.read(src, dtype="float32", always_2d=True, start=int(args.query_offset * sr),
                          frames=int(args.query_seconds * sr))
        if len(data) < int(args.query_seconds * sr):
            continue
        sf.write(qdir / f"query_{made:02d}_{Path(row['path']).stem}.wav", data, sr)
        listed.append([f"query_{made:02d}_{Path(row['path']).stem}.wav", f"music by {row['artist']}", row["artist"]])
        made += 1
    with (qdir / "queries.csv").open("w", newline="") as fh:  # `tda eval lds|counterfactual --query-audio`
        csv.writer(fh).writerows([["path", "prompt", "artist"], *listed])
    print(f"{len(kept)} tracks x {args.excerpt_seconds} s -> {cat}; {made} held-out queries -> {qdir}")


if __name__ == "__main__":
    main()
