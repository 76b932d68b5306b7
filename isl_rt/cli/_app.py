"""The Typer app every command module registers on, and what all commands share: a user error
(:class:`IslError`) becomes one sentence on stderr and exit status 1, with no traceback."""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated, Any, Callable, TypeVar

import typer

from isl_rt.errors import IslError


#: ``-h`` as well as ``--help``: set on the app and on every sub-app (``train``); each command's
#: context inherits it from its group's
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

def _one_space_between_help_columns() -> None:
    """One space between the columns of a command's options table instead of Typer's two. The
    column of short names that ``-h`` adds made the table too wide for 80 columns, and Rich then
    cut long option names (``--one-series-per-ima…`` in ``scan --help``)."""
    try:
        from typer import rich_utils
    except ImportError:  # Typer without Rich: Click's plain help, no table
        return
    if hasattr(rich_utils, "STYLE_OPTIONS_TABLE_PADDING"):
        rich_utils.STYLE_OPTIONS_TABLE_PADDING = (0, 1, 0, 0)  # top, right, bottom, left


_one_space_between_help_columns()

app = typer.Typer(
    name="isl-rt",
    context_settings=CONTEXT_SETTINGS,
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


def _print_version(value: bool) -> None:
    if value:
        from isl_rt import __version__

        typer.echo(f"isl-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version of isl-rt and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    """Find any disorder in head CT with models trained on healthy scans only (ISL)."""


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def command_line() -> str:
    """The command line as the user typed it, for verdict lines and training records."""
    return " ".join(["isl-rt", *sys.argv[1:]])
