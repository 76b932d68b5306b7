"""The `isl-rt` command line: parse, call the library, print.

One module per command family registers its commands on the one Typer app of ``_app``; every
command is a small function, and a user error (:class:`IslError`) prints one sentence and exits
1, with no traceback.
"""

from __future__ import annotations

from isl_rt.cli import bench, engine, evaluate, info, listen, precision, report, scan, train  # noqa: F401  (each registers its commands)
from isl_rt.cli._app import app


__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
