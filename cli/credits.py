"""`tda credits show|list|export`: read credits back from audio files and the credits ledger."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from .console import out, write_data
from .errors import err, guarded

credits_app = typer.Typer(help="Read credits back: from an audio file's tags or sidecar, or from the ledger.",
                          no_args_is_help=True)

Ledger = Annotated[Optional[Path], typer.Option(help="credits ledger (default: $TDA_LEDGER, else ~/.local/share/tda-plugin/credits.sqlite)")]
Artist = Annotated[Optional[str], typer.Option(help="only this artist's credits")]
Since = Annotated[Optional[str], typer.Option(help="only credits from this date (YYYY-MM-DD, UTC) or ISO time on")]


@credits_app.command("show")
@guarded
def show(audio: Annotated[Path, typer.Argument(help="an attributed audio file")],
         as_json: Annotated[bool, typer.Option("--json", help="print the full result JSON")] = False,
         top: Annotated[int, typer.Option(help="credits to show")] = 10) -> None:
    """Show the credits stored with AUDIO (its tags, else its <audio>.credits.json)."""
    from tda_plugin.report import artists_table, credits_table
    from tda_plugin.sinks.read import read_credits

    if audio.is_dir():
        from tda_plugin.errors import AudioError

        raise AudioError(f"{audio}: is a directory; `tda credits show` takes one audio file")
    doc, where = read_credits(audio)
    err.print(Text(f"credits from {where}"), soft_wrap=True)
    if as_json:
        write_data(json.dumps(doc, indent=2) + "\n")
        return
    out.print(credits_table(doc, top=top))
    out.print(artists_table(doc))


def _rows(ledger: Optional[Path], artist: Optional[str], since: Optional[str]) -> list[dict]:
    from tda_plugin.sinks.ledger import Ledger as LedgerDB

    with LedgerDB(ledger, create=False) as db:
        return [r.to_dict() for r in db.rows(artist=artist, since=since)]


@credits_app.command("list")
@guarded
def list_(ledger: Ledger = None, artist: Artist = None, since: Since = None) -> None:
    """List ledger rows: which generated file credited which track, when, by which model."""
    rows = _rows(ledger, artist, since)
    table = Table(title=f"{len(rows)} credit(s)" + (f" of {artist}" if artist else ""), title_justify="left")
    table.add_column("when (UTC)", no_wrap=True)
    for col in ("generated", "prompt", "artist", "title"):
        table.add_column(col)
    table.add_column("share", justify="right", no_wrap=True)
    for r in rows:
        generated = Path(r["generated"]).name if r["generated"] else "-"
        table.add_row(r["created_at"][:16].replace("T", " "), Text(generated), Text(str(r["prompt"] or "")),
                      Text(str(r["artist"])), Text(str(r["title"])), f"{100 * r['share']:.1f}%")
    out.print(table)


@credits_app.command("export")
@guarded
def export(fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
           out_path: Annotated[Optional[Path], typer.Option("--out", help="file to write (default: stdout)")] = None,
           ledger: Ledger = None, artist: Artist = None, since: Since = None) -> None:
    """Export ledger rows (every column, the method as JSON) for accounting."""
    from tda_plugin.atomic import write_text
    from tda_plugin.errors import TdaError
    from tda_plugin.sinks.ledger import COLUMNS

    if fmt not in ("csv", "json"):
        raise TdaError(f"unknown export format {fmt!r} (csv or json)")
    rows = _rows(ledger, artist, since)
    if fmt == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "method": json.dumps(r["method"], sort_keys=True)} for r in rows)
        text = buf.getvalue()
    if out_path is None:
        write_data(text)
    else:
        write_text(out_path, text)
        err.print(Text(f"{len(rows)} row(s) -> {out_path}"))
