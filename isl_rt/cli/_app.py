"""The Typer app every command module registers on, and what all commands share: a user error
(:class:`IslError`) becomes one sentence on stderr and exit status 1, with no traceback."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

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


def user_errors(func: F) -> F:
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


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def command_line() -> str:
    """The command line as the user typed it, for verdict lines and training records."""
    return " ".join(["isl-rt", *sys.argv[1:]])
