"""A damaged or moved index is diagnosed, not crashed on (tda_plugin/index/store.py, verify.py).

Every damage of issue 12's table gives one line and exit 3 from each command that opens the index;
`tda index verify` names the first bad file and the build command that repairs it; that command repairs
the index to the bytes it had. Paths inside the index are relative where the project folder moves as one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.errors import IndexDamagedError
from tda_plugin.index.store import Index
from tda_plugin.index.verify import manifest, verify

runner = CliRunner()


def damage(idx: Path, how: str) -> None:
    if how == "index.json truncated":
        (idx / "index.json").write_bytes((idx / "index.json").read_bytes()[:100])
    elif how == "vectors.faiss truncated":
        (idx / "vectors.faiss").write_bytes((idx / "vectors.faiss").read_bytes()[:300])
    elif how == "shards/ deleted":
        shutil.rmtree(idx / "shards")
    elif how == "catalog.sqlite garbage":
        size = (idx / "catalog.sqlite").stat().st_size
        (idx / "catalog.sqlite").write_bytes(bytes((7 * i) % 251 for i in range(size)))
    elif how == "fisher.safetensors truncated":
        (idx / "fisher.safetensors").write_bytes((idx / "fisher.safetensors").read_bytes()[:1000])
    elif how == "a shard's byte flipped":
        shard = idx / "shards" / "shard-00001.safetensors"
        data = bytearray(shard.read_bytes())
        data[-9] ^= 1
        shard.write_bytes(bytes(data))


DAMAGES = ["index.json truncated", "vectors.faiss truncated", "shards/ deleted", "catalog.sqlite garbage",
           "fisher.safetensors truncated", "a shard's byte flipped"]
#: what `verify` names first for each damage
FIRST = {"index.json truncated": "index.json", "vectors.faiss truncated": "vectors.faiss", "shards/ deleted": "shards/",
         "catalog.sqlite garbage": "catalog.sqlite", "fisher.safetensors truncated": "fisher.safetensors",
         "a shard's byte flipped": "shards/shard-00001.safetensors"}


def one_error_line(stderr: str) -> str:
    """The one error line (other lines, e.g. a time estimate, may come before it)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_the_build_records_every_file(tiny_index: Path) -> None:
    meta = json.loads((tiny_index / "index.json").read_text())
    assert meta["files"] == manifest(tiny_index)
    assert set(meta["files"]) >= {"catalog.sqlite", "fisher.safetensors", "baseline.safetensors", "vectors.faiss",
                                  "shards/shard-00000.safetensors", "shards/sens-00000.safetensors"}
    assert verify(tiny_index) == []
    r = runner.invoke(app, ["index", "verify", str(tiny_index)])
    assert r.exit_code == 0 and "healthy" in r.stderr
    Index(tiny_index).info()
    assert meta["files"] == manifest(tiny_index)  # opening an index (catalogue read-only) changes nothing


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_index_is_one_line_and_exit_3(tmp_path: Path, tiny_index: Path, tiny_catalogue: Path, how: str) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(tiny_index, idx)
    damage(idx, how)
    problems = verify(idx)
    assert problems and problems[0].name == FIRST[how], problems
    r = runner.invoke(app, ["index", "verify", str(idx)])
    assert r.exit_code == 3
    line = one_error_line(r.stderr)
    assert FIRST[how].rstrip("/") in line and "repair: tda index build" in line
    if how != "index.json truncated":  # the repair command carries the recorded settings
        assert f"--out {idx}" in line and "--draws 4" in line and "--shard-size 4" in line
    clip = str(tiny_catalogue / "audio" / "t0.wav")
    for args in (["index", "info", str(idx), "--json"], ["attribute", clip, "--index", str(idx), "--sink", "none",
                                                         "--prompt", "low hum", "--candidates", "all", "--unlearn-draws", "2"]):
        r = runner.invoke(app, args)
        if how == "a shard's byte flipped" and args[0] == "index":
            assert r.exit_code == 0 and "tda index verify" in json.loads(r.stdout)["integrity"]  # sizes only: it says so
            continue
        assert r.exit_code == 3, (args, r.output)
        assert FIRST[how].rstrip("/") in one_error_line(r.stderr)


@pytest.mark.parametrize("how", ["a shard's byte flipped", "fisher.safetensors truncated"])
def test_rerunning_the_build_repairs_to_the_same_bytes(tmp_path: Path, tiny_model: tuple[Path, Path],
                                                       tiny_catalogue: Path, tiny_index: Path, how: str) -> None:
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index.builder import build_index
    from tda_plugin.settings import IndexSettings

    ckpt, cfg = tiny_model
    project = tmp_path / "p"  # the same folder layout as the fixture's, so the relative paths agree
    shutil.copytree(tiny_index, project / "idx")
    damage(project / "idx", how)
    with pytest.raises(IndexDamagedError):
        Index(project / "idx").fisher() if how.startswith("fisher") else Index(project / "idx").shard(1)
    build_index(tiny_catalogue, project / "idx", load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg,
                settings=IndexSettings(draws=4, fisher_segments=6, shard_size=4))
    assert verify(project / "idx") == []
    assert manifest(project / "idx") == manifest(tiny_index)


def test_a_moved_project_folder_still_attributes(tmp_path: Path, tiny_model: tuple[Path, Path],
                                                 tiny_catalogue: Path) -> None:
    """Index, model and catalogue in one folder (like the demo's): moving the folder keeps it working; an index
    moved alone needs --ckpt, and the fingerprint still refuses a different model."""
    from .conftest import random_model, tiny_config

    project = tmp_path / "project"
    shutil.copytree(tiny_model[0].parent, project / "model")
    shutil.copytree(tiny_catalogue, project / "catalogue")
    r = runner.invoke(app, ["index", "build", str(project / "catalogue"), "--out", str(project / "index"), "--ckpt",
                            str(project / "model" / "model.safetensors"), "--draws", "2", "--fisher-segments", "3",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    meta = json.loads((project / "index" / "index.json").read_text())
    assert meta["checkpoint"] == "../model/model.safetensors" and meta["corpus"] == "../catalogue"
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(str(project), str(moved))
    clip = str(moved / "catalogue" / "audio" / "t1.wav")
    args = [clip, "--index", str(moved / "index"), "--sink", "none", "--candidates", "all", "--unlearn-draws", "2",
            "--json", "-"]
    r = runner.invoke(app, ["attribute", *args])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "ok"
    from tda_plugin.experiments.lds import Lds, Plan

    lds = Lds(Plan(moved / "index", tmp_path / "lds"))  # `tda eval lds INDEX` finds the catalogue the same way
    assert lds.corpus == (moved / "catalogue").resolve() and lds.tracks
    assert all(moved.resolve() in Path(t.resolved).resolve().parents for t in lds.tracks)

    alone = tmp_path / "alone"
    shutil.move(str(moved / "index"), str(alone))
    shutil.move(str(moved / "model"), str(tmp_path / "models"))
    args[2] = str(alone)
    r = runner.invoke(app, ["attribute", *args])
    assert r.exit_code == 3 and "--ckpt" in one_error_line(r.stderr)
    r = runner.invoke(app, ["attribute", *args, "--ckpt", str(tmp_path / "models" / "model.safetensors")])
    assert r.exit_code == 0, r.output
    other, _ = random_model(tiny_config(["low hum", "high beep"]), tmp_path / "other", seed=1)
    r = runner.invoke(app, ["attribute", *args, "--ckpt", str(other)])
    assert r.exit_code == 3 and "another model" in one_error_line(r.stderr)


def test_safetensors_files_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """safetensors orders several metadata keys by a per-process hash; write_tensors makes the bytes canonical
    (the Fisher's two keys made rebuilt indexes differ: bench/kill_build.py found it)."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys, torch; from pathlib import Path; from tda_plugin.atomic import write_tensors; "
            "write_tensors(Path(sys.argv[1]), {'w': torch.arange(6.0)}, {'fingerprint': 'f', 'segments': '4', 'z': 'x'})")
    digests = set()
    for k in range(3):  # without the fix, three processes agree on the order of 3 keys 1 time in 36
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{k}.safetensors")], check=True)
        digests.add(hashlib.sha256((tmp_path / f"{k}.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
