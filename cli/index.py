"""`tda index build | info | verify`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from tda_plugin.settings import IndexSettings

from .console import err, out, say, write_data
from .errors import guarded
from .fields import settings_from
from .options import Device, device_name

index_app = typer.Typer(help="Build, inspect and verify attribution indexes.", no_args_is_help=True)


@index_app.command("build")
@guarded
def index_build(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Argument(help="catalogue directory with tracks.csv (or the CSV itself)")],
    out_dir: Annotated[Path, typer.Option("--out", help="index directory to create, resume or repair")],
    ckpt: Annotated[Path, typer.Option("--ckpt", "--checkpoint", help="model checkpoint (model.safetensors / model.ckpt)")],
    model_config: Annotated[Optional[Path], typer.Option(help="model_config.json (default: beside the checkpoint)")] = None,
    adapter: Annotated[str, typer.Option(help="model adapter (see `tda plugins`)")] = "stable-audio",
    segment_seconds: Annotated[Optional[float], typer.Option(help="segment length; default: the model's sample_size")] = None,
    draws: Annotated[int, typer.Option(help="loss draws (timestep, noise) per segment (one for MusicGen, whose loss has none)")] = IndexSettings.draws,
    seed: Annotated[int, typer.Option(help="seed of all fixed randomness")] = IndexSettings.seed,
    fisher_segments: Annotated[int, typer.Option(help="segments sampled for the diagonal Fisher")] = IndexSettings.fisher_segments,
    embedder: Annotated[str, typer.Option(help="prefilter embedder")] = IndexSettings.embedder,
    shard_size: Annotated[int, typer.Option(help="segments per shard (unit of resumption)")] = IndexSettings.shard_size,
    damping: Annotated[float, typer.Option(help="λ of the stored sensitivities, as a fraction of the mean Fisher")] = IndexSettings.damping,
    unconditional: Annotated[bool, typer.Option(help="also cache every statistic under the model's null conditioning, "
                                                     "for clips without a prompt (where the adapter has one; doubles "
                                                     "the statistics stage)")] = IndexSettings.unconditional,
    batch_size: Annotated[int, typer.Option(help="segment-draws per forward pass")] = 64,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="replace an index built with other settings (or whose index.json is damaged)")] = False,
) -> None:
    """Build the attribution index of a catalogue for one model; rerun it to resume an interrupted build or
    to repair a damaged one."""
    from tda_plugin import progress
    from tda_plugin.index.builder import build_index
    from tda_plugin.registry import load_adapter

    settings = settings_from(IndexSettings, ctx.params)
    with progress.stage("load model"):
        model = load_adapter(adapter, ckpt, model_config=model_config, device=device_name(device))
    report = build_index(corpus, out_dir, model, checkpoint=ckpt, model_config=model_config or ckpt.with_name("model_config.json"),
                         settings=settings, batch_size=batch_size, overwrite=overwrite)
    for path, why in report.failures:
        say("skipped", "yellow", f"{path}: {why}")
    resumed = f", resumed after {report.resumed_shards} finished shard(s)" if report.resumed_shards else ""
    err.print(Text(f"index {out_dir}: {report.segments} segments of {report.tracks} tracks, "
                   f"{len(report.failures)} file(s) skipped{resumed}"), soft_wrap=True)


@index_app.command("info")
@guarded
def index_info(index: Annotated[Path, typer.Argument(help="index directory")],
               as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Describe an index: model fingerprint, adapter, counts, draws, embedder, size. A damaged index is an error."""
    from tda_plugin.index.store import Index

    info = Index(index).info()
    if as_json:
        write_data(json.dumps(info, indent=2) + "\n")
        return
    table = Table(title=Text(f"index {index}"), show_header=False)
    for key, value in info.items():
        table.add_row(key, Text(", ".join(value) if isinstance(value, list) else str(value)))
    out.print(table)


@index_app.command("verify")
@guarded
def index_verify(index: Annotated[Path, typer.Argument(help="index directory")],
                 as_json: Annotated[bool, typer.Option("--json", help="print every problem as JSON")] = False) -> None:
    """Check every file of an index against the checksums its build recorded, and that each one reads
    (SQLite, safetensors, FAISS); name the first damaged file and the command that repairs it."""
    from tda_plugin import progress
    from tda_plugin.errors import IndexDamagedError
    from tda_plugin.index.verify import meta_or_none, repair_command, verify

    meta = meta_or_none(index)
    total = sum(int(e["bytes"]) for e in meta.files.values()) if meta else 0
    with progress.stage("verify", total or None) as advance:
        problems = verify(index, advance)
    if as_json:
        write_data(json.dumps({"index": str(index), "healthy": not problems, "checksums": bool(meta and meta.files),
                               "problems": [{"file": p.name, "problem": p.what} for p in problems],
                               "repair": repair_command(index, meta if meta and meta.complete else None) if problems else None},
                              indent=2) + "\n")
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more damaged file(s))" if len(problems) > 1 else ""
        command = repair_command(index, meta if first.name != "index.json" and meta else None)
        raise IndexDamagedError(f"{Path(index) / first.name}: {first.what}{more}; repair: {command} "
                                "(rebuilds what is damaged and what derives from it; resumable)")
    checked = f"{len(meta.files)} files match their build checksums" if meta and meta.files else \
        "every file reads (no checksums recorded: built before tda-plugin recorded them)"
    err.print(Text(f"index {index}: healthy; {checked}"), soft_wrap=True)
