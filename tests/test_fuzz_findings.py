"""Every input the fuzzers (benchmarks/fuzz_dicom.py, benchmarks/fuzz_images.py) found a crash
with, replayed through the same reading as scan does: it must end in a result or an InputError.

The findings live in tests/data/fuzz/<harness>/, one file each, in the harness's input format (a
first byte, then the file); benchmarks/RESULTS.md lists what each was.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = sorted((ROOT / "tests" / "data" / "fuzz").glob("*/*"))


def _harness(name: str):
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}_harness", ROOT / "benchmarks" / f"fuzz_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("finding", FINDINGS, ids=[f"{p.parent.name}/{p.name}" for p in FINDINGS])
def test_fuzz_finding_is_read_without_a_crash(finding, tmp_path):
    _harness(finding.parent.name).one_input(finding.read_bytes(), tmp_path)
