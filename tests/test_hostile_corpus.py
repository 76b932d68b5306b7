"""`isl-rt scan` on the hostile corpus (benchmarks/hostile_corpus.py): every kind gives the rows
its case names, no traceback, no `ok` row for what is not a usable head, nothing written outside
the output folder, a resumed run adds nothing, and the scan's peak memory stays under
``PEAK_RSS_MIB`` (the corpus holds series that would take 0.5 to 16 GiB if they were decoded)."""

import csv
import importlib.util
import os
import sys
from collections import defaultdict
from pathlib import Path

import subprocess

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hostile_corpus.py"
#: The scan of the corpus peaked at 481 MiB here (the runtimes and one small series at a time);
#: decoding any of its oversized series would add 0.5 GiB (one 16384×16384 slice) to 1 GiB.
PEAK_RSS_MIB = 900
#: Runs the CLI and writes its peak RSS (MiB) to stderr as it exits: ``isl_rt.bench.peak_rss_mib``,
#: the high-water mark (VmHWM) of this program's own memory (getrusage's ru_maxrss would carry
#: over the RSS of the pytest process that spawned it, since the kernel keeps it across exec).
_MEASURED_CLI = ("import atexit, sys\n"
                 "from isl_rt.bench import peak_rss_mib\n"
                 "atexit.register(lambda: sys.stderr.write(f'peak-rss-mib {peak_rss_mib()}\\n'))\n"
                 "from isl_rt.cli import main\nmain()")


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
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from /proc (Linux)")
def test_the_hostile_corpus_gets_the_rows_its_cases_name(small_bundle, tmp_path):
    hostile = _corpus_module()
    corpus = tmp_path / "corpus"
    cases = hostile.write_corpus(corpus)
    before = _tree(tmp_path)
    out = tmp_path / "out" / "scores.csv"
    args = ["scan", str(corpus), "--out", str(out), "--bundle", str(small_bundle.root), "--threads", "1"]
    result = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *args], cwd=tmp_path, capture_output=True, text=True,
                            errors="replace", timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    peak_mib = float(output.rsplit("peak-rss-mib ", 1)[1].split()[0])
    assert peak_mib < PEAK_RSS_MIB, f"scan of the hostile corpus peaked at {peak_mib:.0f} MiB"
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
