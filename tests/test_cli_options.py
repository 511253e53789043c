"""`tda attribute`'s options reach the settings by field name, and each clip is decoded and checked once."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
from typer.testing import CliRunner

from tda_plugin.cli.app import app
from tda_plugin.cli.attribute import attribute_settings
from tda_plugin.cli.fields import settings_from
from tda_plugin.settings import AttributeSettings, UnlearnSettings
from tda_plugin.sinks import SinkOptions

#: the options of `tda attribute` that are no settings field: the call's inputs, outputs and model location
#: (``--sink-option`` becomes ``SinkOptions.extra``)
CALL_OPTIONS = {"audio", "index", "prompt", "prompts", "seconds_start", "seconds_total", "json_out", "csv_out", "device",
                "ckpt", "model_config", "sink", "sink_option"}


def parsed(*args: str) -> dict[str, Any]:
    """The parameters `tda attribute clip.wav --index idx ARGS` parses to (defaults included), without running it."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group.commands["attribute"].make_context("attribute", ["clip.wav", "--index", "idx", *args]).params


def test_every_option_is_a_settings_field_or_the_calls_own() -> None:
    fields = {f.name for cls in (AttributeSettings, UnlearnSettings, SinkOptions) for f in dataclasses.fields(cls)}
    assert set(parsed()) - fields == CALL_OPTIONS


def test_the_defaults_are_the_settings_defaults() -> None:
    assert attribute_settings(parsed()) == AttributeSettings()
    assert settings_from(SinkOptions, parsed()) == SinkOptions()


def test_each_option_sets_its_field() -> None:
    given = parsed("--top", "3", "--candidates", "5%", "--shortlist", "0", "--shortlist-draws", "4", "--mode", "ascent",
                   "--alpha", "1e-6", "--relative-step", "0.01", "--steps", "3", "--subset", "self_attn",
                   "--unlearn-draws", "8", "--damping", "0.5", "--ewc", "0.5", "--normalize", "none", "--no-mask-silence",
                   "--conditioning", "audio", "--track-credit", "sum", "--batch-size", "0",
                   "--ledger", "credits.sqlite", "--tag-top", "2", "--overwrite")
    unlearn = UnlearnSettings(mode="ascent", alpha=1e-6, relative_step=0.01, steps=3, subset="self_attn", unlearn_draws=8,
                              damping=0.5, ewc=0.5, normalize="none", mask_silence=False)
    assert attribute_settings(given) == AttributeSettings(unlearn, top=3, candidates="5%", shortlist=None, shortlist_draws=4,
                                                          conditioning="audio", track_credit="sum", batch_size=0)
    assert settings_from(SinkOptions, given, extra={"k": "v"}) == SinkOptions(Path("credits.sqlite"), 2, True, {"k": "v"})
    assert attribute_settings(parsed("--candidates", "all")).candidates == "all"


def test_a_clip_is_decoded_and_checked_once(tmp_path: Path, tiny_catalogue: Path, tiny_index: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tda_plugin import audio as audio_io

    clip = tmp_path / "clip.wav"
    shutil.copy(tiny_catalogue / "audio" / "t0.wav", clip)
    calls: list[str] = []
    load, check_levels = audio_io.load, audio_io.check_levels
    monkeypatch.setattr(audio_io, "load", lambda path: calls.append("load") or load(path))
    monkeypatch.setattr(audio_io, "check_levels", lambda data, name: calls.append("check") or check_levels(data, name))
    r = CliRunner().invoke(app, ["attribute", str(clip), "--index", str(tiny_index), "--prompt", "low hum", "--sink", "none",
                                 "--unlearn-draws", "2", "--alpha", "1e-7", "--candidates", "all", "--top", "3"])
    assert r.exit_code == 0, r.output
    assert calls == ["load", "check"]
