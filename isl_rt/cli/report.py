"""The `report` command: the static HTML report of a scores CSV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from isl_rt.cli._app import app, command_line, user_errors

if TYPE_CHECKING:
    from isl_rt.report import ReportSummary


@app.command()
@user_errors
def report(
    scores: Annotated[Path, typer.Argument(metavar="SCORES_CSV", help="Scores CSV written by isl-rt scan.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for the report (index.html, a page per series, images).")] = Path("report"),
    labels: Annotated[Path | None, typer.Option("--labels", help="labels.csv (SeriesInstanceUID,label[,disorder_type,size_class]): shows each series' label beside its score.")] = None,
) -> None:
    """Write a static HTML report of a scan: an index sorted by scan score and a slice viewer with heat maps per series."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from isl_rt.evaluate import read_labels
    from isl_rt.report import write_report

    start = time.perf_counter()
    known = None if labels is None else read_labels(labels)
    with Progress(TextColumn("[bold]report"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task("report", total=None)
        summary = write_report(scores, out, labels=known,
                               on_row=lambda done, total: progress.update(task, completed=done, total=total))
    echo_report(summary)
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")


def echo_report(summary: "ReportSummary", *, err: bool = False) -> None:
    """The lines every command that writes a report ends with: what it holds and where to open it."""
    missing = []
    if summary.without_slices:
        missing.append(f"{summary.without_slices} without slices (source not readable)")
    if summary.without_heat:
        missing.append(f"{summary.without_heat} without heat maps")
    typer.echo(f"report: {summary.pages} series pages{' (' + ', '.join(missing) + ')' if missing else ''}, "
               f"{summary.errors} error rows, {summary.skipped} skipped", err=err)
    typer.echo(f"open {summary.index.resolve()}", err=err)
