"""torch.distributed sharding (gloo, 2 CPU processes) gives the same index and the same scores as one process."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tda_plugin.settings import AttributeSettings, IndexSettings, UnlearnSettings

SETTINGS = IndexSettings(draws=2, fisher_segments=8, shard_size=3, embedder="gradient_sketch")
SCORE = AttributeSettings(UnlearnSettings(unlearn_draws=4), candidates="all", batch_size=4)
FISHER_CHUNK = 3  # several Fisher chunks, so they are dealt out too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                LOCAL_RANK=str(rank), TDA_NO_PROGRESS="1")


def _rank(rank: int, world: int, port: int, *args: str) -> None:
    """A spawned rank, set up as torchrun would (its own process: nothing here leaks into the test session)."""
    from tda_plugin.index import builder

    os.environ.update(_env(rank, world, port))
    torch.set_num_threads(1)
    builder.FISHER_CHUNK = FISHER_CHUNK
    _run(*args)


def _run(ckpt: str, cfg: str, corpus: str, out: str, query: str) -> None:
    """One rank: build the index and attribute the query."""
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin import distributed
    from tda_plugin.attributor import Attributor
    from tda_plugin.index import builder

    several = distributed.init_from_env()  # as the CLI does under torchrun
    adapter = load(Path(ckpt), model_config=Path(cfg))
    builder.build_index(Path(corpus), Path(out), adapter, checkpoint=Path(ckpt), model_config=Path(cfg),
                        settings=SETTINGS, batch_size=4)
    data, sr = sf.read(query, dtype="float32", always_2d=True)
    result = Attributor.from_index(Path(out), adapter=adapter).attribute(data.T, sr, prompt="low hum", settings=SCORE)
    # the file name records the group this rank really ran in
    Path(f"{out}.scores-{distributed.rank()}-of-{distributed.world()}.json").write_text(json.dumps(result.scores))
    if several:
        torch.distributed.destroy_process_group()


def _tensors(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(root)): load_file(str(p)) for p in sorted(root.rglob("*.safetensors"))}


def test_two_gloo_ranks_match_one_process(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tda_plugin.index import builder

    ckpt, cfg = (str(p) for p in tiny_model)
    query = str(tiny_catalogue / "audio" / "t0.wav")
    one, two = tmp_path / "one", tmp_path / "two"
    for key, value in _env(0, 1, _free_port()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(builder, "FISHER_CHUNK", FISHER_CHUNK)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(ckpt, cfg, str(tiny_catalogue), str(one), query)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_rank, args=(2, _free_port(), ckpt, cfg, str(tiny_catalogue), str(two), query), nprocs=2, join=True)

    ref, got = _tensors(one), _tensors(two)
    assert ref.keys() == got.keys() and any(k.startswith("shards/sens") for k in ref)
    for name in ref:
        assert ref[name].keys() == got[name].keys()
        for key in ref[name]:
            assert torch.equal(ref[name][key], got[name][key]), f"{name}:{key} differs"
    assert "sketch" in ref["shards/sens-00000.safetensors"]
    assert (one / "vectors.faiss").read_bytes() == (two / "vectors.faiss").read_bytes()
    single = json.loads(Path(f"{one}.scores-0-of-1.json").read_text())
    for rank in (0, 1):
        assert json.loads(Path(f"{two}.scores-{rank}-of-2.json").read_text()) == single


def _pending_rank(rank: int, world: int, port: int, folder: str) -> None:
    """Rank 0 finishes its first unit at once; rank 1 looks late. Both must still deal out the same list."""
    import time

    from tda_plugin import distributed

    os.environ.update(_env(rank, world, port))
    distributed.init_from_env()
    done = lambda k: (Path(folder) / f"{k}.done").is_file()  # noqa: E731
    if rank == 1:
        time.sleep(1.0)  # without the barrier, rank 0's first unit is finished by now and rank 1's list is shorter
    share = distributed.mine_pending(list(range(4)), done)
    if rank == 0:
        (Path(folder) / f"{share[0]}.done").touch()
    Path(folder, f"share-{rank}.json").write_text(json.dumps(share))
    distributed.barrier()
    torch.distributed.destroy_process_group()


def test_ranks_deal_out_pending_work_from_the_same_list(tmp_path: Path) -> None:
    """A resumed build's unfinished units are read by every rank before any writes (the race seen in CI: a unit
    left to no rank, so the next stage found its shard missing)."""
    mp.spawn(_pending_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    shares = [json.loads((tmp_path / f"share-{r}.json").read_text()) for r in range(2)]
    assert shares == [[0, 2], [1, 3]]
