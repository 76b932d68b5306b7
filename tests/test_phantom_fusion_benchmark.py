"""benchmarks/phantom_fusion.py: the healthy scale, the fused score, and a run end to end on the
small bundle and a three-series cohort."""

from __future__ import annotations

import shutil

import numpy as np
import pytest


def test_the_benchmark_fits_the_scales_on_healthy_rows_and_fuses_as_the_runtime(load_benchmark, small_bundle):
    fusion = load_benchmark("phantom_fusion")
    healthy = [{"label": 0, "drn": d, "bright": b, "dark": k} for d, b, k in
               [(1.0, 0.0, 0.01), (1.2, 0.001, 0.02), (1.4, 0.002, 0.03), (1.6, 0.003, 0.04), (1.8, 0.004, 0.05)]]
    sick = [{"label": 1, "drn": 9.0, "bright": 0.5, "dark": 0.5}]
    spec = fusion.fitted_fusion(small_bundle, healthy + sick)  # the disorder row is not read
    assert spec.n_healthy_scans == 5 and spec.parts[0].median == pytest.approx(1.4)
    assert spec.parts[0].spread == pytest.approx(np.percentile([1, 1.2, 1.4, 1.6, 1.8], 90) - 1.4)
    # a scan unremarkable on the DRN but with a bright patch ten healthy spreads above the median
    rows = [{"drn": 1.4, "bright": 0.002 + 10 * spec.parts[1].spread, "dark": 0.03}, {"drn": 1.4, "bright": 0.002, "dark": 0.03}]
    assert fusion.fused(rows, small_bundle, spec) == pytest.approx([10.0, 0.0])
    with pytest.raises(SystemExit, match="no healthy series"):
        fusion.fitted_fusion(small_bundle, sick)


def test_fusion_tables_land_between_the_markers(load_benchmark, small_bundle, phantom_cohort, tmp_path):
    fusion = load_benchmark("phantom_fusion")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nkept\n")
    args = ["--bundle", str(small_bundle.root), "--dev-cohort", str(phantom_cohort), "--cohort", str(phantom_cohort),
            "--out", str(tmp_path / "fusion"), "--resamples", "20", "--results", str(results)]
    assert fusion.main(args) == 0
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nkept\n") and text.count(fusion.MARK_START) == 1
    assert all(f"| {name} |" in text for name in ("drn", "bright", "dark", "fused"))
    rows = (tmp_path / "fusion" / "test.jsonl").read_text()
    assert len(rows.splitlines()) == 3
    # a second run reuses the cached part scores and replaces the section
    assert fusion.main(args) == 0
    assert (tmp_path / "fusion" / "test.jsonl").read_text() == rows and results.read_text().count(fusion.MARK_START) == 1
    # the same networks with the fusion fitted into the manifest: the cached rows still hold, and the
    # bundle's own scales get a row of their own
    from isl_rt.bundle import calibrate_bundle, set_scan_fusion

    fitted_root = tmp_path / "fitted"
    shutil.copytree(small_bundle.root, fitted_root)
    parts = fusion.fusion_parts(small_bundle.manifest.windows[0].name)
    set_scan_fusion(fitted_root, parts)
    spec = fusion.fitted_fusion(small_bundle, [{"label": 0, "drn": d, "bright": 0.0, "dark": 0.01 * d} for d in (1.0, 2.0, 3.0)])
    calibrate_bundle(fitted_root, [0.0, 1.0], scan_fusion=spec)
    assert fusion.main(["--bundle", str(fitted_root), *args[2:]]) == 0
    assert (tmp_path / "fusion" / "test.jsonl").read_text() == rows
    assert "| fused, the bundle's own scales |" in results.read_text() and "from 3 healthy scans" in results.read_text()
    # the cached rows belong to these cohorts: another development cohort is refused, not mixed in
    other = tmp_path / "other-cohort"
    shutil.copytree(phantom_cohort, other)
    with pytest.raises(SystemExit, match="another bundle or cohort"):
        fusion.main([*args[:2], "--dev-cohort", str(other), *args[4:]])
    assert (tmp_path / "fusion" / "test.jsonl").read_text() == rows
