"""A segment's loss is a function of that segment alone, for T5-conditioned MusicGen and MAGNeT (and MBD).

audiocraft's ``T5Conditioner.tokenize`` pads a batch to its longest prompt and the LM attends to the
padding, so conditioning a batch at once made a segment's loss depend on its batch mates: the "before"
losses, cached in build batches, and the "after" losses, computed in candidate batches, disagreed by far
more than the unlearning moves them. The definition (docs/method.md, section 3): the loss of one segment
is its loss computed alone, as a batch of one. These tests build T5-conditioned models with the tiny
random T5 of ``t5_cache`` (prompts of 1 to 40 tokens) and check every batched path against it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import audiocraft  # noqa: F401  (a hard dependency of the test environment: a broken install must fail)
from tda_plugin import Attributor
from tda_plugin.adapter import Conditioning
from tda_plugin.adapters.audiocraft import AudiocraftLMAdapter, load
from tda_plugin.adapters.audiocraft_demo import build_models, compression_config, export_checkpoint, lm_config
from tda_plugin.fisher import named_parameters
from tda_plugin.evaluation import segment_audio
from tda_plugin.index.builder import build_index, segment_conditioning
from tda_plugin.randomness import make_draws, segment_stream
from tda_plugin.scoring import losses
from tda_plugin.settings import IndexSettings, UnlearnSettings
from tda_plugin.unlearn import applied

from . import t5_cache
from .audiocraft_models import MAGNET_SECONDS, MUSICGEN_SECONDS, SR, tiny_mbd_checkpoint
from .conftest import write_catalogue

#: prompt lengths in T5 tokens (with ``</s>``; 1 is no prompt): short and long side by side in every batch
TOKENS = (1, 40, 2, 17, 5, 33)
PROMPTS = tuple(t5_cache.prompt_of(n) for n in TOKENS)
#: "equal" for a loss: the float rounding of batched kernels stays far below it; the bug was ~1e-2 relative
REL = 1e-6


def t5_checkpoint(out_dir: Path, *, magnet: bool) -> Path:
    """A tiny MusicGen / MAGNeT of the demo architecture whose prompt conditioner is T5 (as every release)."""
    torch.manual_seed(0)
    lm_cfg = lm_config(segment_seconds=MAGNET_SECONDS if magnet else MUSICGEN_SECONDS, magnet=magnet, dim=32)
    lm_cfg["conditioners"]["description"] = {"model": "t5", "t5": {"name": t5_cache.MODEL_NAME, "finetune": False,
                                                                   "word_dropout": 0.0, "normalize_text": False}}
    compression, lm = build_models(compression_config(sample_rate=SR), lm_cfg)
    compression.train()
    with torch.no_grad():
        compression(0.3 * torch.randn(8, 1, SR))
        for p in lm.parameters():  # audiocraft zero-initialises some projections: no subset may be degenerate
            p.add_(0.05 * torch.randn_like(p))
    compression.eval()
    return export_checkpoint(out_dir, lm, compression, lm_cfg, compression_config(sample_rate=SR))


@pytest.fixture(scope="module", params=[False, True], ids=["musicgen", "magnet"])
def t5_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AudiocraftLMAdapter]:
    hf_home = tmp_path_factory.mktemp("hf")
    t5_cache.plant_unigram(hf_home)
    ckpt_dir = tmp_path_factory.mktemp("magnet" if request.param else "musicgen")
    with t5_cache.offline_hub(hf_home):  # T5 loads when the model is built
        ckpt = t5_checkpoint(ckpt_dir, magnet=request.param)
        return ckpt, load(ckpt)


def alone(adapter, codes: torch.Tensor, conds: list[Conditioning], streams: list[str], draws: int) -> torch.Tensor:
    """The reference: every segment's losses computed as a batch of one."""
    return torch.cat([adapter.loss(codes[i:i + 1], adapter.condition([conds[i]]), make_draws(0, [streams[i]], draws))
                      for i in range(len(conds))]).detach()


def assert_equal_losses(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.allclose(got, ref, rtol=REL, atol=0), float(((got - ref).abs() / ref.abs()).max())


def test_prompts_tokenise_to_the_intended_lengths(t5_model: tuple[Path, AudiocraftLMAdapter]) -> None:
    _, a = t5_model
    (t5,) = a.lm.condition_provider.conditioners.values()
    lengths = [int(t5.tokenize([p or ""])["input_ids"].shape[1]) for p in PROMPTS]
    assert lengths == list(TOKENS)


def test_losses_do_not_depend_on_batch_mates_size_or_order(t5_model: tuple[Path, AudiocraftLMAdapter]) -> None:
    _, a = t5_model
    n, d = len(PROMPTS), 4
    codes = a.encode(0.3 * torch.randn(n, 1, a.default_segment_samples(), generator=torch.Generator().manual_seed(1)))
    conds = [Conditioning(p) for p in PROMPTS]
    streams = [segment_stream(i) for i in range(n)]
    ref = alone(a, codes, conds, streams, d)
    assert ref.std() > 0
    for batch in (n * d, 2 * d, 3 * d):
        assert_equal_losses(losses(a, codes, conds, streams, seed=0, draws=d, batch_size=batch), ref)
    perm = [3, 0, 5, 2, 1, 4]
    shuffled = losses(a, codes[perm], [conds[i] for i in perm], [streams[i] for i in perm], seed=0, draws=d, batch_size=4 * d)
    assert_equal_losses(shuffled, ref[perm])
    # the same prompt beside another prompt of each length
    for other in PROMPTS:
        pair = a.loss(codes[[1, 0]], a.condition([conds[1], Conditioning(other)]), make_draws(0, [streams[1], streams[0]], d))
        assert_equal_losses(pair[:1].detach(), ref[1:2])


def test_loss_changes_equal_the_batch_of_one_reference(t5_model: tuple[Path, AudiocraftLMAdapter], tmp_path: Path) -> None:
    """Baseline cached in build batches of every segment, scored two segments at a time: τ as computed alone.
    A MusicGen index keeps one draw of the two asked for (its loss ignores them), a MAGNeT index both."""
    ckpt, a = t5_model
    seconds = 2.2 if a.family == "magnet" else 1.6  # 2 MAGNeT / 3 MusicGen segments per track
    corpus = write_catalogue(tmp_path / "cat", n_tracks=len(PROMPTS), seconds=seconds, prompts=tuple(p or "" for p in PROMPTS))
    build_index(corpus, tmp_path / "idx", a, checkpoint=ckpt, settings=IndexSettings(draws=2, fisher_segments=4),
                batch_size=64)
    att = Attributor.from_index(tmp_path / "idx", adapter=a)
    draws = att.index.meta.index_settings.draws
    assert draws == (1 if a.family == "musicgen" else 2)  # MusicGen's CE is the same under every draw: one is kept
    ids = sorted(att.index.segments)
    segs = [att.index.segments[i] for i in ids]
    conds = [segment_conditioning(att.index.tracks[s.track_id], s) for s in segs]
    streams = [segment_stream(i) for i in ids]
    codes = att.index.gather(ids, "latents")
    before = alone(a, codes, conds, streams, draws)
    assert_equal_losses(att.index.baseline_rows(ids), before)

    un = UnlearnSettings(unlearn_draws=2)
    query = att.encode_query(segment_audio(att, ids[0]), SR, PROMPTS[1])  # a training segment under another prompt
    names, delta, _, _ = att.forget(query, un)
    tau, _ = att.exact_scores(ids, names, delta, un, batch_size=2 * draws)
    with applied(named_parameters(a, names), delta):
        after = alone(a, codes, conds, streams, draws)
    reference = (after - before).mean(dim=1)
    assert reference.abs().max() > 100 * REL * before.abs().max()  # the step moves losses beyond rounding
    assert torch.allclose(tau, reference, rtol=0, atol=REL * float(before.abs().max()))


def test_mbd_losses_equal_each_segment_alone(tmp_path: Path) -> None:
    """MultiBandDiffusion has no prompt (it is conditioned on the audio's own EnCodec embedding); its batched
    losses must still be each segment's alone."""
    a = load(tiny_mbd_checkpoint(tmp_path))
    n, d = 4, 3
    wav = a.encode(0.3 * torch.randn(n, 1, a.default_segment_samples(), generator=torch.Generator().manual_seed(2)))
    streams = [segment_stream(i) for i in range(n)]
    ref = alone(a, wav, [Conditioning(None)] * n, streams, d)
    assert_equal_losses(losses(a, wav, [Conditioning(None)] * n, streams, seed=0, draws=d, batch_size=n * d), ref)
    perm = [2, 0, 3, 1]
    assert_equal_losses(losses(a, wav[perm], [Conditioning(None)] * n, [streams[i] for i in perm], seed=0, draws=d,
                               batch_size=2 * d), ref[perm])
