"""A T5-conditioned MusicGen loads and scores when t5-base is in the local Hugging Face cache (offline).

The cache holds the tiny random stand-in of tests/t5_cache.py, with a Unigram tokenizer
(``t5_cache.plant_unigram``); building, exporting, loading through audiocraft's loaders and scoring
run in a subprocess whose only cache is that one.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from . import t5_cache

SCRIPT = textwrap.dedent('''
    import sys, torch
    from pathlib import Path
    from tda_plugin.adapters.audiocraft import load
    from tda_plugin.adapters.audiocraft_demo import build_models, compression_config, export_checkpoint, lm_config
    from tda_plugin.adapter import Conditioning
    from tda_plugin.randomness import make_draws
    torch.manual_seed(0)
    lm_cfg = lm_config(segment_seconds=0.5, dim=32)
    lm_cfg["conditioners"]["description"] = {"model": "t5", "t5": {"name": "t5-base", "finetune": False,
                                                                   "word_dropout": 0.0, "normalize_text": False}}
    comp, lm = build_models(compression_config(), lm_cfg)
    comp.train(); comp(0.3 * torch.randn(4, 1, 8000)); comp.eval()
    out = export_checkpoint(Path(sys.argv[1]), lm, comp, lm_cfg, compression_config())
    a = load(out)
    codes = a.encode(0.3 * torch.randn(2, 1, a.default_segment_samples()))
    cond = a.condition([Conditioning("low hum"), Conditioning("high beep")])
    loss = a.loss(codes, cond, make_draws(0, ["a", "b"], 2))
    assert torch.isfinite(loss).all() and not torch.equal(loss[0], loss[1])
    print("ok", a.fingerprint)
''')


def test_t5_conditioned_musicgen_from_the_local_cache(tmp_path: Path) -> None:
    t5_cache.plant_unigram(tmp_path / "hf")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")], env=t5_cache.offline_env(tmp_path / "hf"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]
