"""`tda report CLIPS... --out report.html`: one page for people, from the credits stored with attributed clips."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from .console import err
from .errors import guarded


@guarded
def report(
    clips: Annotated[list[Path], typer.Argument(help="attributed audio files, or folders of them")],
    out: Annotated[Path, typer.Option("--out", help="the page to write")] = Path("report.html"),
    index: Annotated[Optional[Path], typer.Option(help="the index the clips were attributed with: adds players for "
                                                       "their top training segments")] = None,
    title: Annotated[str, typer.Option(help="the page's title")] = "tda-plugin attribution report",
    top: Annotated[int, typer.Option(help="credited tracks listed per clip")] = 10,
    audio_dir: Annotated[Optional[Path], typer.Option(help="write the audio as MP3 files into this folder, linked "
                                                           "from the page, instead of inside the page")] = None,
) -> None:
    """Build an HTML report of attributed clips: what each credit, score and share means, per-artist totals,
    and per clip its credits, artist shares and players (credits read from each clip's tags or sidecar)."""
    from tda_plugin.report_files import build_report

    page = build_report(clips, out, index=index, title=title, top=top, audio_dir=audio_dir)
    err.print(Text(f"report: {page} ({page.stat().st_size / 1e6:.2f} MB)"), soft_wrap=True)
