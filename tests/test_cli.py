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


@pytest.mark.parametrize("command", [["inspect"], ["scan"], ["calibrate", "--bundle", "no-bundle"], ["bench"]],
                         ids=lambda command: command[0])
def test_a_missing_folder_or_a_file_is_refused_in_the_words_of_every_command(command, tmp_path):
    """Before any bundle is read: "does not exist" when nothing is there, "is not a folder" for a file."""
    missing, file = tmp_path / "nope", tmp_path / "file.dcm"
    file.write_text("x")
    for path, words in ((missing, "does not exist"), (file, "is not a folder")):
        result = runner.invoke(app, [command[0], str(path), *command[1:]])
        assert result.exit_code == 1, result.output
        assert result.output == f"error: {path} {words}: pass the folder that holds the DICOM files or image folders.\n"


@pytest.mark.parametrize("command", [["scan", "--out", "{out}/s.csv", "--report", "{out}/report", "--dicom-out", "{out}/dicom"],
                                     ["calibrate", "--bundle", "no-bundle", "--out", "{out}/c.csv"]],
                         ids=lambda command: command[0])
def test_a_folder_with_nothing_to_scan_is_refused_before_any_output(command, tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "out"
    (empty / "sub" / ".hidden").mkdir(parents=True)
    (empty / ".DS_Store").write_text("x")  # hidden files are not looked at
    result = runner.invoke(app, [command[0], str(empty), *(arg.format(out=out) for arg in command[1:])])
    assert result.exit_code == 1, result.output
    assert result.output == (f"error: {empty} holds no DICOM series or image folder to scan: no file is under it (hidden "
                             "ones aside) to read as DICOM or as a PNG, JPEG or TIFF image; nothing was written.\n")
    assert not out.exists()


def test_holds_files_stops_at_the_first_file_discovery_would_see(tmp_path):
    from isl_rt.io.series import holds_files

    (tmp_path / "a" / ".git").mkdir(parents=True)
    (tmp_path / "a" / ".git" / "HEAD").write_text("x")
    assert not holds_files(tmp_path)
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "a" / "b" / "notes.txt").write_text("x")  # not DICOM: a skipped row, so something to write
    assert holds_files(tmp_path)


def test_listen_help_says_the_default_bind_is_every_interface_and_how_to_keep_to_loopback():
    command = typer.main.get_command(app).commands["listen"]
    [bind] = [p for p in command.params if p.name == "bind"]
    assert bind.default == "0.0.0.0"  # unchanged: a scanner on the network must reach the node
    text = " ".join(runner.invoke(app, ["listen", "--help"]).output.replace("│", " ").split())
    assert "0.0.0.0 is every network interface: anyone who can reach the port can send studies" in text
    assert "--bind 127.0.0.1 listens on loopback only" in text


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words) or "isl-rt")
def test_help_at_80_columns_shows_every_option_name_whole(words, monkeypatch):
    """Rich cuts a column that does not fit with an ellipsis: an option name must never be cut."""
    monkeypatch.setenv("COLUMNS", "80")
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    text = runner.invoke(app, [*words, "--help"]).output
    assert max(len(line) for line in text.splitlines()) <= 80
    names = [name for p in command.params if not getattr(p, "hidden", False) for name in (*p.opts, *p.secondary_opts)]
    cut = [name for name in names if name.startswith("-") and not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
    assert not cut, f"cut in `isl-rt {' '.join(words)} --help`: {cut}"
