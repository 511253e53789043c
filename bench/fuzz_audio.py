"""Fuzz `tda attribute` with 500+ malformed audio files: no traceback, no hang, each one a one-line error or a
correct result (docs/reliability.md).

    python bench/fuzz_audio.py [--seed 0] [--work /tmp/tda-fuzz]

Inputs (seeded, written to WORK/inputs): every format libsndfile writes, truncated at random points and
with random bytes flipped; random bytes, bare and behind real magic numbers; WAV headers with absurd sample
rates, channel counts, sample sizes and format tags; NaN and ±Inf samples; headers declaring enormous
durations (WAV, RF64, W64, AIFF, AU); clips far above full scale, DC, silence and a single sample. All of
them go to one `tda attribute FILE... --json` call (one model load, as a user would run it), which must end
with exit 0 or 3, no traceback, and one status per file; then each file's decode-and-check time is measured
alone. Writes bench/results/fuzz_audio.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from reliability_common import BUILD_ARGS, env, machine, make_project, run, tda, write_results

SR = 8000
#: (format, subtype, extension, sample rate) of every writable container
FORMATS = [("WAV", "PCM_16", "wav", SR), ("WAV", "FLOAT", "wav", SR), ("WAVEX", "PCM_24", "wav", SR),
           ("FLAC", "PCM_16", "flac", SR), ("OGG", "VORBIS", "ogg", SR), ("OGG", "OPUS", "opus", 48000),
           ("MP3", "MPEG_LAYER_III", "mp3", SR), ("AIFF", "PCM_16", "aiff", SR), ("AIFF", "FLOAT", "aiff", SR),
           ("AU", "PCM_16", "au", SR), ("CAF", "PCM_16", "caf", SR), ("W64", "PCM_16", "w64", SR),
           ("RF64", "PCM_16", "rf64", SR), ("IRCAM", "PCM_16", "sf", SR), ("NIST", "PCM_16", "nist", SR),
           ("VOC", "PCM_16", "voc", SR), ("MAT5", "FLOAT", "mat", SR), ("PAF", "PCM_16", "paf", SR),
           ("SVX", "PCM_16", "svx", SR), ("SDS", "PCM_16", "sds", SR), ("AVR", "PCM_16", "avr", SR),
           ("HTK", "PCM_16", "htk", SR), ("MPC2K", "PCM_16", "mpc", 44100), ("PVF", "PCM_16", "pvf", SR),
           ("XI", "DPCM_16", "xi", 44100), ("WVE", "ALAW", "wve", 8000), ("SD2", "PCM_16", "sd2", SR)]
MAGIC = [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS\x00\x02", b"ID3\x04\x00", b"FORM\x00\x00\x00\x00AIFF",
         b".snd", b"caff\x00\x01", b"RF64\xff\xff\xff\xffWAVEds64", b"\xff\xfb\x90"]


def tone(seconds: float = 2.0, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def pcm16_wav(rate: int = SR, channels: int = 1, seconds: float = 2.0) -> bytearray:
    """A valid 16-bit WAV as bytes (44-byte header): the base of the header mutations."""
    data = (tone(seconds, rate, channels) * 32767).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, channels, rate,
                         rate * channels * 2, channels * 2, 16, b"data", len(data))
    return bytearray(header + data)


def make_inputs(out: Path, rng: random.Random) -> dict[str, str]:
    """Write the fuzz inputs; returns {file name: category}."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    made: dict[str, str] = {}

    def put(name: str, data: bytes, category: str) -> None:
        (out / name).write_bytes(bytes(data))
        made[name] = category

    valid: list[tuple[str, bytes]] = []
    for fmt, subtype, ext, rate in FORMATS:
        path = out / f"valid-{fmt}-{subtype}.{ext}"
        try:
            sf.write(path, tone(2.0, rate), rate, format=fmt, subtype=subtype)
        except Exception:  # a container this libsndfile cannot write after all
            path.unlink(missing_ok=True)
            continue
        made[path.name] = "valid"
        valid.append((f"{fmt}-{subtype}.{ext}", path.read_bytes()))
    for name, data in valid:  # truncated at random points, the header's first bytes included
        cuts = sorted({0, 1, 4, 12, 44, len(data) - 1, *(rng.randrange(1, len(data)) for _ in range(5))})
        for cut in cuts[:10]:
            put(f"trunc{cut}-{name}", data[:cut], "truncated")
    for name, data in valid:  # random bytes flipped
        for k in range(4):
            b = bytearray(data)
            for _ in range(rng.choice([1, 3, 20])):
                b[rng.randrange(len(b)) if k % 2 else rng.randrange(min(64, len(b)))] ^= 1 << rng.randrange(8)
            put(f"flip{k}-{name}", b, "bytes flipped")
    exts = sorted({ext for *_, ext, _ in FORMATS})
    for k in range(60):
        put(f"random{k}.{rng.choice(exts)}", rng.randbytes(rng.choice([0, 1, 7, 100, 4096, 20000])), "random bytes")
    for k in range(30):
        put(f"magic{k}.{rng.choice(exts)}", rng.choice(MAGIC) + rng.randbytes(rng.choice([0, 40, 2000])), "magic + random")
    base = pcm16_wav()
    for field, offset, fmt, values in [("rate", 24, "<I", [0, 1, 7, 999, 768001, 2 ** 31 - 1, 2 ** 32 - 1]),
                                       ("channels", 22, "<H", [0, 3, 64, 65, 1024, 65535]),
                                       ("bits", 34, "<H", [0, 1, 7, 12, 64, 65535]),
                                       ("blockalign", 32, "<H", [0, 3, 65535]), ("byterate", 28, "<I", [0, 2 ** 32 - 1]),
                                       ("formattag", 20, "<H", [0, 2, 3, 0x55, 0xFFFE, 0xFFFF])]:
        for v in values:
            b = bytearray(base)
            b[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, v)
            put(f"header-{field}-{v}.wav", b, "absurd header field")
    for k, (fmt, subtype, ext) in enumerate([("WAV", "FLOAT", "wav"), ("WAV", "DOUBLE", "wav"), ("AIFF", "FLOAT", "aiff"),
                                             ("AU", "FLOAT", "au"), ("CAF", "DOUBLE", "caf"), ("W64", "FLOAT", "w64")]):
        for j, how in enumerate(["one nan", "one inf", "one -inf", "all nan", "nan burst"]):
            x = tone()
            if how == "all nan":
                x[:] = np.nan
            elif how == "nan burst":
                x[rng.randrange(len(x) - 500):][:500] = np.nan
            else:
                x[rng.randrange(len(x))] = {"one nan": np.nan, "one inf": np.inf, "one -inf": -np.inf}[how]
            path = out / f"nonfinite-{how.replace(' ', '_')}-{fmt}-{subtype}.{ext}"
            sf.write(path, x, SR, format=fmt, subtype=subtype)
            made[path.name] = "NaN / Inf"
    for size in (0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000000):  # enormous declared durations
        b = bytearray(base)
        b[40:44] = struct.pack("<I", size)
        put(f"huge-wav-data-{size:x}.wav", b, "enormous declared duration")
        b[4:8] = struct.pack("<I", size)
        put(f"huge-wav-riff-{size:x}.wav", b, "enormous declared duration")
    for name, data in valid:
        if name.startswith(("RF64", "W64", "AIFF-PCM", "AU")):
            for k, value in enumerate([2 ** 62, 2 ** 40, 2 ** 32 + 5]):
                b = bytearray(data)
                if name.startswith("RF64"):  # ds64: riff size, data size, sample count (64 bit each) at 20
                    b[28:36] = struct.pack("<Q", value)
                    b[36:44] = struct.pack("<Q", value // 2)
                elif name.startswith("W64"):  # the data chunk's 64-bit size follows its 16-byte GUID
                    at = bytes(b).find(bytes.fromhex("64617461f3acd3118cd100c04f8edb8a"))
                    b[at + 16:at + 24] = struct.pack("<Q", value)
                elif name.startswith("AIFF"):  # COMM: numSampleFrames (32 bit)
                    at = bytes(b).find(b"COMM")
                    b[at + 10:at + 14] = struct.pack(">I", value & 0xFFFFFFFF or 0xFFFFFFFF)
                else:  # AU: data size (32 bit) at 8
                    b[8:12] = struct.pack(">I", value & 0xFFFFFFFF or 0xFFFFFFFE)
                put(f"huge{k}-{name}", b, "enormous declared duration")
    levels = {"loud-1e6": tone() * 1e6, "hot-1.5": tone() * 3.75, "dc": np.full((2 * SR, 1), 0.3, np.float32),
              "zeros": np.zeros((2 * SR, 1), np.float32), "tiny-noise": np.float32(1e-9) * np.sin(np.arange(2 * SR))[:, None],
              "one-sample": tone()[:1], "ten-samples": tone()[:10], "int16-scale": tone() * 32767}
    for name, x in levels.items():
        path = out / f"level-{name}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
        made[path.name] = "levels and lengths"
    for channels in (2, 8, 64):
        path = out / f"channels-{channels}.wav"
        sf.write(path, tone(1.2, SR, channels), SR, subtype="PCM_16")
        made[path.name] = "many channels"
    for rate in (1000, 11025, 96000, 384000):
        path = out / f"rate-{rate}.wav"
        sf.write(path, tone(1.2, rate), rate, subtype="PCM_16")
        made[path.name] = "unusual sample rate"
    return made


def check_times(files: list[Path], sample_rate: int, segment_samples: int) -> list[float]:
    """Decode-and-check time per file, alone (what `tda attribute` does to each before the model loads)."""
    from tda_plugin.cli.inputs import Clip, check

    times = []
    for path in files:
        t0 = time.perf_counter()
        check(Clip(path), sample_rate, segment_samples)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tda-fuzz"))
    parser.add_argument("--timeout", type=float, default=5400)
    args = parser.parse_args()
    catalogue, ckpt = make_project(args.work)
    idx = args.work / "idx"
    if not (idx / "index.json").is_file() or b'"complete": true' not in (idx / "index.json").read_bytes():
        assert run("index", "build", catalogue, "--out", idx, "--ckpt", ckpt, *BUILD_ARGS).returncode == 0
    made = make_inputs(args.work / "inputs", random.Random(args.seed))
    files = [args.work / "inputs" / name for name in sorted(made)]
    out = args.work / "results.json"
    t0 = time.monotonic()
    try:
        done = subprocess.run(tda("attribute", *files, "--index", idx, "--prompt", "low hum", "--unlearn-draws", "2",
                                  "--candidates", "8", "--sink", "none", "--json", out),
                              capture_output=True, text=True, env=env(), timeout=args.timeout)
        rc, stderr, hung = done.returncode, done.stderr, False
    except subprocess.TimeoutExpired as exc:
        rc, stderr, hung = None, (exc.stderr or b"").decode(errors="replace"), True
    wall = time.monotonic() - t0
    docs = json.loads(out.read_text()) if out.is_file() else []
    by_path = {Path(d["query"]["path"]).name: d for d in docs}
    statuses = collections.Counter()
    per_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    bad_messages = []
    for name, category in made.items():
        doc = by_path.get(name)
        status = doc["status"] if doc else "missing"
        statuses[status] += 1
        per_category[category][status] += 1
        if doc and status == "error" and ("\n" in doc["error"] or not doc["error"]):
            bad_messages.append(name)
    meta = json.loads((idx / "index.json").read_text())
    times = check_times(files, meta["sample_rate"], meta["segment_samples"])
    slowest = sorted(zip(times, (f.name for f in files)), reverse=True)[:5]
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    doc = {"machine": machine(), "inputs": len(made), "exit": rc, "hung": hung, "wall_s": round(wall, 1),
           "traceback": "Traceback" in stderr, "statuses": dict(statuses),
           "per_category": {c: dict(v) for c, v in per_category.items()}, "multi_line_or_empty_errors": bad_messages,
           "error_lines_on_stderr": len(error_lines), "check_s_max": round(max(times), 3),
           "check_s_median": round(float(np.median(times)), 4), "slowest_checks": [[round(t, 3), n] for t, n in slowest],
           "error_examples": sorted({d["error"].split(": ", 1)[-1][:90] for d in docs if d["status"] == "error"})[:40],
           "stderr_tail": stderr[-3000:] if rc not in (0, 3) else ""}
    rows = "\n".join(f"| {c} | {sum(v.values())} | {v.get('ok', 0)} | {v.get('error', 0)} | {v.get('missing', 0)} |"
                     for c, v in sorted(per_category.items()))
    md = (f"# Fuzzing `tda attribute` with {len(made)} malformed inputs\n\n"
          f"One call, `tda attribute FILE... --json` ({wall:.0f} s): exit {rc}, hung: {hung}, traceback: {doc['traceback']}; "
          f"{statuses.get('ok', 0)} attributed, {statuses.get('error', 0)} refused with a one-line error "
          f"({len(error_lines)} error lines on stderr, {len(bad_messages)} multi-line or empty), "
          f"{statuses.get('missing', 0)} without a status. Decode-and-check per file: median {doc['check_s_median']} s, "
          f"max {doc['check_s_max']} s ({slowest[0][1]}).\n\n"
          "| category | files | attributed | one-line error | no status |\n|---|---|---|---|---|\n" + rows)
    write_results("fuzz_audio", doc, md)


if __name__ == "__main__":
    main()
