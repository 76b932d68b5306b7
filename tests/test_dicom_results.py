"""`isl-rt scan --dicom-out`: the TID 1500 measurement report and the parametric map of each series,
read back with pydicom and highdicom, and checked with dciodvfy where dicom3tools is installed."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from typer.testing import CliRunner

pytest.importorskip("torch")  # the small bundle is trained and exported here
hd = pytest.importorskip("highdicom")

from isl_rt.backends import open_backends  # noqa: E402
from isl_rt.bundle import load_bundle  # noqa: E402
from isl_rt.cli import app  # noqa: E402
from isl_rt.dicom_results import (  # noqa: E402
    APDS,
    MAP_FILE,
    REPORT_FILE,
    SCAN_SCORE,
    SLICE_SCORE,
    THRESHOLD,
    TOP_SLICE_SCORE,
    Algorithm,
    NOT_ASSESSED,
    DicomResultWriter,
    algorithm_of,
)
from isl_rt.outputs import safe_name  # noqa: E402
from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory, series_json_dir  # noqa: E402

#: Attributes of the source slices that describe the acquisition, not the patient or the study:
#: a result object must not carry them at its top level.
NOT_COPIED = ("KVP", "ConvolutionKernel", "SliceLocation", "XRayTubeCurrent", "InstitutionName", "WindowCenter",
              "RescaleIntercept", "ImagePositionPatient", "SeriesNumber")


@pytest.fixture(scope="module")
def scanned(small_bundle, phantom_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom-out")
    result = CliRunner().invoke(app, ["scan", str(phantom_cohort / "series_0001"), "--out", str(out / "scores.csv"), "--bundle", str(small_bundle.root),
                                      "--threads", "1", "--heatmaps", str(out / "heat"), "--dicom-out", str(out / "dicom")])
    assert result.exit_code == 0, result.output
    with (out / "scores.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    assert len(rows) == 1
    return out, rows


def _slices(row):
    files = [p for p in sorted(Path(row["path"]).iterdir()) if p.suffix == ".dcm"]
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in files)}


def test_scan_writes_a_measurement_report_per_series(scanned, small_bundle):
    out, rows = scanned
    threshold = small_bundle.manifest.threshold.scan_score
    for row in rows:
        folder = out / "dicom" / safe_name(row["SeriesInstanceUID"])
        detail = json.loads((series_json_dir(out / "scores.csv") / f"{safe_name(row['SeriesInstanceUID'])}.json").read_text())
        sources = _slices(row)
        sr = pydicom.dcmread(folder / REPORT_FILE)
        report = hd.sr.Comprehensive3DSR.from_dataset(sr)
        groups = report.content.get_image_measurement_groups()
        assert len(groups) == 1 + int(row["n_slices"])
        series = groups[0]
        value = {c.meaning: series.get_measurements(name=c)[0].value for c in (SCAN_SCORE, TOP_SLICE_SCORE, THRESHOLD)}
        assert value[SCAN_SCORE.meaning] == pytest.approx(float(row["scan_score"]), rel=1e-6)
        assert value[TOP_SLICE_SCORE.meaning] == pytest.approx(float(row["max_slice_score"]), rel=1e-6)
        assert value[THRESHOLD.meaning] == pytest.approx(threshold, rel=1e-6)
        percentile = series.get_measurements(name=codes.DCM.PercentileRankingOfMeasurement)[0]
        assert percentile.value == pytest.approx(float(row["healthy_percentile"])) and percentile.unit == codes.UCUM.Percent
        flag = series.get_qualitative_evaluations(name=codes.SCT.Finding)[0].value
        assert flag == (codes.SCT.Abnormal if row["flagged"] == "1" else codes.DCM.NoAbnormality)
        # the top slice's score and APDS reference the top slice
        top_uid = [g.source_images[0].referenced_sop_instance_uid for g in groups[1:]][int(row["top_slice"])]
        for name in (TOP_SLICE_SCORE, APDS):
            assert series.get_measurements(name=name)[0].referenced_images[0].referenced_sop_instance_uid == top_uid
        # per slice: score and APDS, each group referencing its slice, in slice order; a slice not scored
        # (the phantom's vertex: no cranial cavity) has no number and the finding "not assessed"
        scored = [s is not None for s in detail["slice_scores"]]
        assert 0 < sum(scored) < len(scored)
        for group, ok in zip(groups[1:], scored):
            assert bool(group.get_measurements(name=SLICE_SCORE)) == ok
            finding = [e.value for e in group.get_qualitative_evaluations(name=codes.SCT.Finding)]
            assert (NOT_ASSESSED in finding) == (not ok)
        np.testing.assert_allclose([g.get_measurements(name=SLICE_SCORE)[0].value for g, ok in zip(groups[1:], scored) if ok],
                                   [s for s in detail["slice_scores"] if s is not None], rtol=1e-6)
        np.testing.assert_allclose([g.get_measurements(name=APDS)[0].value for g, ok in zip(groups[1:], scored) if ok],
                                   [s for s in detail["slice_apds"] if s is not None], rtol=1e-6)
        assert sorted(g.source_images[0].referenced_sop_instance_uid for g in groups[1:]) == sorted(sources)
        # algorithm identification (TID 4019) and the device observer: bundle, isl-rt version, manifest hash
        algorithm = algorithm_of(small_bundle)
        items = {i.ConceptNameCodeSequence[0].CodeMeaning: getattr(i, "TextValue", None) for i in series[0].ContentSequence}
        assert items["Algorithm Name"] == "small" and items["Algorithm Version"] == f"isl-rt {algorithm.version}"
        assert items["Algorithm Parameters"] == f"manifest sha256 {algorithm.manifest_sha256}"
        observer = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Device Observer UID"]
        assert observer[0].UID == algorithm.device_uid
        _common_checks(sr, sources, algorithm)
        assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"


def test_scan_writes_the_heat_map_as_a_parametric_map_on_the_source_grid(scanned, small_bundle):
    out, rows = scanned
    for row in rows:
        folder = out / "dicom" / safe_name(row["SeriesInstanceUID"])
        sources = _slices(row)
        pm = pydicom.dcmread(folder / MAP_FILE)
        assert isinstance(hd.pm.ParametricMap.from_dataset(pm), hd.pm.ParametricMap)
        frames = pm.pixel_array
        first = next(iter(sources.values()))
        assert frames.dtype == np.float32 and frames.shape == (int(row["n_slices"]), first.Rows, first.Columns)
        # slice i of the series is the source of the report's slice group i; highdicom orders the
        # frames along the slice normal (superior first here) and keeps each frame with its source
        report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(folder / REPORT_FILE))
        order = [g.source_images[0].referenced_sop_instance_uid for g in report.content.get_image_measurement_groups()[1:]]
        index = [order.index(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
                 for f in pm.PerFrameFunctionalGroupsSequence]
        with np.load(out / "heat" / safe_name(row["SeriesInstanceUID"]) / "heatmaps.npz") as npz:
            heat = npz["heat"].astype(np.float32)  # the --heatmaps copy: the same map, as float16
        np.testing.assert_allclose(frames, heat[index], rtol=1e-3, atol=1e-6)
        assert frames.max() > 0
        mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.LUTLabel == "ISL_HEAT" and float(mapping.RealWorldValueSlope) == 1.0
        assert float(mapping.DoubleFloatRealWorldValueLastValueMapped) >= float(frames.max())
        for frame in pm.PerFrameFunctionalGroupsSequence:  # each frame lies where its source slice lies
            source = sources[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
            np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                       [float(v) for v in source.ImagePositionPatient], atol=1e-3)
        assert pm.FrameOfReferenceUID == first.FrameOfReferenceUID and pm.BodyPartExamined == "HEAD"
        _common_checks(pm, sources, algorithm_of(small_bundle))


def _common_checks(ds, sources, algorithm):
    first = next(iter(sources.values()))
    for keyword in ("PatientName", "PatientID", "PatientSex", "StudyInstanceUID", "AccessionNumber", "StudyDate", "StudyID"):
        assert ds[keyword].value == first[keyword].value, keyword
    assert ds.SeriesInstanceUID != first.SeriesInstanceUID and ds.SOPInstanceUID not in sources
    for keyword in NOT_COPIED:
        assert keyword not in ds or ds[keyword].value != first.get(keyword), keyword
    assert ds.Manufacturer == "isl-rt" and ds.ManufacturerModelName == algorithm.bundle
    ours = [item for item in ds.ContributingEquipmentSequence if item.Manufacturer == "isl-rt"]
    assert len(ours) == 1
    item = ours[0]
    assert item.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Equipment"
    assert item.ManufacturerModelName == algorithm.bundle and item.DeviceUID == algorithm.device_uid
    assert list(item.SoftwareVersions) == [algorithm.manifest_sha256, f"isl-rt {algorithm.version}", algorithm.bundle]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_dciodvfy_finds_no_errors(scanned):
    out, _ = scanned
    paths = sorted((out / "dicom").rglob("*.dcm"))
    assert len(paths) == 2
    for path in paths:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        lines = (run.stdout + run.stderr).splitlines()
        assert [line for line in lines if line.startswith("Error")] == [], path
        # what it still warns about, and nothing else: our private coding scheme, the Device UID it
        # does not know in Contributing Equipment yet, and QUANTITY (a newer Image Type term)
        known = ("99ISLRT", "Device UID", "not present in standard DICOM IOD", "<QUANTITY>")
        assert [line for line in lines if line.startswith("Warning") and not any(k in line for k in known)] == [], path


def test_the_device_uid_changes_when_the_bundle_changes(small_bundle, tmp_path):
    copy = tmp_path / "changed"
    shutil.copytree(small_bundle.root, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["threshold"]["scan_score"] = manifest["threshold"]["scan_score"] * 2
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    before, after = algorithm_of(small_bundle), algorithm_of(load_bundle(copy))
    assert before.bundle == after.bundle and before.manifest_sha256 != after.manifest_sha256
    assert before.device_uid != after.device_uid
    assert before.device_uid == algorithm_of(small_bundle).device_uid  # the same bundle, the same device
    assert len(before.device_uid) <= 64 and Algorithm("x", "0" * 64, "9").device_uid != Algorithm("x", "0" * 64, "8").device_uid


def _head_sized(ds):
    ds.PixelSpacing = [4.0, 4.0]


def test_a_series_the_results_cannot_be_built_for_becomes_an_error_row(small_bundle, dicom_factory, tmp_path):
    # heads the input gate accepts (12 slices of 5 mm, a 256 mm field of view)
    dicom_factory.series(tmp_path / "in" / "a", n=12, spacing=5.0, mutate=_head_sized)  # no FrameOfReferenceUID
    written = dicom_factory.series(tmp_path / "in" / "b", n=12, spacing=5.0, mutate=_head_sized)
    uid = generate_uid()
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = uid
        ds.save_as(path, enforce_file_format=True)
    writer = DicomResultWriter(tmp_path / "dicom", algorithm_of(small_bundle))
    with open_backends(small_bundle, "onnxruntime", threads=1) as pair:
        scorer = Scorer(params_from_bundle(small_bundle), pair.dedn, pair.drn)
        rows = []
        summary = scan_directory(tmp_path / "in", tmp_path / "scores.csv", small_bundle, scorer, backend_name=pair.name,
                                 results=writer, on_series=lambda e: rows.append(e.row))
    assert (summary.ok, summary.errors) == (1, 1)
    bad = next(r for r in rows if r["status"] == "error")
    assert "results could not be written" in bad["error"] and "Frame Of Reference UID" in bad["error"]
    assert sorted(p.name for p in (tmp_path / "dicom" / safe_name(written.series_uid)).iterdir()) == sorted([MAP_FILE, REPORT_FILE])
