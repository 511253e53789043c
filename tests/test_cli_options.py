"""`tda attribute`'s and `tda index build`'s options reach the settings by field name, and `tda attribute` decodes
and checks each clip once."""
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
from tda_plugin.settings import AttributeSettings, IndexSettings, UnlearnSettings
from tda_plugin.sinks import SinkOptions

#: the options of `tda attribute` that are no settings field: the call's inputs, outputs and model location
#: (``--sink-option`` becomes ``SinkOptions.extra``)
CALL_OPTIONS = {"audio", "index", "prompt", "prompts", "seconds_start", "seconds_total", "json_out", "csv_out", "device",
                "ckpt", "model_config", "sink", "sink_option"}


#: the same for `tda index build`
BUILD_OPTIONS = {"corpus", "out_dir", "ckpt", "model_config", "adapter", "batch_size", "device", "overwrite"}


def parsed(*args: str, command: tuple[str, ...] = ("attribute",)) -> dict[str, Any]:
    """The parameters `tda attribute clip.wav --index idx ARGS` (or another ``command`` given its whole ``args``) parses
    to, defaults included, without running it."""
    found = typer.main.get_command(app)
    for name in command:
        assert isinstance(found, typer.core.TyperGroup)
        found = found.commands[name]
    given = ["clip.wav", "--index", "idx", *args] if command == ("attribute",) else list(args)
    return found.make_context(" ".join(command), given).params


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


def test_index_build_options_are_its_settings() -> None:
    build = ("index", "build")
    required = ("catalogue/", "--out", "idx", "--ckpt", "model.safetensors")
    fields = {f.name for f in dataclasses.fields(IndexSettings)}
    assert set(parsed(*required, command=build)) - fields == BUILD_OPTIONS
    assert settings_from(IndexSettings, parsed(*required, command=build)) == IndexSettings()
    given = parsed(*required, "--segment-seconds", "2", "--draws", "8", "--seed", "3", "--fisher-segments", "9",
                   "--embedder", "activations", "--shard-size", "5", "--damping", "0.2", "--no-unconditional", command=build)
    assert settings_from(IndexSettings, given) == IndexSettings(2.0, 8, 3, 9, "activations", 5, 0.2, False)


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
