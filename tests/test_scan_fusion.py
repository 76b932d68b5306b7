"""The fused scan score: its parts on hand-made images, its manifest form, and `isl-rt calibrate
--scan-fusion` then `isl-rt scan` end to end on the small bundle."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.bundle import (
    BundleError,
    FusionPart,
    ResidualArgs,
    ScanFusionSpec,
    calibrate_bundle,
    fit_scan_fusion,
    load_bundle,
    set_scan_fusion,
)

from isl_rt.outputs import safe_name
from isl_rt.pipeline import FusionArgs, fused_scan_score, fusion_part_scores, series_json_dir

PATCH = ResidualArgs(0, 0.2, "largest", 0, True)


def _volume():
    """Four slices of 16×16 gray at 0.5 with a dedisorder image equal to it, but a 3×3 patch
    0.3 brighter on slices 1 and 2 and a 2×4 patch 0.3 darker on slices 2 and 3."""
    x = np.full((4, 1, 16, 16), 0.5, dtype=np.float32)
    dd = x.copy()
    x[1:3, 0, 2:5, 2:5] += 0.3
    x[2:4, 0, 10:12, 8:12] -= 0.3
    x[0, 0, 8, 8] += 0.3  # a speck on one slice only: not on an adjacent slice, so not counted
    return x, dd


def test_the_parts_read_the_slice_scores_and_the_bright_and_dark_patches():
    x, dd = _volume()
    slice_scores = np.array([1.0, 2.0, 3.0, 6.0], dtype=np.float32)
    fusion = [FusionArgs("slice", None, None, None), FusionArgs("bright", PATCH, None, None),
              FusionArgs("dark", PATCH, None, None)]
    parts = fusion_part_scores(x, dd, None, slice_scores, fusion)
    # slice: the mean; bright: 9 px on 2 of 4 slices; dark: 8 px on 2 of 4 slices (shares of 256 px)
    assert parts == pytest.approx([3.0, 2 * 9 / 256 / 4, 2 * 8 / 256 / 4])
    region = np.ones((4, 16, 16), dtype=np.float32)
    region[:, :, 6:] = 0  # the dark patch lies outside the scored region
    assert fusion_part_scores(x, dd, region, slice_scores, fusion)[2] == 0.0
    assert fused_scan_score(parts, fusion) is None  # not fitted: the mean slice score stays the scan score


def test_the_fused_score_is_the_most_abnormal_part_on_its_healthy_scale():
    fusion = [FusionArgs("slice", None, 1.0, 0.5), FusionArgs("bright", PATCH, 0.001, 0.002),
              FusionArgs("dark", PATCH, 0.01, 0.01)]
    assert fused_scan_score(np.array([1.5, 0.001, 0.0]), fusion) == pytest.approx(1.0)
    assert fused_scan_score(np.array([1.0, 0.021, 0.02]), fusion) == pytest.approx(10.0)  # a bright patch wins
    assert fused_scan_score(np.array([0.5, 0.0, 0.0]), fusion) == pytest.approx(-0.5)


def test_fit_scan_fusion_takes_the_healthy_median_and_spread():
    spec = ScanFusionSpec((FusionPart("slice"), FusionPart("dark", "brain", 0.2)))
    healthy = [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [5.0, 0.0]]
    fitted = fit_scan_fusion(spec, healthy)
    assert fitted.fitted and fitted.n_healthy_scans == 5
    assert (fitted.parts[0].median, fitted.parts[0].spread) == pytest.approx((3.0, np.percentile([1, 2, 3, 4, 5], 90) - 3.0))
    # a part no healthy scan shows: a tiny positive spread, so any such patch stands far out
    assert fitted.parts[1].median == 0.0 and 0 < fitted.parts[1].spread <= 1e-12
    with pytest.raises(BundleError, match="at least 2 healthy scans"):
        fit_scan_fusion(spec, [[1.0, 0.0]])
    with pytest.raises(BundleError, match="not finite"):
        fit_scan_fusion(spec, [[1.0, 0.0], [float("nan"), 0.0]])


def test_the_manifest_keeps_the_fusion_and_refuses_a_bad_one(small_bundle, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(small_bundle.root, root)
    window = small_bundle.manifest.windows[0].name
    parts = (FusionPart("slice"), FusionPart("bright", window, 0.2, 4), FusionPart("dark", window, 0.2))
    assert small_bundle.manifest.threshold is not None
    bundle = set_scan_fusion(root, parts)
    assert bundle.manifest.scan_fusion == ScanFusionSpec(parts) and not bundle.manifest.scan_fusion.fitted
    assert bundle.manifest.threshold is None  # calibrated on the mean slice score: dropped
    fitted = fit_scan_fusion(bundle.manifest.scan_fusion, [[1.0, 0.0, 0.01], [2.0, 0.001, 0.02], [3.0, 0.002, 0.03]])
    bundle = calibrate_bundle(root, [0.0, 1.0, 2.0], scan_fusion=fitted)
    assert load_bundle(root).manifest.scan_fusion == fitted and bundle.manifest.threshold.n_healthy_scans == 3
    assert "healthy scales from 3 healthy scans" in bundle.summary()["scan_fusion"]["description"]
    # the same parts again keep the fitted scales and the threshold; none removes the fusion
    assert set_scan_fusion(root, parts).manifest.scan_fusion == fitted
    assert set_scan_fusion(root, None).manifest.scan_fusion is None
    with pytest.raises(BundleError, match="window 'nowhere', which is not one of"):
        set_scan_fusion(root, (FusionPart("bright", "nowhere", 0.2),))
    with pytest.raises(BundleError, match="kind 'grey', which is not one of slice, bright, dark"):
        set_scan_fusion(root, (FusionPart("grey"),))
    manifest = json.loads((root / "manifest.json").read_text())
    for part, message in (({"kind": "dark", "window": window, "threshold": 1.5}, "threshold 1.5, which is not in"),
                          ({"kind": "slice", "median": 1.0}, "only one of median and spread"),
                          ({"kind": "slice", "median": 1.0, "spread": 0.0}, "spread 0, which is not positive"),
                          ({"kind": "bright", "threshold": 0.2}, "lacks the field 'scan_fusion.parts[0].window'")):
        (root / "manifest.json").write_text(json.dumps({**manifest, "scan_fusion": {"parts": [part]}}))
        with pytest.raises(BundleError, match=re.escape(message)):
            load_bundle(root)


def test_calibrate_fits_the_fusion_and_scan_reports_it(small_bundle, phantom_cohort, tmp_path):
    pytest.importorskip("torch")  # the small bundle is trained and exported here
    from isl_rt.cli import app

    root = tmp_path / "bundle"
    shutil.copytree(small_bundle.root, root)
    window = small_bundle.manifest.windows[0].name
    labels = phantom_cohort / "labels.csv"
    calibration = tmp_path / "calibration.csv"
    args = ["calibrate", str(phantom_cohort), "--bundle", str(root), "--labels", str(labels), "--out", str(calibration),
            "--threads", "1"]
    bad = CliRunner().invoke(app, [*args, "--scan-fusion", f"slice,bright:{window}"])
    assert bad.exit_code == 1 and "the part 'bright:" in bad.output and "is not one of slice" in bad.output
    assert load_bundle(root).manifest.scan_fusion is None and not calibration.exists()  # refused before anything
    result = CliRunner().invoke(app, [*args, "--scan-fusion", f"slice,bright:{window}:0.2:1,dark::0.2"])
    assert result.exit_code == 0, result.output
    assert "scan fusion fitted on 2 healthy scans" in result.output
    bundle = load_bundle(root)
    fusion = bundle.manifest.scan_fusion
    assert fusion.fitted and fusion.n_healthy_scans == 2 and [p.kind for p in fusion.parts] == ["slice", "bright", "dark"]
    assert fusion.parts[2].window == window  # an empty window: the bundle's first
    threshold = bundle.require_threshold()
    assert threshold.n_healthy_scans == 2

    scores = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(phantom_cohort), "--bundle", str(root), "--out", str(scores), "--threads", "1"])
    assert result.exit_code == 0, result.output
    with scores.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    with labels.open() as handle:
        healthy = {r["SeriesInstanceUID"] for r in csv.DictReader(handle) if r["label"] == "0"}
    assert len(rows) == 3
    for row in rows:
        detail = json.loads((series_json_dir(scores) / f"{safe_name(row['series'])}.json").read_text())
        parts = detail["scan_parts"]
        assert [p["kind"] for p in parts] == ["slice", "bright", "dark"]
        # the scan score is the largest part on its healthy scale, and the slice part is the mean slice score
        assert float(row["scan_score"]) == pytest.approx(max(p["healthy_scale"] for p in parts), rel=1e-6)
        assert parts[0]["score"] == pytest.approx(np.nanmean(np.array(detail["slice_scores"], dtype=np.float64)), rel=1e-6)
        assert row["flagged"] == str(int(float(row["scan_score"]) > threshold.scan_score))
    # the healthy scans' fused scores are the ones the threshold was calibrated on
    fused = sorted(float(r["scan_score"]) for r in rows if r["SeriesInstanceUID"] in healthy)
    assert threshold.healthy_scores == pytest.approx(fused, rel=1e-5)
    # calibrate's own CSV and JSON were restated after the fit: the same fused scores, flags and parts as the scan's
    with calibration.open(newline="") as handle:
        restated = {r["series"]: r for r in csv.DictReader(handle) if r["status"] == "ok"}
    assert set(restated) == {r["series"] for r in rows}
    for row in rows:
        again = restated[row["series"]]
        assert float(again["scan_score"]) == pytest.approx(float(row["scan_score"]), rel=1e-5, abs=1e-9)
        assert again["flagged"] == row["flagged"]
        assert float(again["healthy_percentile"]) == pytest.approx(float(row["healthy_percentile"]))
        detail = json.loads((series_json_dir(calibration) / f"{safe_name(row['series'])}.json").read_text())
        assert detail["scan_score"] == pytest.approx(float(row["scan_score"]), rel=1e-5, abs=1e-9)
        assert all(p["healthy_scale"] is not None for p in detail["scan_parts"])
