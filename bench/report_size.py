"""Size of the HTML report for the demo's shape and for a real model's, audio embedded vs beside the page.

    python bench/report_size.py [--music DIR]

``--music DIR``: a catalogue of real music (DIR/tracks.csv, e.g. from bench/fetch_real_music.py);
default: the demo's synthetic styles. Every shape has 4 clips, each with its top 10 segments as players
(44 players, as `tda demo` writes): the demo (8 kHz, 2.048-s clips and segments), a real model at
44.1 kHz with 10-s segments, and Stable Audio Open's 47-s windows. Clips are music excerpts plus a little
noise (generated audio is noisier than its training data), segments are excerpts; all mono.
For each shape, side by side in one run: the page with MP3 embedded (what `tda report` writes), the page
and its folder with `--audio-dir`, and the 16-bit WAV data URIs the report embedded before (computed: 2
bytes per sample, base64). Writes bench/results/report_size.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tda_plugin import audio as audio_io
from tda_plugin.catalog import read_catalog
from tda_plugin.demo.synth import STYLES, render_track
from tda_plugin.report import ClipReport, SegmentAudio, write_html_report

#: (name, sample rate, seconds per clip and per segment)
SHAPES = [("demo (8 kHz, 2.048-s segments)", 8000, 2.048), ("real model (44.1 kHz, 10-s segments)", 44100, 10.0),
          ("Stable Audio Open (44.1 kHz, 47-s windows)", 44100, 47.0)]
CLIPS, TOP = 4, 10


def _music(folder: Path | None, rate: int, seconds: float, count: int) -> list[np.ndarray]:
    """``count`` mono excerpts of ``seconds`` at ``rate``, from different tracks where there are enough."""
    n = int(round(seconds * rate))
    if folder is None:
        sources = [render_track(STYLES[k % len(STYLES)], k // len(STYLES), seconds + 1.0, rate, seed=0) for k in range(count)]
    else:
        tracks = read_catalog(folder)
        sources = []
        for k in range(count):
            data, sr = audio_io.load(Path(tracks[k % len(tracks)].resolved))
            mono, _ = audio_io.conform(data, sr, rate, 1)
            sources.append(mono[0])
    excerpts = []
    for k, source in enumerate(sources):
        start = min(len(source) // 3, max(len(source) - n, 0))  # past any intro
        excerpt = np.resize(source[start:start + n], n)  # short tracks repeat
        excerpts.append(excerpt.astype(np.float32))
    return excerpts


def _result(k: int) -> dict:
    segments = [{"rank": r + 1, "segment_id": r, "track_id": r, "path": f"audio/{r}.wav", "title": f"Track {r}",
                 "artist": f"Artist {r % 5}", "start_s": 0.0, "end_s": 1.0, "score": 1e-6 / (r + 1)} for r in range(TOP)]
    credits = [{"rank": r + 1, "track_id": r, "path": f"audio/{r}.wav", "title": f"Track {r}", "artist": f"Artist {r % 5}",
                "license": "CC-BY-4.0", "score": 1e-6 / (r + 1), "share": 0.1} for r in range(TOP)]
    artists = [{"artist": f"Artist {a}", "share": 0.2} for a in range(5)]
    return {"query": {"path": f"clips/clip_{k:02d}.wav", "prompt": f"prompt {k}"}, "model": {"adapter": "stable-audio",
            "fingerprint": "f" * 64}, "method": {"mode": "newton"}, "segments": segments, "credits": credits,
            "artists": artists, "vetoes": []}


def measure(folder: Path | None, name: str, rate: int, seconds: float, out: Path) -> dict:
    rng = np.random.default_rng(0)
    music = _music(folder, rate, seconds, CLIPS + TOP)
    clips = [ClipReport(_result(k), music[k] + 0.02 * rng.standard_normal(music[k].size).astype(np.float32), rate,
                        [SegmentAudio(r, music[CLIPS + r]) for r in range(TOP)]) for k in range(CLIPS)]
    t0 = time.perf_counter()
    embedded = write_html_report(out / "embedded.html", clips)
    seconds_embedded = time.perf_counter() - t0
    beside = write_html_report(out / "beside.html", clips, audio_dir=out / "beside_audio")
    folder_bytes = sum(p.stat().st_size for p in (out / "beside_audio").iterdir())
    players = CLIPS * (1 + TOP)
    wav_bytes = players * (44 + 2 * int(round(seconds * rate))) * 4 / 3
    audio_s = players * seconds
    size = embedded.stat().st_size
    return {"shape": name, "sample_rate": rate, "seconds_per_player": seconds, "players": players,
            "embedded_bytes": size, "embedded_kbit_per_audio_s": round(8 * size / 1000 / audio_s, 1),
            "render_s": round(seconds_embedded, 2),
            "beside_page_bytes": beside.stat().st_size, "beside_folder_bytes": folder_bytes,
            "wav_data_uri_bytes_before": int(wav_bytes), "ratio_vs_wav": round(wav_bytes / size, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--music", type=Path, help="DIR with tracks.csv of real music (default: the demo's synthetic styles)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, rate, seconds) in enumerate(SHAPES):
            work = Path(tmp) / str(k)
            work.mkdir()
            rows.append(measure(args.music, name, rate, seconds, work))
            print(json.dumps(rows[-1]), file=sys.stderr)
    doc = {"music": str(args.music) if args.music else "demo synth", "codec": f"MP3 via libsndfile {sf.__libsndfile_version__}",
           "machine": platform.platform(), "shapes": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report_size.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Report size ({doc['music']}; {doc['codec']})", "",
             "| shape | players | page, MP3 embedded | kbit/s of audio | page + folder with --audio-dir | WAV data URIs (before) | smaller by |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['players']} × {r['seconds_per_player']:g} s | {r['embedded_bytes'] / 1e6:.2f} MB | "
                     f"{r['embedded_kbit_per_audio_s']} | {r['beside_page_bytes'] / 1e3:.0f} kB + {r['beside_folder_bytes'] / 1e6:.2f} MB | "
                     f"{r['wav_data_uri_bytes_before'] / 1e6:.1f} MB | {r['ratio_vs_wav']}× |")
    (args.out / "report_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
