"""What every command of the `isl-rt` command line shares: --version, -h, the usage lines."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import isl_rt
from isl_rt.cli import app

runner = CliRunner()


def _commands() -> list[list[str]]:
    """Every command and command group, as the words that name it (``[]`` is the app itself)."""
    found: list[list[str]] = []

    def walk(command: object, words: list[str]) -> None:
        found.append(words)
        for name, sub in getattr(command, "commands", {}).items():  # a group
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _commands()


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"isl-rt {isl_rt.__version__}\n"


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words) or "isl-rt")
def test_h_is_help_on_the_app_and_every_command(words):
    assert ["scan"] in COMMANDS and ["train", "dedn"] in COMMANDS  # the walk reaches the commands
    short, long = runner.invoke(app, [*words, "-h"]), runner.invoke(app, [*words, "--help"])
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.output == long.output and "Usage: isl-rt" in short.output


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words) or "isl-rt")
def test_every_argument_is_named_in_upper_case_in_the_usage_line(words):
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    usage = runner.invoke(app, [*words, "--help"]).output
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        assert param.metavar is not None and re.fullmatch(r"[A-Z][A-Z0-9_]*", param.metavar), (words, param.name, param.metavar)
        assert re.search(rf"[{{\[]{param.metavar}[}}\]]", usage), (words, param.metavar)
