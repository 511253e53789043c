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


def _run(rank: int, world: int, port: int, ckpt: str, cfg: str, corpus: str, out: str, query: str) -> None:
    """One rank: build the index and attribute the query, as under torchrun."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), TDA_NO_PROGRESS="1")
    torch.set_num_threads(1)
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin import distributed
    from tda_plugin.attributor import Attributor
    from tda_plugin.index import builder

    builder.FISHER_CHUNK = FISHER_CHUNK
    adapter = load(Path(ckpt), model_config=Path(cfg))
    builder.build_index(Path(corpus), Path(out), adapter, checkpoint=Path(ckpt), model_config=Path(cfg),
                        settings=SETTINGS, batch_size=4)
    data, sr = sf.read(query, dtype="float32", always_2d=True)
    result = Attributor.from_index(Path(out), adapter=adapter).attribute(data.T, sr, prompt="low hum", settings=SCORE)
    # the file name records the group this rank really ran in
    Path(f"{out}.scores-{distributed.rank()}-of-{distributed.world()}.json").write_text(json.dumps(result.scores))
    if world > 1:
        torch.distributed.destroy_process_group()


def _tensors(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(root)): load_file(str(p)) for p in sorted(root.rglob("*.safetensors"))}


def test_two_gloo_ranks_match_one_process(tmp_path: Path, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> None:
    ckpt, cfg = (str(p) for p in tiny_model)
    query = str(tiny_catalogue / "audio" / "t0.wav")
    one, two = tmp_path / "one", tmp_path / "two"
    _run(0, 1, _free_port(), ckpt, cfg, str(tiny_catalogue), str(one), query)
    mp.spawn(_run, args=(2, _free_port(), ckpt, cfg, str(tiny_catalogue), str(two), query), nprocs=2, join=True)

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
