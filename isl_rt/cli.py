"""The `isl-rt` command line: parse, call the library, print.

Every command is a small function; a user error (:class:`IslError`) prints one sentence and
exits 1, with no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

import typer

from isl_rt.errors import IslError

app = typer.Typer(
    name="isl-rt",
    help="Find any disorder in head CT with models trained on healthy scans only (ISL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(func: F) -> F:
    """Turn an IslError into its sentence on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except IslError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root() -> None:
    """Find any disorder in head CT with models trained on healthy scans only (ISL)."""


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
@_user_errors
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Version, native and CUDA extension status, OpenMP threads and loadable backends."""
    from isl_rt import info as info_lib

    report = info_lib.collect()
    if as_json:
        _print_json(report)
        return
    typer.echo(f"isl-rt {report['isl_rt']}  (Python {report['python']}, {report['platform']}, {report['cpu_count']} CPUs)")
    for name, ext in report["extensions"].items():
        if ext["built"]:
            details = ", ".join(f"{k}={v}" for k, v in ext.items() if k != "built")
            typer.echo(f"  isl_rt.{name}: built ({details})")
        else:
            typer.echo(f"  isl_rt.{name}: not built ({ext['error']})")
    for name, backend in report["backends"].items():
        if backend["available"]:
            extra = f", providers={backend['providers']}" if "providers" in backend else ""
            typer.echo(f"  backend {name}: available ({backend.get('version')}{extra})")
        else:
            typer.echo(f"  backend {name}: not installed ({backend.get('install', backend.get('error'))})")


@app.command()
@_user_errors
def evaluate(
    scores: Annotated[Path, typer.Argument(help="scores.csv written by `isl-rt scan`.")],
    labels: Annotated[Path, typer.Argument(help="labels.csv with SeriesInstanceUID, label (0/1) and optionally disorder_type, size_class, urgency.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md, metrics.json and ROC PNGs.")],
    bootstrap: Annotated[int, typer.Option(help="Resamples for the 95% CIs.")] = 1000,
    fraction: Annotated[float, typer.Option(help="Share of the scans drawn in each resample.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of the summary.")] = False,
) -> None:
    """AUC overall, per disorder type, by size and urgency, with bootstrap CIs and ROC curves."""
    from isl_rt import evaluate as evaluate_lib

    result = evaluate_lib.evaluate(scores, labels, out, resamples=bootstrap, fraction=fraction, seed=seed)
    if as_json:
        _print_json(result)
        return
    typer.echo(evaluate_lib.render_markdown(result))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'roc_by_disorder.png'}")


@app.command("inspect")
@_user_errors
def inspect_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder tree of DICOM files.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON entry per series or skipped item.")] = False,
) -> None:
    """List the CT series found under DIR (headers only) and what was skipped, and why."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from isl_rt.io.dicom import inspect_tree

    entries = inspect_tree(directory)
    if as_json:
        _print_json(entries)
        return
    counts = {s: sum(e["status"] == s for e in entries) for s in ("ok", "skipped", "error")}
    table = Table(show_lines=False, pad_edge=False)
    table.add_column("status")
    table.add_column("path", overflow="fold", ratio=2)
    table.add_column("series", overflow="fold", ratio=1)
    table.add_column("slices", justify="right")
    table.add_column("matrix, spacing (mm)", overflow="fold", ratio=1)
    table.add_column("notes", overflow="fold", ratio=3)
    style = {"ok": "green", "skipped": "yellow", "error": "red"}
    root = Path(directory)
    for e in entries:
        path = Path(e["path"])
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if e["status"] == "ok":
            name = " ".join(str(v) for v in (e["SeriesNumber"], e["SeriesDescription"]) if v not in (None, ""))
            r, c = e["pixel_spacing"]
            geometry = f"{e['matrix'][0]}×{e['matrix'][1]}, {e['slice_spacing']:g}×{r:g}×{c:g}"
            row = [Text(name or "-"), str(e["n_slices"]), geometry, Text("; ".join(e["warnings"]))]
        else:
            files = f"{e['n_files']} files: " if e["n_files"] > 1 else ""
            row = ["", "", "", Text(files + e["reason"])]
        table.add_row(Text(e["status"], style=style[e["status"]]), Text(shown), *row)
    console = Console(soft_wrap=False)
    console.print(table)
    console.print(
        f"{counts['ok']} series ok, {counts['skipped']} skipped, "
        f"{counts['error']} error{'s' if counts['error'] != 1 else ''}",
        highlight=False,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
