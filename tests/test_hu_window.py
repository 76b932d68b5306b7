"""A gray image bundle with a brain window reads DICOM CT too: the HU are shown through the window
its training images were made with, as an 8-bit image, and scored as that image would be."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.bundle import (BundleError, HuWindowSpec, calibrate_slice_threshold, default_bundle_path, load_bundle,
                           set_hu_window, write_manifest)
from isl_rt.cli import app
from isl_rt.io.images import discover_images, load_images
from isl_rt.outputs import slices_csv_path
from isl_rt.pipeline import hu_to_gray, params_from_bundle


def test_hu_to_gray_is_the_window_at_8_bits():
    hu = np.array([[[-1000, -20, 40, 41, 100, 1000]]], dtype=np.int16)  # [1, 1, 6]
    gray = hu_to_gray(hu, 40.0, 120.0)
    assert gray.shape == (1, 1, 1, 6) and gray.dtype == np.float32
    # below the window black, above it white, the centre 127.5 → 128 (half to even), 1 HU = 2.125 steps
    np.testing.assert_array_equal(np.rint(gray[0, 0, 0] * 255), [0, 0, 128, 130, 255, 255])
    # every value is one an 8-bit image reader gives
    np.testing.assert_array_equal(gray, np.rint(gray * 255).astype(np.uint8).astype(np.float32) / 255.0)


def test_hu_to_gray_matches_an_8_bit_png_of_the_same_window(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    hu = rng.integers(-100, 200, size=(2, 16, 16)).astype(np.int16)
    gray = hu_to_gray(hu, 40.0, 80.0)
    folder = tmp_path / "s"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.rint(gray[i, 0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    (ref,) = discover_images(tmp_path)
    np.testing.assert_array_equal(load_images(ref).images, gray)


def test_an_image_bundle_takes_a_brain_window_and_a_hu_bundle_refuses_it(image_bundle, small_bundle, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(image_bundle.root, root)
    assert not image_bundle.manifest.input_spec.reads("hu")
    assert "hu_window" not in json.loads((root / "manifest.json").read_text())["input"]
    bundle = set_hu_window(root, HuWindowSpec(40.0, 80.0))
    spec = bundle.manifest.input_spec
    assert spec.reads("hu") and spec.reads("image") and spec.hu_window == HuWindowSpec(40.0, 80.0)
    assert bundle.manifest.threshold == image_bundle.manifest.threshold  # image series score as before
    assert params_from_bundle(bundle).hu_window == (40.0, 80.0)
    assert "or HU of DICOM CT through one brain window (window level 40 HU, width 80 HU)" in bundle.summary()["input"]["description"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["input"]["hu_window"] == {"level": 40.0, "width": 80.0}
    manifest["input"]["hu_window"]["width"] = 0
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="has input.hu_window, but its level is 40 HU and its width 0 HU"):
        load_bundle(root)
    manifest["input"]["hu_window"] = None  # null reads as none
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert not load_bundle(root).manifest.input_spec.reads("hu")

    hu = tmp_path / "hu"
    shutil.copytree(small_bundle.root, hu)
    with pytest.raises(BundleError, match="do not read gray images"):
        set_hu_window(hu, HuWindowSpec(40.0, 80.0))
    manifest = json.loads((hu / "manifest.json").read_text())
    manifest["input"]["hu_window"] = {"level": 40, "width": 80}
    (hu / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="has input.hu_window, but its networks do not read gray images"):
        load_bundle(hu)


def test_the_real_bundle_reads_dicom_through_a_120_hu_brain_window():
    bundle = load_bundle(default_bundle_path("head-ct-real-tiny"))
    assert bundle.manifest.input_spec.hu_window == HuWindowSpec(40.0, 120.0)
    assert bundle.manifest.slice_threshold is not None and bundle.manifest.image_level is not None


def test_a_dicom_series_scores_as_the_png_series_of_its_window(image_bundle, dicom_factory, tmp_path):
    """The same slices as DICOM CT (HU) and as 8-bit PNGs through the bundle's brain window give the
    same slice scores and the same brain-level shift; without the window the DICOM series is
    skipped with a sentence."""
    import pydicom
    from PIL import Image
    from pydicom.uid import generate_uid

    from isl_rt.io.phantom import simple_head_slice

    root = tmp_path / "bundle"
    shutil.copytree(image_bundle.root, root)
    tree = tmp_path / "tree"
    n = 12  # the input gate asks a DICOM head CT for at least 10 slices
    hu = np.stack([simple_head_slice(64, seed=300 + i) for i in range(n)]).astype(np.int16)
    frame = generate_uid()  # DICOM results need the sources' frame of reference

    def with_frame(ds):
        ds.FrameOfReferenceUID = frame

    dicom_factory.head_series(tree / "dicom", n=n, size=64, pixel_mm=3.2, hu=lambda i: hu[i], mutate=with_frame)
    pngs = tree / "png"
    pngs.mkdir(parents=True)
    for i, g in enumerate(hu_to_gray(hu, 40.0, 80.0)[:, 0]):
        Image.fromarray(np.rint(g * 255).astype(np.uint8)).save(pngs / f"{i}.png")

    before = tmp_path / "before.csv"
    result = CliRunner().invoke(app, ["scan", str(tree), "--bundle", str(root), "--out", str(before), "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = {r.split(",")[0]: r for r in before.read_text().splitlines()[1:]}
    (skipped,) = [r for p, r in rows.items() if "/tree/dicom" in p]
    assert "skipped: an HU series" in skipped and "pre-windowed gray images (PNG/JPEG/TIFF)" in skipped

    bundle = set_hu_window(root, HuWindowSpec(40.0, 80.0))
    # a slice threshold half way through the PNG series' slice scores, so the report flags some slices
    png_scores = [float(r.split(",")[3]) for r in slices_csv_path(before).read_text().splitlines()[1:] if r.split(",")[3]]
    cut = calibrate_slice_threshold(png_scores, 0.5, n_series=1)
    write_manifest(root, replace(bundle.manifest, slice_threshold=cut))
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(tree), "--bundle", str(root), "--out", str(out), "--threads", "1",
                                      "--dicom-out", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    # DICOM results for the DICOM series (its report and heat map refer to its slices), none for the PNGs
    (written,) = (tmp_path / "results").iterdir()
    assert sorted(p.name for p in written.iterdir()) == ["heat-map-pm.dcm", "measurement-report-sr.dcm"]
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    from isl_rt.dicom_results import SLICE_SCORE, SLICE_THRESHOLD

    report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(written / "measurement-report-sr.dcm"))
    per_slice = [g for g in report.content.get_image_measurement_groups()[1:] if g.get_measurements(name=SLICE_SCORE)]
    values = [g.get_measurements(name=SLICE_SCORE)[0].value for g in per_slice]  # the scored slices
    flags = [g.get_qualitative_evaluations(name=codes.SCT.Finding)[0].value for g in per_slice]
    assert [g.get_measurements(name=SLICE_THRESHOLD)[0].value for g in per_slice] == pytest.approx([cut.slice_score] * len(values))
    assert flags == [codes.SCT.Abnormal if v > cut.slice_score else codes.DCM.NoAbnormality for v in values]
    assert codes.SCT.Abnormal in flags and codes.DCM.NoAbnormality in flags
    if shutil.which("dciodvfy"):  # the per-slice evaluations keep the report valid TID 1500
        import subprocess

        run = subprocess.run(["dciodvfy", str(written / "measurement-report-sr.dcm")], capture_output=True, text=True, timeout=120)
        assert [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")] == []
    details = {}
    for doc in (tmp_path / "scores.series").iterdir():
        if not doc.name.startswith("_"):
            d = json.loads(doc.read_text())
            details[d["kind"]] = d
    assert set(details) == {"hu", "image"} and all(d["status"] == "ok" for d in details.values())
    assert details["hu"]["hu_window"] == {"level": 40.0, "width": 80.0} and details["image"]["hu_window"] is None
    np.testing.assert_array_equal(details["hu"]["slice_scores"], details["image"]["slice_scores"])
    assert details["hu"]["level_shift"] == details["image"]["level_shift"]


def test_export_refuses_a_brain_window_it_cannot_read(tmp_path):
    pytest.importorskip("torch")
    for text, words in (("40", "--hu-window takes 2 comma-separated numbers"), ("40,-5", "the width (HU) must be above 0")):
        result = CliRunner().invoke(app, ["export", str(tmp_path / "none"), "--out", str(tmp_path / "b"), "--hu-window", text])
        assert result.exit_code != 0 and words in result.output, result.output
        assert not (tmp_path / "b").exists()


def test_the_real_bundle_scores_a_dicom_series_and_warns_of_thin_slices(dicom_factory, tmp_path):
    from isl_rt.pipeline import THIN_SLICE_MM, thin_slice_warnings

    residual = params_from_bundle(load_bundle(default_bundle_path("head-ct-real-tiny"))).residual
    assert residual.adjacent and thin_slice_warnings(THIN_SLICE_MM, residual) == []
    assert thin_slice_warnings(None, residual) == [] and thin_slice_warnings(1.0, residual._replace(adjacent=False)) == []
    for spacing in (5.0, 1.0):
        dicom_factory.head_series(tmp_path / f"ct{spacing:g}", n=12, size=128, pixel_mm=1.6, spacing=spacing)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(tmp_path), "--bundle", str(default_bundle_path("head-ct-real-tiny")),
                                      "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    details = {}
    for doc in (tmp_path / "scores.series").iterdir():
        if not doc.name.startswith("_"):
            d = json.loads(doc.read_text())
            details[d["path"].rsplit("/", 1)[-1]] = d
    assert set(details) == {"ct5", "ct1"} and all(d["status"] == "ok" for d in details.values())
    assert all(d["hu_window"] == {"level": 40.0, "width": 120.0} and d["level_shift"] is not None for d in details.values())
    thin = [w for w in details["ct1"]["warnings"] if "mm apart" in w]
    assert thin and thin[0].startswith("slices 1 mm apart") and not any("mm apart" in w for w in details["ct5"]["warnings"])


def test_the_library_scores_an_hu_volume_with_an_image_bundle_through_its_window(image_bundle, tmp_path):
    from PIL import Image

    from isl_rt.backends import open_backends
    from isl_rt.errors import InputError
    from isl_rt.io.phantom import simple_head_slice
    from isl_rt.io.series import discover_series, load_series
    from isl_rt.pipeline import Scorer

    hu = np.stack([simple_head_slice(64, seed=500 + i) for i in range(4)]).astype(np.int16)
    folder = tmp_path / "png" / "s"
    folder.mkdir(parents=True)
    for i, g in enumerate(hu_to_gray(hu, 40.0, 80.0)[:, 0]):
        Image.fromarray(np.rint(g * 255).astype(np.uint8)).save(folder / f"{i}.png")
    series = load_series(discover_series(tmp_path / "png").series[0])
    with open_backends(image_bundle, "onnxruntime", threads=1) as pair:
        with pytest.raises(InputError, match="no brain window to show CT through"):
            Scorer(params_from_bundle(image_bundle), pair.dedn, pair.drn).score(hu)
        params = replace(params_from_bundle(image_bundle), hu_window=(40.0, 80.0), image_level=0.4)
        scorer = Scorer(params, pair.dedn, pair.drn)
        from_hu, from_png = scorer.score(hu), scorer.score_series(series)
    np.testing.assert_array_equal(from_hu.slice_scores, from_png.slice_scores)
    assert from_hu.level_shift == from_png.level_shift is not None
