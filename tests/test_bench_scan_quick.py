"""benchmarks/bench_scan.py: ``--quick`` runs end to end (its reference pipeline included) and
prints its ratio rows; the reference's cavity is the runtime's, every CavityArgs field used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the reference pipeline runs the bundle's torch weights
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode_exits_0_and_prints_its_ratio_rows():
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scan.py"), "--quick", "--threads", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["kind"] == "machine"
    reference = [r for r in rows if r.get("pipeline") == "reference"]
    assert len(reference) == 1 and reference[0]["slices"] == 2 and reference[0]["rounds"] == 1
    assert reference[0]["slices_per_s"] > 0
    ratios = [r for r in rows if r.get("pipeline") == "optimised"]
    # --quick: ONNX Runtime only, the exact K×K partition and the strided one
    assert {(r["backend"], r["partition"]) for r in ratios} == {("onnxruntime", "4x4"), ("onnxruntime", "stride2")}
    for r in ratios:
        assert r["slices"] == 2 and r["rounds"] == 1 and r["speedup_vs_reference"] > 0
        assert r["speedup_range"][0] <= r["speedup_vs_reference"] <= r["speedup_range"][1]
    assert rows[-1]["summary"] == "scan"


@pytest.mark.parametrize("air_margin", [0, 8])  # 8 pixels of a 64-pixel slice reach into this phantom's cavity
def test_the_reference_cavity_is_the_runtimes(load_benchmark, air_margin):
    from isl_rt.bundle import CavityArgs
    from isl_rt.io.phantom import generate_study
    from isl_rt.kernels import window
    from isl_rt.pipeline import cavity_mask

    bench_scan = load_benchmark("bench_scan")
    hu = generate_study(900_000).hu
    hu = hu[hu.shape[0] // 2:][:2]
    windows = np.array([[40, 80], [50, 150], [600, 2800]], dtype=np.float32)
    x = window(hu, windows, 64)
    cavity = CavityArgs(channel=2, bone=(300 - (600 - 1400)) / 2800, margin=2, sides=4, largest=True, air_margin=air_margin)
    mask = bench_scan.reference_cavity(x, cavity)
    assert mask.sum() > 0
    if air_margin:  # the margin takes pixels out: a reference that dropped it would not match
        assert mask.sum() < bench_scan.reference_cavity(x, cavity._replace(air_margin=0)).sum()
    np.testing.assert_array_equal(mask, cavity_mask(x, cavity))
