"""Near copies (tda_plugin/copies): detection of altered excerpts, false alarms on audio from outside the catalogue,
and what the channel costs, on the demo catalogue and on a real-music catalogue, in one run.

    python bench/fetch_real_music.py /tmp/real/fetched
    python bench/real_catalogue.py /tmp/real/fetched /tmp/real --skip-seconds 30 --excerpt-seconds 10 --queries 8
    OMP_NUM_THREADS=1 python bench/near_copies.py --real /tmp/real [--work /tmp/near-copies] [--name near-copies]

Catalogues (both indexed with the demo model shipped in adapters/stable_audio_demo_model, 64 draws, as `tda demo`):

* demo: the synthetic catalogue of `tda demo` (8 artists x 3 studies of 8 s at 8 kHz, tda_plugin/demo/synth.py);
* real: the excerpts of bench/real_catalogue.py, less one track of every artist who has two or more, held out.

Copies: from every catalogue track, ``--excerpts`` excerpts at seeded random places of each length in ``--lengths``
(default one segment of the demo model, 2.048 s, and two, 4.096 s), each altered (:data:`ALTERATIONS`): a
phase-vocoder pitch shift (librosa.effects.pitch_shift) of +-1, +-2, +-5 semitones; tape speed (resampling: pitch
and tempo together) of +-1, +-2, +-5 semitones; a time stretch of +-8 % (librosa.effects.time_stretch; both phase
vocoders with frames of about 50 ms at every rate, :func:`frame_length`); white noise at
15 dB SNR; MP3 at 128 kbit/s CBR (libsndfile's encoder, at 44.1 kHz); an 8th-order Butterworth low-pass at 3 kHz
(scipy.signal); mixed with an unrelated track from outside the catalogue, the excerpt 6 dB below it ("mix -6 dB")
and 6 dB above it ("mix +6 dB"). An excerpt is detected when the channel reports its source track.

Outside the catalogue (false alarms): every held-out study (demo: studies 4 and 5 of each of the 8 artists) and
held-out track (real), cut into excerpts of each length, as they are and under every alteration; audio of other
artists (demo: 2 styles not in it; and the other catalogue's outside audio); and, reported apart, the later passages
of the real catalogue's own recordings (bench/real_catalogue.py's queries), which may repeat what the catalogue holds.

Costs, side by side in this run: each index build with the copy stage timed inside it, and attributions of
``--clips`` copies per catalogue with the copy search timed inside them (after one warm-up attribution, whose copy
search, importing librosa's transforms, is reported apart).

Writes bench/results/NAME.json (every query's score, so the threshold can be re-set offline) and NAME.md.

Clips a model generated, checked against an index that has fingerprints (a small model may truly copy its catalogue:
each flagged clip is listed with the span it matched, to be compared by ear):

    python bench/near_copies.py --index /tmp/near-copies/demo/index --generated demo-out/clips [--generated DIR]

writes bench/results/NAME-generated.{json,md}: per clip its best-scoring track, span, transposition and score.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import shutil
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from tda_plugin import audio as audio_io
from tda_plugin.copies import build as copies_build
from tda_plugin.copies import search as copies_search
from tda_plugin.copies import verify
from tda_plugin.copies.search import CopySearch
from tda_plugin.demo.synth import STYLES, render_track, synthesise_catalogue
from tda_plugin.index.store import Index

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "adapters" / "stable_audio_demo_model"
TARGET_DETECTION = 0.95
TARGET_FALSE_ALARMS = 0.01
MP3_RATE = 44100
#: libsndfile's CBR bitrate is 32 + 288 * (1 - compression level) kbit/s at 44.1 kHz: 2/3 gives 128
MP3_LEVEL = 2 / 3

Audio = tuple[np.ndarray, int]  # mono float32, rate


# -- alterations -------------------------------------------------------------------------------------------
def tape(y: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Played faster by 2^(s/12): shorter and higher, as a tape or a record sped up."""
    speed = Fraction(2 ** (semitones / 12)).limit_denominator(1000)
    from scipy.signal import resample_poly

    return resample_poly(y, speed.denominator, speed.numerator).astype(np.float32)


def noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(len(y)).astype(np.float32)
    return (y + n * np.sqrt(np.mean(y ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))).astype(np.float32)


def lowpass(y: np.ndarray, sr: int, cutoff: float = 3000.0) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    return y if cutoff >= sr / 2 else sosfiltfilt(butter(8, cutoff, fs=sr, output="sos"), y).astype(np.float32)


def mp3(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    buf = io.BytesIO()
    sf.write(buf, np.clip(librosa.resample(y, orig_sr=sr, target_sr=MP3_RATE), -1, 1), MP3_RATE, format="MP3",
             bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32")
    return librosa.resample(z, orig_sr=MP3_RATE, target_sr=sr)[: len(y)].astype(np.float32)


def mixed(y: np.ndarray, other: np.ndarray, db: float) -> np.ndarray:
    """``y`` at ``db`` relative to ``other`` (RMS), summed, scaled down if it would clip."""
    other = other[: len(y)]
    m = y * np.sqrt(np.mean(other ** 2) / max(np.mean(y ** 2), 1e-12)) * 10 ** (db / 20) + other
    return (m / max(1.0, float(np.abs(m).max()))).astype(np.float32)


Alteration = Callable[[np.ndarray, int, int, np.random.Generator, np.ndarray], np.ndarray]


def frame_length(sr: int) -> int:
    """The phase vocoder's frame: the power of two nearest 50 ms. librosa's default of 2048 samples is 46 ms at
    44.1 kHz but 256 ms at the demo's 8 kHz, where it would smear every note of a 107-ms arpeggio."""
    return int(2 ** round(np.log2(0.05 * sr)))


def _pitch(n: int) -> Alteration:
    def f(src, sr, length, rng, other):
        import librosa

        return librosa.effects.pitch_shift(src[:length], sr=sr, n_steps=n, n_fft=frame_length(sr)).astype(np.float32)
    return f


def _tape(n: int) -> Alteration:
    return lambda src, sr, length, rng, other: tape(src[: int(np.ceil(length * 2 ** (n / 12))) + 2], sr, n)[:length]


def _stretch(rate: float) -> Alteration:
    def f(src, sr, length, rng, other):
        import librosa

        stretched = librosa.effects.time_stretch(src[: int(np.ceil(length * rate)) + 2], rate=rate, n_fft=frame_length(sr))
        return stretched[:length].astype(np.float32)
    return f


ALTERATIONS: dict[str, Alteration] = {
    "as is": lambda src, sr, length, rng, other: src[:length],
    **{f"pitch {n:+d}": _pitch(n) for n in (1, -1, 2, -2, 5, -5)},
    **{f"tape {n:+d}": _tape(n) for n in (1, -1, 2, -2, 5, -5)},
    "tempo +8 %": _stretch(1.08),
    "tempo -8 %": _stretch(0.92),
    "noise 15 dB": lambda src, sr, length, rng, other: noise(src[:length], 15.0, rng),
    "mp3 128k": lambda src, sr, length, rng, other: mp3(src[:length], sr),
    "low-pass 3 kHz": lambda src, sr, length, rng, other: lowpass(src[:length], sr),
    "mix -6 dB": lambda src, sr, length, rng, other: mixed(src[:length], other, -6.0),
    "mix +6 dB": lambda src, sr, length, rng, other: mixed(src[:length], other, 6.0),
}
#: source audio an alteration needs, as a multiple of the excerpt's length (tape -5 semitones plays 1.33x as long)
SOURCE_FACTOR = 2 ** (5 / 12) + 0.01


# -- catalogues ------------------------------------------------------------------------------------------
def mono(path: Path) -> Audio:
    data, sr = audio_io.load(path)
    return data.mean(axis=0).astype(np.float32), sr


def demo_catalogue(work: Path) -> tuple[Path, dict[str, list[tuple[str, Audio]]]]:
    """The demo catalogue, and outside audio: held-out studies of its artists, studies of two other artists."""
    corpus = work / "demo" / "catalogue"
    if not (corpus / "tracks.csv").is_file():
        synthesise_catalogue(corpus, n_artists=8, tracks_per_artist=3, seconds=8.0, sample_rate=8000, seed=0)
    same = [(f"{s.name} study {k + 1}", (render_track(s, k, 8.0, 8000, 0), 8000)) for s in STYLES[:8] for k in (3, 4)]
    other = [(f"{s.name} study {k + 1}", (render_track(s, k, 8.0, 8000, 0), 8000)) for s in STYLES[8:] for k in range(3)]
    return corpus, {"held-out studies (same artists)": same, "other artists (synthetic)": other}


def real_catalogue(real: Path, work: Path) -> tuple[Path, dict[str, list[tuple[str, Audio]]]]:
    """The real catalogue less one track of every artist with two or more (held out), and the outside audio."""
    rows = list(csv.DictReader((real / "catalogue" / "tracks.csv").open()))
    count: dict[str, int] = {}
    for r in rows:
        count[r["artist"]] = count.get(r["artist"], 0) + 1
    held, kept, seen = [], [], set()
    for r in rows:
        if count[r["artist"]] > 1 and r["artist"] not in seen:
            seen.add(r["artist"])
            held.append(r)
        else:
            kept.append(r)
    corpus = work / "real" / "catalogue"
    corpus.mkdir(parents=True, exist_ok=True)
    with (corpus / "tracks.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "title", "artist", "license", "caption"])
        w.writeheader()
        for r in kept:
            w.writerow({"path": str((real / "catalogue" / r["path"]).resolve()), "title": r["title"], "artist": r["artist"],
                        "license": r["license"], "caption": r["caption"]})
    outside = {"held-out tracks (same artists)": [(f"{r['artist']}: {r['title']}", mono(real / "catalogue" / r["path"]))
                                                  for r in held]}
    later = [(p.name, mono(p)) for p in sorted((real / "queries").glob("*.wav"))]
    return corpus, {**outside, "same recordings, a later passage (not counted)": later}


# -- index build, timed ----------------------------------------------------------------------------------
class Timer:
    """Seconds spent inside the wrapped functions (patched onto their modules for one run)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        return timed


def build(corpus: Path, out: Path) -> dict[str, float]:
    """Build the index of ``corpus`` from scratch with the demo model; the copy stage's share timed inside."""
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index.builder import build_index
    from tda_plugin.settings import IndexSettings

    ckpt, cfg = MODEL / "model.safetensors", MODEL / "model_config.json"
    adapter = load(ckpt, model_config=cfg)
    shutil.rmtree(out, ignore_errors=True)  # from scratch: a resumed build would skip the stages it times
    timer = Timer()
    saved = copies_build.build_shards, copies_build.finalize
    copies_build.build_shards, copies_build.finalize = timer.wrap(saved[0]), timer.wrap(saved[1])
    try:
        t = time.perf_counter()
        build_index(corpus, out, adapter, checkpoint=ckpt, model_config=cfg, settings=IndexSettings(), overwrite=True)
        total = time.perf_counter() - t
    finally:
        copies_build.build_shards, copies_build.finalize = saved
    return {"build_s": round(total, 2), "copies_s": round(timer.seconds, 2),
            "overhead": round(timer.seconds / (total - timer.seconds), 4)}


# -- queries -----------------------------------------------------------------------------------------------
def best(search: CopySearch, audio: np.ndarray, sr: int, track_id: int | None = None) -> dict[str, Any]:
    """The top entry (and, with ``track_id``, the source track's) of the copy search of one query."""
    entries = search.scored(audio, sr)
    top = entries[0] if entries else None
    mine = next((e for e in entries if e["track_id"] == track_id), None) if track_id is not None else None
    keep = ("track_id", "score", "transposition_semitones", "tempo_ratio", "similarity", "start_s", "query_start_s")
    return {"top": {k: top[k] for k in keep} if top else None, "source": {k: mine[k] for k in keep} if mine else None}


def copies(search: CopySearch, index: Index, lengths: list[float], excerpts: int, others: list[Audio],
           rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for track_id, track in sorted(index.tracks.items()):
        src, sr = mono(Path(track.resolved))
        for length_s in lengths:
            n = int(round(length_s * sr))
            if len(src) < n * SOURCE_FACTOR:
                continue
            for e in range(excerpts):
                start = int(rng.integers(0, len(src) - int(n * SOURCE_FACTOR)))
                for name, alter in ALTERATIONS.items():
                    o, osr = others[int(rng.integers(len(others)))]
                    other = _excerpt(o, osr, sr, n, rng)
                    query = alter(src[start:], sr, n, rng, other)
                    rows.append({"track_id": track_id, "length_s": length_s, "excerpt": e, "alteration": name,
                                 "start_s": round(start / sr, 3), **best(search, query, sr, track_id)})
            print(f"  track {track_id} ({track.title}) done", flush=True)
    return rows


def _excerpt(y: np.ndarray, sr: int, to_sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of ``n`` samples (at ``to_sr``) of ``y`` (looped if shorter)."""
    if sr != to_sr:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=to_sr)
    y = np.tile(y, -(-n // len(y)) + 1)
    start = int(rng.integers(0, len(y) - n))
    return y[start:start + n]


def outside(search: CopySearch, sets: dict[str, list[tuple[str, Audio]]], lengths: list[float],
            rng: np.random.Generator, altered: bool, others: list[Audio]) -> list[dict[str, Any]]:
    """Every outside clip cut into excerpts of each length (no overlap), as is; with ``altered``, one excerpt per clip
    and length under every alteration."""
    rows = []
    for group, clips in sets.items():
        for name, (y, sr) in clips:
            for length_s in lengths:
                n = int(round(length_s * sr))
                for start in range(0, len(y) - n + 1, n):
                    rows.append({"set": group, "clip": name, "length_s": length_s, "alteration": "as is",
                                 "start_s": round(start / sr, 3), **best(search, y[start:start + n], sr)})
                if altered and len(y) >= n * SOURCE_FACTOR:
                    start = int(rng.integers(0, len(y) - int(n * SOURCE_FACTOR) + 1))
                    for alt, alter in ALTERATIONS.items():
                        if alt == "as is":
                            continue
                        o, osr = others[int(rng.integers(len(others)))]
                        query = alter(y[start:], sr, n, rng, _excerpt(o, osr, sr, n, rng))
                        rows.append({"set": group, "clip": name, "length_s": length_s, "alteration": alt,
                                     "start_s": round(start / sr, 3), **best(search, query, sr)})
            print(f"  outside: {name} done", flush=True)
    return rows


# -- attribution cost --------------------------------------------------------------------------------------
def attribution_cost(index_dir: Path, queries: list[Audio]) -> dict[str, Any]:
    """Attribute each query with the default settings, the copy search timed inside; one warm-up first."""
    from tda_plugin.attributor import Attributor

    att = Attributor.from_index(index_dir)
    timer = Timer()
    saved = CopySearch.find
    CopySearch.find = timer.wrap(saved)  # type: ignore[method-assign]
    clips = []
    try:
        for k, (y, sr) in enumerate(queries):
            before = timer.seconds
            t = time.perf_counter()
            att.attribute(y, sr, prompt=None)
            total = time.perf_counter() - t
            clips.append({"total_s": round(total, 3), "copies_s": round(timer.seconds - before, 3), "warm_up": k == 0})
    finally:
        CopySearch.find = saved  # type: ignore[method-assign]
    timed = [c for c in clips if not c["warm_up"]]
    total, copy = sum(c["total_s"] for c in timed), sum(c["copies_s"] for c in timed)
    return {"clips": clips, "mean_total_s": round(total / len(timed), 3), "mean_copies_s": round(copy / len(timed), 3),
            "overhead": round(copy / (total - copy), 4)}


# -- summary -------------------------------------------------------------------------------------------------
def detection_table(rows: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (alt, length) in dict.fromkeys((r["alteration"], r["length_s"]) for r in rows):
        mine = [r for r in rows if r["alteration"] == alt and r["length_s"] == length]
        hits = [r for r in mine if r["source"] and r["source"]["score"] >= threshold]
        out.setdefault(alt, {})[str(length)] = {
            "queries": len(mine), "detected": len(hits), "rate": round(len(hits) / len(mine), 4),
            "first": sum(1 for r in mine if r["top"] and r["top"]["track_id"] == r["track_id"] and r["top"]["score"] >= threshold),
            "transposition_right": sum(1 for r in hits if r["source"]["transposition_semitones"] == _shift(alt)),
            "tempo_ratio_median": float(np.median([r["source"]["tempo_ratio"] for r in hits])) if hits else None}
    return out


def _shift(alteration: str) -> int:
    kind, _, value = alteration.partition(" ")
    return int(value) if kind in ("pitch", "tape") else 0


def false_alarms(rows: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group in dict.fromkeys(r["set"] for r in rows):
        for plain in (True, False):
            mine = [r for r in rows if r["set"] == group and (r["alteration"] == "as is") == plain]
            if not mine:
                continue
            alarms = [r for r in mine if r["top"] and r["top"]["score"] >= threshold]
            out[f"{group}, {'as is' if plain else 'altered'}"] = {
                "queries": len(mine), "alarms": len(alarms), "rate": round(len(alarms) / len(mine), 4),
                "clips_alarmed": sorted({r["clip"] for r in alarms})}
    return out


def threshold_for(scores: list[float], rate: float) -> float:
    """The smallest threshold (to 0.1) that at most ``rate`` of ``scores`` reach."""
    s = np.sort(np.asarray(scores))[::-1]
    allowed = int(np.floor(rate * len(s)))
    return float(np.floor(s[allowed] * 10 + 1) / 10) if len(s) > allowed else 0.0


#: outside sets the threshold is calibrated on: not the later passages of catalogue recordings (they may repeat
#: what the catalogue holds), and not the demo's held-out studies, whose melodies walk the same few notes from the
#: same tonic on the same beat as the catalogue's studies and so repeat catalogue passages note for note
def counted(group: str) -> bool:
    return not group.startswith(("same recordings", "held-out studies"))


def calibration(raw: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, keep in (("counted", counted), ("demo held-out studies", lambda g: g.startswith("held-out studies"))):
        scores = [r["top"]["score"] if r["top"] else 0.0 for cat in raw for r in raw[cat]["outside"] if keep(r["set"])]
        out[name] = {"queries": len(scores), "max": round(max(scores), 2), "p99": round(float(np.quantile(scores, 0.99)), 2),
                     "at_1_percent": threshold_for(scores, TARGET_FALSE_ALARMS)}
    return out


def summarise(doc: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The tables at the code's threshold (verify.Z_MIN) from every query's recorded scores."""
    doc = {**doc, "threshold": verify.Z_MIN, "calibration": calibration(raw)}
    for cat in raw:
        doc["catalogues"][cat]["detection"] = detection_table(raw[cat]["copies"], verify.Z_MIN)
        doc["catalogues"][cat]["false_alarms"] = false_alarms(raw[cat]["outside"], verify.Z_MIN)
    return doc


def markdown(doc: dict[str, Any]) -> str:
    z = doc["threshold"]
    lines = [f"# Near copies: {doc['name']}", "", f"Threshold (verify.Z_MIN): **{z}**; MP3 at {doc['mp3_kbit_s']} kbit/s; "
             f"seed {doc['seed']}; {doc['machine']}; {doc['wall_s']} s.", ""]
    for cat, d in doc["catalogues"].items():
        lines += [f"## {cat}: {d['tracks']} tracks, {d['segments']} segments", "",
                  f"Index build {d['build']['build_s']} s, of which the copy stage {d['build']['copies_s']} s: "
                  f"**+{100 * d['build']['overhead']:.1f} %**. Attribution (mean of {len(d['attribution']['clips']) - 1} clips "
                  f"after a warm-up): {d['attribution']['mean_total_s']} s, of which the copy search "
                  f"{d['attribution']['mean_copies_s']} s: **+{100 * d['attribution']['overhead']:.1f} %** "
                  f"(warm-up clip's copy search: {d['attribution']['clips'][0]['copies_s']} s).", "",
                  "| alteration | " + " | ".join(f"detected, {l} s" for l in doc["lengths"]) + " | transposition right | tempo ratio (median) |",
                  "|---|" + "---|" * (len(doc["lengths"]) + 2)]
        for alt, by_len in d["detection"].items():
            cells = [f"{v['detected']}/{v['queries']} ({100 * v['rate']:.0f} %)" for v in by_len.values()]
            right = sum(v["transposition_right"] for v in by_len.values())
            found = sum(v["detected"] for v in by_len.values())
            ratios = [v["tempo_ratio_median"] for v in by_len.values() if v["tempo_ratio_median"] is not None]
            lines.append(f"| {alt} | " + " | ".join(cells) + f" | {right}/{found} | {', '.join(f'{r:.3f}' for r in ratios)} |")
        lines += ["", "| outside the catalogue | queries | false alarms |", "|---|---|---|"]
        for group, v in d["false_alarms"].items():
            who = f" ({', '.join(v['clips_alarmed'][:6])}{', ...' if len(v['clips_alarmed']) > 6 else ''})" if v["alarms"] else ""
            lines.append(f"| {group} | {v['queries']} | {v['alarms']} ({100 * v['rate']:.1f} %){who} |")
        lines.append("")
    lines += ["## Threshold", ""]
    for name, c in doc["calibration"].items():
        lines.append(f"* {name}: {c['queries']} outside queries (both catalogues, every length, as is and altered); "
                     f"largest score {c['max']}, 99th percentile {c['p99']}; the threshold that at most 1 % of them reach: "
                     f"{c['at_1_percent']}.")
    return "\n".join(lines) + "\n"


def mp3_bitrate() -> float:
    """kbit/s of 10 s of noise through :func:`mp3`'s encoder settings (what the 'mp3 128k' alteration gets)."""
    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(0).uniform(-0.3, 0.3, 10 * MP3_RATE).astype(np.float32), MP3_RATE, format="MP3",
             bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)
    return round(len(buf.getvalue()) * 8 / 10 / 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=Path, help="OUT of bench/real_catalogue.py (catalogue/ and queries/)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/near-copies"))
    ap.add_argument("--lengths", default="2.048,4.096", help="excerpt lengths in seconds (the demo model's segment is 2.048)")
    ap.add_argument("--excerpts", type=int, default=2, help="excerpts per catalogue track and length")
    ap.add_argument("--clips", type=int, default=5, help="attributions timed per catalogue (the first is a warm-up)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="near-copies")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--summary", type=Path, help="only redo the tables of this run's JSON at the code's threshold")
    ap.add_argument("--index", type=Path, help="with --generated: an index with fingerprints")
    ap.add_argument("--generated", type=Path, action="append", default=[], help="a folder of generated clips (repeat)")
    args = ap.parse_args()
    if args.generated:
        if args.index is None:
            ap.error("--generated needs --index")
        generated(args.index, args.generated, args.name, args.out)
        return
    if args.summary:
        saved = json.loads(args.summary.read_text())
        raw = saved.pop("queries")
        write(summarise(saved, raw), raw, args.out)
        return
    if args.real is None:
        ap.error("--real is required (or --summary)")
    t0 = time.monotonic()
    torch.manual_seed(args.seed)
    lengths = [float(x) for x in args.lengths.split(",")]
    demo_corpus, demo_out = demo_catalogue(args.work)
    real_corpus, real_out = real_catalogue(args.real, args.work)
    cross = {"demo": {"other artists (real music)": real_out["held-out tracks (same artists)"]},
             "real": {"other artists (synthetic)": [(f"{s.name} study {k + 1}", (render_track(s, k, 8.0, 8000, 0), 8000))
                                                      for s in STYLES for k in (3, 4)]}}
    doc: dict[str, Any] = {"name": args.name, "lengths": lengths, "excerpts": args.excerpts, "seed": args.seed,
                           "mp3_kbit_s": mp3_bitrate(),
                           "search": {"piece_s": copies_search.PIECE_S, "top_tracks": copies_search.TOP_TRACKS},
                           "catalogues": {}}
    raw: dict[str, Any] = {}
    for cat, corpus, sets in (("demo", demo_corpus, demo_out), ("real", real_corpus, real_out)):
        rng = np.random.default_rng(args.seed)
        idx_dir = args.work / cat / "index"
        print(f"{cat}: building the index", flush=True)
        cost = build(corpus, idx_dir)
        index = Index(idx_dir)
        search = CopySearch(index)
        others = [a for _, a in sets[next(k for k in sets if k.startswith("held-out"))]]
        sets = {**sets, **cross[cat]}
        print(f"{cat}: copies", flush=True)
        copy_rows = copies(search, index, lengths, args.excerpts, others, rng)
        print(f"{cat}: outside", flush=True)
        out_rows = outside(search, sets, lengths, rng, altered=True, others=others)
        clip_rng = np.random.default_rng(args.seed + 1)
        queries = []
        for track_id in clip_rng.choice(sorted(index.tracks), args.clips, replace=False):
            y, sr = mono(Path(index.tracks[int(track_id)].resolved))
            n = int(round(lengths[0] * sr))
            queries.append((ALTERATIONS["pitch +2"](y[int(clip_rng.integers(0, len(y) - 2 * n)):], sr, n, clip_rng, y), sr))
        print(f"{cat}: attribution cost", flush=True)
        raw[cat] = {"copies": copy_rows, "outside": out_rows}
        doc["catalogues"][cat] = {"tracks": len(index.tracks), "segments": len(index.segments), "build": cost,
                                  "attribution": attribution_cost(idx_dir, queries)}
    doc["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    write(summarise(doc, raw), raw, args.out)


def generated(index_dir: Path, folders: list[Path], name: str, out: Path) -> None:
    """Every WAV/FLAC clip of ``folders`` searched for near copies; each clip's best candidate, flagged or not."""
    search = CopySearch(Index(index_dir))
    if search.note:
        raise SystemExit(f"{index_dir}: {search.note}")
    keep = ("track_id", "title", "artist", "score", "transposition_semitones", "tempo_ratio", "similarity", "start_s",
            "end_s", "query_start_s", "query_end_s")
    rows = []
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac")):
            y, sr = audio_io.load(path)
            entries = search.scored(y, sr)
            top = {k: entries[0][k] for k in keep} if entries else None
            rows.append({"folder": str(folder), "clip": path.name, "best": top,
                         "flagged": bool(top and top["score"] >= verify.Z_MIN)})
    doc = {"name": name, "index": str(index_dir), "threshold": verify.Z_MIN, "clips": rows,
           "flagged": sum(r["flagged"] for r in rows)}
    lines = [f"# Near copies in generated clips: {name}", "", f"Index {index_dir}; threshold {verify.Z_MIN}; "
             f"**{doc['flagged']} of {len(rows)} clips flagged**.", "",
             "| folder | clip | flagged | best track | score | transposition | tempo ratio | clip span = track span |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["best"]
        lines.append(f"| {Path(r['folder']).name} | {r['clip']} | {'yes' if r['flagged'] else 'no'} | "
                     + (f"{b['title']} | {b['score']} | {b['transposition_semitones']:+d} | {b['tempo_ratio']} | "
                        f"{b['query_start_s']}–{b['query_end_s']} s = {b['start_s']}–{b['end_s']} s |" if b else "– | – | – | – | – |"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-generated.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{name}-generated.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write(doc: dict[str, Any], raw: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{doc['name']}.json").write_text(json.dumps({**doc, "queries": raw}, indent=1) + "\n")
    (out / f"{doc['name']}.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
