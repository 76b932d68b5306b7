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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
