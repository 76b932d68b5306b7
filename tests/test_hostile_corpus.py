"""`isl-rt scan` on the hostile corpus (benchmarks/hostile_corpus.py): every kind gives the rows
its case names, no traceback, no `ok` row for what is not a usable head, nothing written outside
the output folder, and a resumed run adds nothing."""

import csv
import importlib.util
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hostile_corpus.py"


def _corpus_module():
    spec = importlib.util.spec_from_file_location("hostile_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> set[bytes]:
    return {os.path.join(d, f) for d, _, files in os.walk(os.fsencode(root)) for f in files}


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values the corpus forges
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the corpus holds a FIFO")
def test_the_hostile_corpus_gets_the_rows_its_cases_name(small_bundle, tmp_path):
    hostile = _corpus_module()
    corpus = tmp_path / "corpus"
    cases = hostile.write_corpus(corpus)
    before = _tree(tmp_path)
    out = tmp_path / "out" / "scores.csv"
    args = ["scan", str(corpus), "--out", str(out), "--bundle", str(small_bundle.root), "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output[-3000:]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    got = defaultdict(list)
    for row in rows:
        got[hostile.kind_of(row["path"], corpus)].append(row["status"])
    wrong = {kind: (tuple(sorted(got.get(kind, []))), case.statuses) for kind, case in cases.items()
             if tuple(sorted(got.get(kind, []))) != case.statuses}
    assert not wrong, wrong
    assert all(r["error"] for r in rows if r["status"] != "ok")  # every row not scored says why
    written = {p for p in _tree(tmp_path) - before if not p.startswith(os.fsencode(out.parent))}
    assert not written, written
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    with out.open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)  # resumed: nothing added, nothing lost
