"""The `tda` command line: thin — parse, call the Python API, render with Rich.

Data goes to stdout (tables, ``--json -``); progress, warnings and errors go to stderr.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from tda_plugin import __version__
from tda_plugin.hookspecs import HOOKSPEC_VERSION
from tda_plugin.settings import AttributeSettings, IndexSettings, UnlearnSettings

from .credits import credits_app
from .errors import EXIT_VETOED, err, guarded
from .eval import eval_app
from .report import report

app = typer.Typer(help="Training data attribution by unlearning for music generative models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
index_app = typer.Typer(help="Build and inspect attribution indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")
app.add_typer(credits_app, name="credits")
out = Console(highlight=False)

Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto (cuda when available)")]


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _candidates(value: str) -> int | str:
    if value == "all" or value.endswith("%"):
        return value  # a percentage is validated by AttributeSettings
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter("an integer, a percentage such as '5%', or 'all'") from None


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress details")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)], force=True)


@index_app.command("build")
@guarded
def index_build(
    corpus: Annotated[Path, typer.Argument(help="catalogue directory with tracks.csv (or the CSV itself)")],
    out_dir: Annotated[Path, typer.Option("--out", help="index directory to create or resume")],
    ckpt: Annotated[Path, typer.Option("--ckpt", "--checkpoint", help="model checkpoint (model.safetensors / model.ckpt)")],
    model_config: Annotated[Optional[Path], typer.Option(help="model_config.json (default: beside the checkpoint)")] = None,
    adapter: Annotated[str, typer.Option(help="model adapter (see `tda plugins`)")] = "stable-audio",
    segment_seconds: Annotated[Optional[float], typer.Option(help="segment length; default: the model's sample_size")] = None,
    draws: Annotated[int, typer.Option(help="loss draws (timestep, noise) per segment")] = IndexSettings.draws,
    seed: Annotated[int, typer.Option(help="seed of all fixed randomness")] = IndexSettings.seed,
    fisher_segments: Annotated[int, typer.Option(help="segments sampled for the diagonal Fisher")] = IndexSettings.fisher_segments,
    embedder: Annotated[str, typer.Option(help="prefilter embedder")] = IndexSettings.embedder,
    shard_size: Annotated[int, typer.Option(help="segments per shard (unit of resumption)")] = IndexSettings.shard_size,
    damping: Annotated[float, typer.Option(help="λ of the stored sensitivities, as a fraction of the mean Fisher")] = IndexSettings.damping,
    batch_size: Annotated[int, typer.Option(help="segment-draws per forward pass")] = 64,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="replace an index built with other settings")] = False,
) -> None:
    """Build (or resume) the attribution index of a catalogue for one model."""
    from tda_plugin.index.builder import build_index
    from tda_plugin.registry import load_adapter

    settings = IndexSettings(segment_seconds=segment_seconds, draws=draws, seed=seed, fisher_segments=fisher_segments,
                             embedder=embedder, shard_size=shard_size, damping=damping)
    model = load_adapter(adapter, ckpt, model_config=model_config, device=_device(device))
    report = build_index(corpus, out_dir, model, checkpoint=ckpt, model_config=model_config or ckpt.with_name("model_config.json"),
                         settings=settings, batch_size=batch_size, overwrite=overwrite)
    for path, why in report.failures:
        err.print(f"[yellow]skipped[/] {path}: {why}", soft_wrap=True)
    resumed = f", resumed after {report.resumed_shards} finished shard(s)" if report.resumed_shards else ""
    err.print(f"index {out_dir}: {report.segments} segments of {report.tracks} tracks, "
              f"{len(report.failures)} file(s) skipped{resumed}")


@index_app.command("info")
@guarded
def index_info(index: Annotated[Path, typer.Argument(help="index directory")],
               as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Describe an index: model fingerprint, adapter, counts, draws, embedder, size."""
    from tda_plugin.index.store import Index

    info = Index(index).info()
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(title=f"index {index}", show_header=False)
    for key, value in info.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    out.print(table)


@app.command()
@guarded
def attribute(
    audio: Annotated[list[Path], typer.Argument(help="generated audio file(s)")],
    index: Annotated[Path, typer.Option(help="index directory")],
    prompt: Annotated[Optional[str], typer.Option(help="the prompt the clip was generated with")] = None,
    top: Annotated[int, typer.Option(help="segments to report")] = 10,
    candidates: Annotated[str, typer.Option(help="candidates scored exactly: prefilter top-M, a percentage of the catalogue ('5%'), or 'all'")] = str(AttributeSettings.candidates),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the result JSON here ('-' for stdout)")] = None,
    mode: Annotated[str, typer.Option(help="newton or ascent")] = UnlearnSettings.mode,
    alpha: Annotated[Optional[float], typer.Option(help="unlearning step size α (default: chosen from --relative-step)")] = None,
    relative_step: Annotated[float, typer.Option(help="with no --alpha: first step's size rms(Δ)/rms(θ)")] = UnlearnSettings.relative_step,
    steps: Annotated[int, typer.Option(help="ascent steps (newton: 1)")] = UnlearnSettings.steps,
    subset: Annotated[str, typer.Option(help="blocks, self_attn, cross_attn or cross_attn_kv")] = UnlearnSettings.subset,
    unlearn_draws: Annotated[int, typer.Option(help="draws averaged for the query gradient")] = UnlearnSettings.unlearn_draws,
    damping: Annotated[Optional[float], typer.Option(help="λ as a fraction of the mean Fisher (default: the index's)")] = None,
    ewc: Annotated[float, typer.Option(help="EWC weight in [0, 1] (ascent)")] = UnlearnSettings.ewc,
    normalize: Annotated[str, typer.Option(help="self: τ relative to each segment's sensitivity; none: raw τ")] = UnlearnSettings.normalize,
    mask_silence: Annotated[bool, typer.Option(help="mask silent frames out of the query loss")] = True,
    seconds_start: Annotated[float, typer.Option(help="timing conditioning the clip was generated with")] = 0.0,
    seconds_total: Annotated[Optional[float], typer.Option(help="timing conditioning (default: the clip's length)")] = None,
    batch_size: Annotated[int, typer.Option(help="segment-draws per forward pass")] = 64,
    device: Device = "auto",
    sink: Annotated[Optional[list[str]], typer.Option(help="credit sink, repeatable: sidecar (default), tags, ledger, "
                                                           "one from a plugin, or none")] = None,
    ledger: Annotated[Optional[Path], typer.Option(help="credits ledger of the ledger sink (default: $TDA_LEDGER, "
                                                        "else ~/.local/share/tda-plugin/credits.sqlite)")] = None,
    tag_top: Annotated[int, typer.Option(help="credits written as readable text by the tags sink")] = 5,
    sink_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE for third-party sinks, repeatable")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing sidecar instead of keeping its credits in its history")] = False,
) -> None:
    """Attribute saved generations: who made the music in AUDIO? Credits go to the chosen sinks."""
    from tda_plugin.attributor import Attributor
    from tda_plugin.report import artists_table, credits_table
    from tda_plugin.sinks import DEFAULT_SINKS, SinkOptions, check_sinks, write_credits

    unlearn = UnlearnSettings(mode=mode, alpha=alpha, relative_step=relative_step, steps=steps, subset=subset, unlearn_draws=unlearn_draws,
                              damping=damping, ewc=ewc, normalize=normalize, mask_silence=mask_silence)  # type: ignore[arg-type]
    settings = AttributeSettings(unlearn, top=top, candidates=_candidates(candidates), batch_size=batch_size)
    sinks = [] if sink == ["none"] else list(sink or DEFAULT_SINKS)
    check_sinks(sinks, have_file=True)  # a misspelt sink fails before any work
    options = SinkOptions(ledger=ledger, tag_top=tag_top, overwrite=overwrite, extra=_key_values(sink_option or []))
    attributor = Attributor.from_index(index, device=_device(device))
    results = []
    for path in audio:
        result = attributor.attribute_file(path, prompt=prompt, settings=settings, seconds_start=seconds_start,
                                           seconds_total=seconds_total).to_dict()
        results.append(result)
        for receipt in write_credits(result, path, sinks, options):
            err.print(f"{path}: credits -> {receipt.sink}: {receipt.location}", soft_wrap=True)
        if json_out is None or str(json_out) != "-":
            out.print(credits_table(result, top=top))
            out.print(artists_table(result))
    if json_out is not None:
        doc = json.dumps(results[0] if len(results) == 1 else results, indent=2)
        if str(json_out) == "-":
            print(doc)
        else:
            from tda_plugin.atomic import write_text

            write_text(json_out, doc + "\n")
    vetoed = [r for r in results if r["vetoes"]]
    for r in vetoed:
        err.print(f"[yellow]not released[/] {r['query']['path']}: {'; '.join(r['vetoes'])}", soft_wrap=True)
    if vetoed:
        raise typer.Exit(EXIT_VETOED)


def _key_values(pairs: list[str]) -> dict[str, str]:
    try:
        return dict(p.split("=", 1) for p in pairs)
    except ValueError:
        raise typer.BadParameter("--sink-option takes KEY=VALUE") from None


@app.command()
@guarded
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where everything is written")] = Path("demo-out"),
    corpus: Annotated[Optional[Path], typer.Option(help="a real catalogue (DIR/tracks.csv) instead of the synthetic one")] = None,
    minutes: Annotated[float, typer.Option(help="training budget (wall clock)")] = 3.0,
    clips: Annotated[int, typer.Option(help="clips to generate and attribute")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    adapter: Annotated[str, typer.Option(help="toolkit whose small model the demo trains: stable-audio or audiocraft")] = "stable-audio",
    device: Device = "auto",
    ledger: Annotated[Optional[Path], typer.Option(help="credits ledger the clips' credits are appended to (default: "
                                                        "$TDA_LEDGER, else ~/.local/share/tda-plugin/credits.sqlite)")] = None,
) -> None:
    """Synthesise a catalogue, train a small model of the toolkit's architecture, index, generate, attribute, report."""
    from tda_plugin.demo.pipeline import run_demo
    from tda_plugin.report import credits_table

    run = run_demo(out_dir, corpus=corpus, minutes=minutes, clips=clips, seed=seed, device=_device(device), adapter=adapter,
                   show=lambda r: out.print(credits_table(r.to_dict(), top=5)), ledger=ledger)
    err.print(f"{len(run.clips)} clip(s) in {out_dir}/clips (WAV + .wav.credits.json), credits appended to {run.ledger}; "
              f"prompted style's artist credited first in {run.styles_credited_first}/{len(run.clips)}; "
              f"report: {run.report}")


@app.command()
@guarded
def plugins(as_json: Annotated[bool, typer.Option("--json", help="print JSON (with descriptions)")] = False,
            long: Annotated[bool, typer.Option("--long", "-l", help="add a description column")] = False) -> None:
    """List every adapter, embedder, credit sink and lifecycle hook, with the distribution providing it."""
    from rich.text import Text

    from tda_plugin.plugins import FAILED, HOOK_ERRORS, UNKNOWN_HOOKS, get_plugin_manager, source_of
    from tda_plugin.registry import provided

    pm = get_plugin_manager()
    rows = [(p.kind, p.spec.name, p.plugin, p.spec.description) for p in
            provided("tda_adapters", "adapter") + provided("tda_embedders", "embedder") + provided("tda_credit_sinks", "credit sink")]
    rows += [("hook", hook, impl.plugin_name, (impl.function.__doc__ or "").strip().split("\n")[0])
             for hook in ("tda_index_built", "tda_before_attribution", "tda_after_attribution")
             for impl in getattr(pm.hook, hook).get_hookimpls()]
    if as_json:
        print(json.dumps({"version": __version__, "hookspec": HOOKSPEC_VERSION,
                          "provided": [{"kind": k, "name": n, "plugin": p, "distribution": source_of(p).distribution,
                                        "version": source_of(p).version, "description": d} for k, n, p, d in rows],
                          "failed": FAILED, "unknown_hooks": UNKNOWN_HOOKS,
                          "hook_errors": [{"hook": h, "plugin": p, "error": e} for (h, p), e in HOOK_ERRORS.items()]}, indent=2))
    else:
        table = Table(title=f"tda-plugin {__version__} (hookspec {HOOKSPEC_VERSION})", title_justify="left")
        for col in ("kind", "name", "distribution", "version", "plugin"):
            table.add_column(col, no_wrap=True)  # data: never wrapped or cut
        if long:
            table.add_column("description", style="dim")
        for kind, name, plugin, description in rows:
            src = source_of(plugin)
            table.add_row(kind, Text(name), src.distribution, src.version, plugin, *([Text(description)] if long else []))
        out.print(table)
    for name, why in FAILED.items():
        err.print(f"[yellow]plugin {name!r} failed to load:[/] {why}", soft_wrap=True)
    for name, hooks in UNKNOWN_HOOKS.items():
        err.print(f"[yellow]plugin {name!r} implements unknown hook(s):[/] {', '.join(hooks)}", soft_wrap=True)
    for (hook, name), why in HOOK_ERRORS.items():
        err.print(f"[yellow]plugin {name!r} raised in {hook}:[/] {why}", soft_wrap=True)


app.command()(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
