"""Per-segment gradients: the batched (torch.func) and looped passes equal the reference loop for every kind of
adapter, and the index built from them equals the reference build to 1e-6."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tda_plugin import gradients
from tda_plugin.adapter import Conditioning
from tda_plugin.fisher import gradient_names, named_parameters, segment_gradients
from tda_plugin.gradients import GradientPlan, passes
from tda_plugin.index.builder import build_index
from tda_plugin.scoring import losses
from tda_plugin.settings import IndexSettings

PROMPTS = ["low hum", "high beep", None]
SETTINGS = IndexSettings(draws=2, fisher_segments=6, shard_size=4, embedder="gradient_sketch")


def _relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """‖a − b‖ / ‖b‖ over all parameters together (single tensors may hold gradients that are only rounding noise)."""
    diff = sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(a, b))
    return (diff / max(sum(float(y.double().pow(2).sum()) for y in b), 1e-300)) ** 0.5


def _adapter(kind: str, tmp_path: Path, tiny_model: tuple[Path, Path]):
    if kind == "stable-audio":
        from tda_plugin.adapters.stable_audio import load

        return load(tiny_model[0], model_config=tiny_model[1])
    if kind == "tiny-conv":  # the example third-party plugin's adapter, imported from its source tree
        sys.path.insert(0, str(Path(__file__).parent / "plugin_example"))
        try:
            from tda_example_plugin.adapter import TinyConvAdapter
            from tda_example_plugin.model import TinyConv
        finally:
            sys.path.pop(0)
        config = {"model_type": "tiny_conv", "sample_rate": 8000, "channels": 1, "hop": 32, "hidden": 32, "depth": 2,
                  "segment_samples": 1024, "prompts": PROMPTS[:2]}
        torch.manual_seed(0)
        return TinyConvAdapter(TinyConv(config), config, "test")
    from tda_plugin.adapters.audiocraft import load

    from .audiocraft_models import tiny_checkpoint

    return load(tiny_checkpoint(tmp_path, magnet=kind == "magnet"))


@pytest.mark.parametrize("kind", ["stable-audio", "tiny-conv", "musicgen", "magnet"])
def test_batched_and_looped_passes_equal_the_reference_loop(kind: str, tmp_path: Path,
                                                            tiny_model: tuple[Path, Path]) -> None:
    adapter = _adapter(kind, tmp_path, tiny_model)
    audio = 0.3 * torch.randn(3, adapter.channels, adapter.default_segment_samples(), generator=torch.Generator().manual_seed(1))
    encoded = adapter.encode(audio)
    conds = [Conditioning(p, 0.5 * i, 3.0) for i, p in enumerate(PROMPTS)]
    streams = [f"segment/{i}" for i in range(3)]
    names = gradient_names(adapter)
    params = named_parameters(adapter, names)
    reference = list(segment_gradients(adapter, params, encoded, conds, streams, seed=0, draws=2))
    baseline = losses(adapter, encoded, conds, streams, seed=0, draws=2)
    for plan in (GradientPlan(1), GradientPlan(3)):
        chunks = list(passes(adapter, params, encoded, conds, streams, seed=0, draws=2, plan=plan))
        assert [c.losses.shape[0] for c in chunks] == ([1, 1, 1] if plan.batch == 1 else [3])
        got = [torch.cat([c.grads[k] for c in chunks]) for k in range(len(names))]
        for i in range(3):
            assert _relative([g[i] for g in got], list(reference[i])) < 1e-6
        assert torch.allclose(torch.cat([c.losses for c in chunks]), baseline, rtol=1e-6, atol=1e-7)
    # MAGNeT's masking runs an autograd.Function torch.func cannot transform: it must fall back, not fail
    assert (adapter in gradients._UNBATCHABLE) == (kind == "magnet")


@pytest.fixture(scope="module")
def reference_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, Path], tiny_catalogue: Path) -> Path:
    from tda_plugin.adapters.stable_audio import load

    ckpt, cfg = tiny_model
    out = tmp_path_factory.mktemp("reference") / "idx"
    build_index(tiny_catalogue, out, load(ckpt, model_config=cfg), checkpoint=ckpt, model_config=cfg, settings=SETTINGS,
                reference=True)
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_fast_build_equals_the_reference_build(batch: int, reference_index: Path, tmp_path: Path, tiny_model: tuple[Path, Path],
                                               tiny_catalogue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One forward+backward per segment (the Fisher sample's gradients kept, not recomputed; batched or not)
    gives the index the original separate passes give."""
    from tda_plugin.adapters.stable_audio import load
    from tda_plugin.index import builder

    monkeypatch.setattr(builder, "plan_for", lambda *a, **k: GradientPlan(batch, False))
    ckpt, cfg = tiny_model
    adapter = load(ckpt, model_config=cfg)
    kept: list[int] = []
    real = builder._build_fisher

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        kept.append(len(out))
        return out

    monkeypatch.setattr(builder, "_build_fisher", counting)
    build_index(tiny_catalogue, tmp_path / "idx", adapter, checkpoint=ckpt, model_config=cfg, settings=SETTINGS)
    assert kept == [SETTINGS.fisher_segments if batch == 1 else 0]  # kept only by the per-segment plan
    for path in sorted(reference_index.rglob("*.safetensors")):
        ref, got = load_file(str(path)), load_file(str(tmp_path / "idx" / path.relative_to(reference_index)))
        assert ref.keys() == got.keys(), path.name
        for key in ref:
            assert _relative([got[key]], [ref[key]]) < 1e-6, f"{path.name}:{key}"
