"""The shipped default bundle: found after `pip install`, valid, and refused when tampered with."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from isl_rt.bundle import FORMAT_VERSION, SliceScoreSpec, default_bundle_path, load_bundle
from isl_rt.cli import app
from isl_rt.errors import BundleError


def test_the_default_bundle_is_installed_and_valid():
    bundle = load_bundle(default_bundle_path())
    m = bundle.manifest
    assert m.name == "head-ct-tiny" and m.preset == "tiny" and m.size == 128
    assert [w.name for w in m.windows] == ["brain", "subdural", "bone"]
    assert m.partition.k == 4 and m.partition.groups == 16
    assert m.threshold is not None and m.threshold.n_healthy_scans == 40
    # the scan score fused from the DRN and the bright and dark residual, scales fitted on the same 40 scans
    assert m.scan_fusion is not None and m.scan_fusion.fitted and m.scan_fusion.n_healthy_scans == 40
    assert [(p.kind, p.window, p.threshold, p.inset) for p in m.scan_fusion.parts] == [
        ("slice", "", 0.0, 0), ("bright", "brain", 0.2, 4), ("dark", "brain", 0.2, 0)]
    assert bundle.torch_path("dedn") is not None
    result = CliRunner().invoke(app, ["info", "--bundle", str(bundle.root)])
    assert result.exit_code == 0 and "bundle OK" in result.output


def test_a_changed_byte_or_an_unknown_format_is_refused(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), copy)
    onnx_file = copy / "dedn.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="dedn.onnx does not match the sha256"):
        load_bundle(copy)
    result = CliRunner().invoke(app, ["info", "--bundle", str(copy)])
    assert result.exit_code == 1 and "sha256" in result.output and "Traceback" not in result.output

    shutil.rmtree(copy)
    shutil.copytree(default_bundle_path(), copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(copy)


def test_the_real_data_bundle_is_shipped_valid_and_says_its_licence():
    bundle = load_bundle(default_bundle_path("head-ct-real-tiny"))
    m = bundle.manifest
    assert m.input_spec.kind == "image" and m.input_spec.channels == 1 and m.size == 128
    assert m.slice_score_spec == SliceScoreSpec("residual", 0.1, "gray", "largest", 4, True)
    assert m.slice_threshold is not None and m.slice_threshold.n_healthy_slices == 421 and m.threshold is None
    # the presentation its thresholds were calibrated on: the validation patients' cavity size, smoothed 0.8 px
    assert m.image_level is not None and m.image_level.size == pytest.approx(0.615, abs=0.001) and m.image_level.smooth == 0.8
    assert m.cavity is not None and m.cavity.sides == 3 and m.cavity.largest
    result = CliRunner().invoke(app, ["info", "--bundle", str(bundle.root)])
    assert result.exit_code == 0 and "NON-COMMERCIAL USE ONLY" in result.output and "bundle OK" in result.output
