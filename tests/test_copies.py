"""Near copies (tda_plugin/copies): invariant fingerprints, planted copies found through an index, the result's JSON,
the report's section, the sinks, and an index built before fingerprints existed."""
from __future__ import annotations

import io
import json
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from tda_plugin.attributor import Attributor
from tda_plugin.copies import build, verify
from tda_plugin.copies import fingerprint as fp
from tda_plugin.copies.search import NO_FINGERPRINTS, CopySearch
from tda_plugin.copies.view import copies_table, tag_lines
from tda_plugin.index.store import Index
from tda_plugin.settings import AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.sinks import SinkOptions, write_credits

from .conftest import SR, build_tiny

SMALL = AttributeSettings(UnlearnSettings(unlearn_draws=2, alpha=1e-7), candidates="all", top=4)


def melody(rng: np.random.Generator, notes: int, rate: int = SR) -> np.ndarray:
    """Decaying harmonic notes of random pitch (G3-G#5) and random length (0.12-0.35 s): a line no other draw repeats."""
    out = []
    for midi, seconds in zip(rng.integers(55, 81, notes), rng.choice([0.12, 0.18, 0.25, 0.35], notes)):
        t = np.arange(int(seconds * rate)) / rate
        f = 440.0 * 2 ** ((midi - 69) / 12)
        tone = sum(a * np.sin(2 * np.pi * k * f * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
        out.append(tone * np.minimum(1.0, t / 0.005) * np.exp(-5 * t))
    return (0.3 * np.concatenate(out)).astype(np.float32)


def tape(y: np.ndarray, semitones: int) -> np.ndarray:
    """Played 2^(s/12) times as fast: higher and shorter together."""
    from scipy.signal import resample_poly

    return resample_poly(y, 1000, int(round(1000 * 2 ** (semitones / 12)))).astype(np.float32)


def test_a_transposed_and_stretched_melody_is_recovered() -> None:
    import librosa

    rate = 22050
    rng = np.random.default_rng(1)
    source = melody(rng, 20, rate)
    copy = librosa.effects.time_stretch(librosa.effects.pitch_shift(source, sr=rate, n_steps=3), rate=1.08)
    cf, cb, n = fp.analyse(source, rate)
    qf, qb, q_frames = fp.analyse(copy, rate)
    found = verify.align(qf, qb, q_frames, cf, cb, 0, n)
    assert found is not None and found.shift == 3 and found.ratio == pytest.approx(1.08, abs=0.015)
    assert found.offset <= 2 and found.length == pytest.approx(n, abs=4)  # the whole melody, from its start
    other = melody(rng, 20, rate)
    of, ob, o_frames = fp.analyse(other, rate)
    stranger = verify.align(of, ob, o_frames, cf, cb, 0, n)
    assert stranger is None or stranger.score < found.score - 3


def test_triplets_do_not_change_with_key_or_tempo() -> None:
    f = np.array([0, 4, 10, 12, 20])
    b = np.array([30, 34, 28, 37, 31])
    base = fp.triplets(f, b)
    moved = fp.triplets(f * 3 // 2 + 7, b + 5)  # two-thirds as fast, a fourth up, later
    assert len(base) == 10 and np.array_equal(base.vectors(), moved.vectors())
    assert np.array_equal(moved.frame, base.frame * 3 // 2 + 7) and np.array_equal(moved.bin, base.bin + 5)
    ids = build.triplet_id(np.array([3]), np.array([17]), np.array([40]), np.array([31]))
    assert [int(x[0]) for x in build.unpack(ids)] == [3, 17, 40, 31]


@pytest.fixture(scope="module")
def melodies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue of four 5-s melodies (tiny model's rate), each track its own line."""
    root = tmp_path_factory.mktemp("melodies")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    rows = ["path,title,artist,license,caption"]
    for k in range(4):
        sf.write(str(root / "audio" / f"m{k}.wav"), melody(rng, 24)[: 5 * SR], SR)
        rows.append(f"audio/m{k}.wav,Melody {k},Artist {k % 2},CC-BY-4.0,low hum")
    (root / "tracks.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def melody_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, Path], melodies: Path) -> Path:
    return build_tiny(melodies, tmp_path_factory.mktemp("melody-index") / "idx", tiny_model,
                      IndexSettings(draws=1, fisher_segments=2, shard_size=4))


def _track(melodies: Path, k: int) -> np.ndarray:
    return sf.read(str(melodies / "audio" / f"m{k}.wav"), dtype="float32")[0]


def test_a_planted_tape_copy_is_found_with_how_and_where(melody_index: Path, melodies: Path) -> None:
    search = CopySearch(Index(melody_index))
    source = _track(melodies, 2)[SR: int(3.9 * SR)]  # 1.0-3.9 s of track 2
    found = search.find(tape(source, 2), SR)          # 2 semitones up, 1.12x as fast: 2.6 s
    assert [c["track_id"] for c in found] == [2]
    copy = found[0]
    assert copy["transposition_semitones"] == 2 and copy["tempo_ratio"] == pytest.approx(2 ** (2 / 12), abs=0.02)
    assert copy["start_s"] == pytest.approx(1.0, abs=0.1) and copy["query_start_s"] == 0.0
    assert copy["end_s"] == pytest.approx(1.0 + copy["query_end_s"] * copy["tempo_ratio"], abs=0.15)
    assert copy["score"] >= verify.Z_MIN and 0 < copy["similarity"] <= 1
    assert copy["title"] == "Melody 2" and copy["artist"] == "Artist 0" and copy["license"] == "CC-BY-4.0"


def test_a_copy_under_noise_is_found_and_a_new_melody_is_not(melody_index: Path, melodies: Path) -> None:
    search = CopySearch(Index(melody_index))
    rng = np.random.default_rng(5)
    source = _track(melodies, 1)[SR // 2: 4 * SR]
    noisy = source + rng.standard_normal(len(source)).astype(np.float32) * np.sqrt(np.mean(source ** 2) / 10 ** 2)
    assert [c["track_id"] for c in search.find(noisy, SR)] == [1]
    assert search.find(melody(np.random.default_rng(99), 14), SR) == []


def test_the_result_carries_its_copies_beside_the_credits(melody_index: Path, melodies: Path) -> None:
    att = Attributor.from_index(melody_index)
    clip = tape(_track(melodies, 3)[SR: 4 * SR], -1)[: int(2.5 * SR)]
    result = att.attribute(clip, SR, prompt="low hum", settings=SMALL).to_dict()
    assert [c["track_id"] for c in result["copies"]] == [3] and result["copies"][0]["transposition_semitones"] == -1
    assert set(result["copies"][0]) == {"track_id", "path", "title", "artist", "license", "start_s", "end_s",
                                        "query_start_s", "query_end_s", "transposition_semitones", "tempo_ratio",
                                        "similarity", "score"}
    assert result["method"]["near_copies"]["searched"] and result["method"]["near_copies"]["threshold"] == verify.Z_MIN
    json.dumps(result)
    off = att.attribute(clip, SR, prompt="low hum", settings=AttributeSettings(SMALL.unlearn, candidates="all", top=4, copies=False))
    assert off.copies == [] and "near_copies" not in off.method
    assert off.credits == att.attribute(clip, SR, prompt="low hum", settings=SMALL).credits  # credits never change


def _without_fingerprints(index: Path, into: Path) -> Path:
    """A copy of ``index`` as a build before near copies left it: no copies files, none recorded."""
    old = into / "old-idx"
    shutil.copytree(index, old)
    meta = json.loads((old / "index.json").read_text())
    for name in [n for n in meta["files"] if n == build.VECTORS or n.startswith("shards/copies-")]:
        (old / name).unlink()
        del meta["files"][name]
    (old / "index.json").write_text(json.dumps(meta))
    return old


def test_an_index_without_fingerprints_says_so_in_one_line(melody_index: Path, melodies: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    old = _without_fingerprints(melody_index, tmp_path)
    att = Attributor.from_index(old)
    clip = _track(melodies, 0)[: 2 * SR]
    with caplog.at_level(logging.WARNING, logger="tda_plugin"):
        first = att.attribute(clip, SR, prompt="low hum", settings=SMALL).to_dict()
        att.attribute(clip, SR, prompt="low hum", settings=SMALL)
    notes = [r.getMessage() for r in caplog.records if NO_FINGERPRINTS in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]  # once per opened index, one line
    assert first["copies"] == [] and first["method"]["near_copies"] == {"searched": False, "note": NO_FINGERPRINTS}
    assert first["credits"]


def test_rerunning_the_build_adds_fingerprints_to_an_old_index(melody_index: Path, melodies: Path, tmp_path: Path,
                                                               tiny_model: tuple[Path, Path]) -> None:
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index.builder import build_index

    old = _without_fingerprints(melody_index, tmp_path)
    ckpt, cfg = tiny_model
    report = build_index(melodies, old, load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg,
                         settings=IndexSettings(draws=1, fisher_segments=2, shard_size=4))
    opened = Index(old)
    assert report.resumed_shards == len(opened.catalog.shards())  # no shard encoded again: only the copy stage ran
    search = CopySearch(opened)
    assert search.note is None
    assert [c["track_id"] for c in search.find(_track(melodies, 0)[SR: 3 * SR], SR)] == [0]


COPY = {"track_id": 7, "path": "audio/<x>.wav", "title": "Song <b>&", "artist": "Ärtist 7", "license": "CC-BY-4.0",
        "start_s": 12.0, "end_s": 14.24, "query_start_s": 0.0, "query_end_s": 2.0, "transposition_semitones": 2,
        "tempo_ratio": 1.122, "similarity": 0.31, "score": 17.5}


def test_the_report_lists_near_copies_above_the_credits() -> None:
    from tda_plugin.report import ClipReport, render_html

    from bench.sink_result import result_doc

    audio = np.zeros(SR, dtype=np.float32)
    page = render_html([ClipReport({**result_doc(path="clip.wav"), "copies": [COPY]}, audio, SR, [])])
    assert page.index("<h3>Near copies</h3>") < page.index("<h3>Credited tracks</h3>")
    assert "Song &lt;b&gt;&amp;" in page and "Song <b>&" not in page  # escaped like every other string
    assert "+2 semitones, 1.12x as fast" in page and "clip 0.0–2.0 s = track 12.0–14.2 s" in page
    plain = render_html([ClipReport({**result_doc(path="clip.wav"), "copies": []}, audio, SR, [])])
    assert "<h3>Near copies</h3>" not in plain
    older = render_html([ClipReport(result_doc(path="clip.wav"), audio, SR, [])])  # a result from before copies
    assert "<h3>Near copies</h3>" not in older


def test_the_terminal_table_and_the_tags_name_the_copy() -> None:
    from bench.sink_result import result_doc

    console = Console(file=io.StringIO(), width=200)
    console.print(copies_table({**result_doc(), "copies": [COPY]}))
    text = console.file.getvalue()
    assert "Ärtist 7" in text and "+2 semitones" in text and "17.5" in text
    assert copies_table({**result_doc(), "copies": []}) is None
    assert tag_lines({"copies": [COPY]}) == [
        "near copy: Ärtist 7 - Song <b>& (CC-BY-4.0), +2 semitones, 1.12x as fast, clip 0.0–2.0 s = track 12.0–14.2 s"]


def test_every_sink_carries_the_copies(tmp_path: Path) -> None:
    from tda_plugin.sinks.read import read_credits
    from tda_plugin.sinks.tags import read_tags

    from bench.sink_result import result_doc

    doc = {**result_doc(), "copies": [COPY]}
    wav, flac = tmp_path / "clip.wav", tmp_path / "clip.flac"
    for path in (wav, flac):
        sf.write(str(path), np.zeros(800, dtype=np.float32), 8000)
    ledger = tmp_path / "ledger.sqlite"
    receipts = write_credits(doc, wav, ["sidecar", "ledger"], SinkOptions(ledger=ledger))
    write_credits(doc, flac, ["tags"])
    assert json.loads((tmp_path / "clip.wav.credits.json").read_text())["copies"] == [COPY]
    assert read_tags(flac)["copies"] == [COPY] and read_credits(flac)[0]["copies"] == [COPY]
    assert receipts[1].location.endswith("(4 row(s))")  # 3 credits and 1 copy
    db = sqlite3.connect(ledger)
    rows = db.execute("SELECT c.attribution_id = k.attribution_id, c.artist, c.transposition_semitones, c.tempo_ratio, "
                      "c.start_s, c.query_end_s, c.score FROM copies c JOIN credits k ON k.rank = 1").fetchall()
    assert rows == [(1, "Ärtist 7", 2, 1.122, 12.0, 2.0, 17.5)]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM copies")


def test_a_ledger_from_before_copies_gains_the_table(tmp_path: Path) -> None:
    from tda_plugin.sinks.ledger import Ledger

    from bench.sink_result import result_doc

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE credits (id INTEGER PRIMARY KEY AUTOINCREMENT, attribution_id TEXT NOT NULL, "
                     "created_at TEXT NOT NULL, generated TEXT, prompt TEXT, adapter TEXT NOT NULL, "
                     "model_fingerprint TEXT NOT NULL, method TEXT NOT NULL, rank INTEGER NOT NULL, "
                     "track_id INTEGER NOT NULL, title TEXT, artist TEXT, license TEXT, track_path TEXT, "
                     "score REAL NOT NULL, share REAL NOT NULL); PRAGMA user_version = 1;")
    db.close()
    with Ledger(path) as ledger:
        assert ledger.append({**result_doc(), "copies": [COPY]}, None) == 4
        assert len(list(ledger.rows())) == 3
