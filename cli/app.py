"""The `tda` command line: thin — parse, call the Python API, render with Rich.

Data goes to stdout (tables, ``--json -``, ``--csv -``); progress, warnings and errors go to stderr.
Module-level imports stay light (typer, rich, the settings dataclasses): torch, FAISS and the toolkits load
inside the commands that need them, so ``tda --help`` and ``tda --version`` answer at once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from tda_plugin import __version__

from . import console
from .attribute import attribute
from .console import err, out, say
from .credits import credits_app
from .errors import guarded
from .eval import eval_app
from .index import index_app
from .options import Device, device_name
from .report import report

app = typer.Typer(help="Training data attribution by unlearning for music generative models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")
app.add_typer(credits_app, name="credits")
app.command()(attribute)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tda-plugin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress details, and show third-party "
                                                                         "output (toolkit progress bars, warnings)")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    console.verbose = verbose
    console.configure_logging()


@app.command()
@guarded
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where everything is written")] = Path("demo-out"),
    corpus: Annotated[Optional[Path], typer.Option(help="a real catalogue (DIR/tracks.csv) instead of the synthetic one")] = None,
    train: Annotated[bool, typer.Option("--train", help="train the demo model from scratch instead of using the shipped one")] = False,
    clips: Annotated[int, typer.Option(help="clips to generate and attribute (prompts spread over the styles)")] = 8,
    seed: Annotated[int, typer.Option()] = 0,
    adapter: Annotated[str, typer.Option(help="toolkit whose small model the demo trains: stable-audio or audiocraft")] = "stable-audio",
    device: Device = "auto",
    ledger: Annotated[Optional[Path], typer.Option(help="credits ledger the clips' credits are appended to (default: "
                                                        "$TDA_LEDGER, else ~/.local/share/tda-plugin/credits.sqlite)")] = None,
) -> None:
    """Synthesise a catalogue, take the shipped model trained on it (or train one), index, generate, attribute, report."""
    from tda_plugin import progress
    from tda_plugin.demo.pipeline import run_demo
    from tda_plugin.report import credits_table

    def show(result: object) -> None:
        with progress.paused():
            out.print(credits_table(result.to_dict(), top=5))  # type: ignore[attr-defined]

    run = run_demo(out_dir, corpus=corpus, train=train, clips=clips, seed=seed, device=device_name(device),
                   adapter=adapter, show=show, ledger=ledger)
    fit = run.style_fit
    settled = (f"that first artist is settled in {run.artists_settled}/{len(run.clips)}" if run.artists_settled is not None
               else f"whether that first artist is settled is not estimable ({run.not_estimable})")
    err.print(Text(f"{len(run.clips)} clip(s) in {out_dir}/clips (WAV + .wav.credits.json), credits appended to {run.ledger}; "
                   f"the model's clips sound like the prompted artist in {fit.hits}/{fit.total} (independent check); "
                   f"the prompted artist is credited first in {run.styles_credited_first}/{len(run.clips)}; "
                   f"{settled}; report: {run.report}"), soft_wrap=True)


@app.command()
@guarded
def plugins(as_json: Annotated[bool, typer.Option("--json", help="print JSON (with descriptions)")] = False,
            long: Annotated[bool, typer.Option("--long", "-l", help="add a description column")] = False) -> None:
    """List every adapter, embedder, credit sink and lifecycle hook, with the distribution providing it."""
    from tda_plugin.hookspecs import HOOKSPEC_VERSION
    from tda_plugin.plugins import FAILED, HOOK_ERRORS, UNKNOWN_HOOKS, get_plugin_manager, source_of
    from tda_plugin.registry import provided

    from .console import write_data

    pm = get_plugin_manager()
    rows = [(p.kind, p.spec.name, p.plugin, p.spec.description) for p in
            provided("tda_adapters", "adapter") + provided("tda_embedders", "embedder") + provided("tda_credit_sinks", "credit sink")]
    rows += [("hook", hook, impl.plugin_name, (impl.function.__doc__ or "").strip().split("\n")[0])
             for hook in ("tda_index_built", "tda_before_attribution", "tda_after_attribution")
             for impl in getattr(pm.hook, hook).get_hookimpls()]
    if as_json:
        write_data(json.dumps({"version": __version__, "hookspec": HOOKSPEC_VERSION,
                               "provided": [{"kind": k, "name": n, "plugin": p, "distribution": source_of(p).distribution,
                                             "version": source_of(p).version, "description": d} for k, n, p, d in rows],
                               "failed": FAILED, "unknown_hooks": UNKNOWN_HOOKS,
                               "hook_errors": [{"hook": h, "plugin": p, "error": e} for (h, p), e in HOOK_ERRORS.items()]},
                              indent=2) + "\n")
    else:
        table = Table(title=f"tda-plugin {__version__} (hookspec {HOOKSPEC_VERSION})", title_justify="left")
        for col in ("kind", "name", "distribution", "version", "plugin"):
            table.add_column(col, no_wrap=True)  # data: never wrapped or cut
        if long:
            table.add_column("description", style="dim")
        for kind, name, plugin, description in rows:
            src = source_of(plugin)
            table.add_row(kind, Text(name), Text(src.distribution), Text(src.version), Text(plugin),
                          *([Text(description)] if long else []))
        out.print(table)
    for name, why in FAILED.items():
        say(f"plugin {name!r} failed to load:", "yellow", why)
    for name, hooks in UNKNOWN_HOOKS.items():
        say(f"plugin {name!r} implements unknown hook(s):", "yellow", ", ".join(hooks))
    for (hook, name), why in HOOK_ERRORS.items():
        say(f"plugin {name!r} raised in {hook}:", "yellow", why)


app.command()(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
