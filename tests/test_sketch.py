"""Gradient sketches, the streamed FAISS index, percentage candidates and the recall core."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.stats import spearmanr

from tda_plugin.index import vectors
from tda_plugin.recall import Query, evaluate_prefilter, recall_at, top_k
from tda_plugin.settings import AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.sketch import SKETCH_DIM, GradientSketch

SHAPES = {"w": torch.Size([24, 40]), "conv": torch.Size([6, 4, 5]), "b": torch.Size([30])}


def _sketch(seed: int, dim: int = 256, damping: float = 0.5) -> GradientSketch:
    fisher = {n: torch.rand(s, generator=torch.Generator().manual_seed(7)) for n, s in SHAPES.items()}
    return GradientSketch(list(SHAPES), list(SHAPES.values()), fisher, damping, seed=seed, dim=dim)


def _random(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=gen) for n, s in SHAPES.items()}


def test_sketch_is_deterministic_and_unbiased_for_g_dot_delta() -> None:
    g, d = _random(1), _random(2)
    exact = sum(float((g[n] * d[n]).sum()) for n in SHAPES)
    assert torch.equal(_sketch(0).of_gradient(g), _sketch(0).of_gradient(g))
    assert not torch.equal(_sketch(0).of_gradient(g), _sketch(1).of_gradient(g))
    # E[(P u)ᵀ(P w)] = uᵀw = gᵀΔ: the preconditioning cancels between a segment and the query's step
    est = [float(s.of_gradient(g) @ s.of_step(d)) for s in (_sketch(k) for k in range(300))]
    spread = float(np.std(est)) / np.sqrt(len(est))
    assert abs(np.mean(est) - exact) < 4 * spread


def test_larger_sketch_ranks_like_the_exact_cosine() -> None:
    base = _random(0)
    segs = [{n: base[n] * (k / 20) + t for n, t in _random(100 + k).items()} for k in range(20)]
    step = {n: base[n].clone() for n in SHAPES}
    sk = _sketch(3, dim=1024, damping=1.0)
    fisher_root = {n: (sk._root[n]) for n in SHAPES}
    u = [torch.cat([(s[n] / fisher_root[n]).flatten() for n in SHAPES]) for s in segs]
    w = torch.cat([(step[n] * fisher_root[n]).flatten() for n in SHAPES])
    exact = [float(x @ w / x.norm()) for x in u]
    q = sk.of_step(step)
    approx = [float(sk.of_gradient(s) @ q / sk.of_gradient(s).norm()) for s in segs]
    assert spearmanr(exact, approx)[0] > 0.9


def test_ivfpq_is_chosen_above_the_flat_limit_and_finds_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    chunks = lambda: [(x[i:i + 700], np.arange(i, min(i + 700, 3000))) for i in range(0, 3000, 700)]  # noqa: E731
    assert vectors.describe(vectors.build_streaming(3000, 32, chunks)) == "flat"
    monkeypatch.setattr(vectors, "FLAT_LIMIT", 1000)
    index = vectors.build_streaming(3000, 32, chunks)
    assert vectors.describe(index).startswith("ivfpq")
    found = vectors.search(index, x[42], 150)
    assert len(found) == 150 and 42 in found.tolist()


def test_percentage_candidates() -> None:
    s = AttributeSettings(candidates="5%")
    assert s.candidate_count(20_000) == 1000 and s.candidate_count(100) == 64 and s.candidate_count(10) == 10
    assert AttributeSettings(candidates=7).candidate_count(100) == 7
    assert AttributeSettings(candidates="all").candidate_count(100) == 100
    with pytest.raises(Exception, match="percentage"):
        AttributeSettings(candidates="0%")


def test_recall_at() -> None:
    exact = {i: float(-i) for i in range(10)}  # best: 0, 1, 2, ...
    assert top_k(exact, 3) == [0, 1, 2]
    assert recall_at(exact, [2, 9, 0, 1], k=3, m=2) == pytest.approx(1 / 3)
    assert recall_at(exact, [2, 9, 0, 1], k=3, m=4) == 1.0


@pytest.fixture(scope="module")
def sketch_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> Path:
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index.builder import build_index

    ckpt, cfg = tiny_model
    out = tmp_path_factory.mktemp("sketch") / "idx"
    build_index(tiny_catalogue, out, load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg,
                settings=IndexSettings(draws=2, fisher_segments=4, shard_size=5, embedder="gradient_sketch"))
    return out


def test_sketch_index_stores_the_segments_own_sketch(sketch_index: Path) -> None:
    from safetensors.torch import load_file

    from tda_plugin.attributor import Attributor
    from tda_plugin.fisher import named_parameters, segment_gradients
    from tda_plugin.index.builder import segment_conditioning
    from tda_plugin.randomness import segment_stream

    att = Attributor.from_index(sketch_index)
    index = att.index.vectors()
    assert index.ntotal == len(att.index.segments) and index.d == SKETCH_DIM
    stored = load_file(str(sketch_index / "shards" / "sens-00000.safetensors"))["sketch"]
    names = att.adapter.parameter_groups()["blocks"]
    seg = att.index.segments[1]
    cond = [segment_conditioning(att.index.tracks[seg.track_id], seg)]
    (grad,) = list(segment_gradients(att.adapter, named_parameters(att.adapter, names), att.index.gather([1], "latents"),
                                     cond, [segment_stream(1)], seed=0, draws=2))
    torch.testing.assert_close(att.sketch().of_gradient(dict(zip(names, grad))), stored[1])


def test_recall_core_and_prefiltered_attribution(sketch_index: Path, tiny_catalogue: Path) -> None:
    from tda_plugin.attributor import Attributor

    att = Attributor.from_index(sketch_index)
    data, sr = sf.read(tiny_catalogue / "audio" / "t1.wav", dtype="float32", always_2d=True)
    query = Query("t1", data.T[:, :4096], sr, "high beep")
    un = UnlearnSettings(unlearn_draws=4)
    few = att.attribute(query.audio, sr, prompt=query.prompt, settings=AttributeSettings(un, candidates=3, top=3))
    assert few.method["scored"] == 3
    table = evaluate_prefilter(att, [query], ["gradient_sketch", "latent_stats"], ks=[3], fractions=[0.25, 1.0],
                               settings=AttributeSettings(un, candidates="all"), sketch_dims=[256, SKETCH_DIM])
    assert set(table.recall) == {"gradient_sketch", "gradient_sketch@256", "first_order", "latent_stats"}
    assert len(table.exact_top) == 1 and len(table.rankings["gradient_sketch"][0]) == len(att.index.segments)
    for e in table.recall:  # M = N keeps everything; recalls are fractions
        assert table.recall[e][3][1.0] == 1.0 and 0.0 <= table.recall[e][3][0.25] <= 1.0
    # the unprojected first-order score is what the sketch approximates: it must find the exact top-3
    assert table.recall["first_order"][3][0.25] >= 2 / 3


def test_mfcc_chroma_embeds_decoded_audio(tiny_index: Path) -> None:
    from tda_plugin.attributor import Attributor
    from tda_plugin.embedders import mfcc_chroma

    att = Attributor.from_index(tiny_index)
    emb = mfcc_chroma(att.adapter, att.index.gather([0, 1, 6], "latents"), None, [], 0)
    assert emb.shape == (3, 62) and torch.isfinite(emb).all()
    # four L2-normalised blocks: MFCC mean/std (19 each), chroma mean/std (12 each)
    blocks = torch.split(emb, [19, 19, 12, 12], dim=1)
    for b in blocks:
        torch.testing.assert_close(b.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    assert not torch.allclose(emb[0], emb[2])  # different tracks (different tones) embed differently
