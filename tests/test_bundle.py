"""The model bundle: manifest schema, validation, threshold calibration, `isl-rt info --bundle`.

None of this needs torch: the runtime loads bundles without the train extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.bundle import (
    DEFAULT_CAVITY,
    DEFAULT_WINDOWS,
    FORMAT_VERSION,
    CannySpec,
    CavitySpec,
    DRNSpec,
    FileSpec,
    HeatmapSpec,
    Manifest,
    PartitionSpec,
    TrainingSpec,
    calibrate_threshold,
    load_bundle,
    sha256_file,
    write_manifest,
)
from isl_rt.cli import app
from isl_rt.errors import BundleError

runner = CliRunner()


def make_bundle(root: Path, *, threshold_scores: list[float] | None = None, cavity: CavitySpec | None = DEFAULT_CAVITY) -> Path:
    """A structurally complete bundle whose 'networks' are arbitrary bytes (hashes are what count)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dedn.onnx").write_bytes(b"not really onnx: dedn" * 50)
    (root / "drn.onnx").write_bytes(b"not really onnx: drn" * 50)
    k = 4
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        name=root.name,
        preset="tiny",
        size=128,
        windows=list(DEFAULT_WINDOWS),
        partition=PartitionSpec(k=k, cell_group=np.arange(k * k).reshape(k, k).tolist()),
        canny=CannySpec(1.0, 0.1, 0.2),
        files={
            "dedn": FileSpec("dedn.onnx", sha256_file(root / "dedn.onnx"), "masked", "inpainted"),
            "drn": FileSpec("drn.onnx", sha256_file(root / "drn.onnx"), "difference", "embedding"),
        },
        drn=DRNSpec(centre=[0.5, -0.25, 0.125, 1.0], embedding_dim=4),
        threshold=calibrate_threshold(threshold_scores) if threshold_scores else None,
        heatmap=HeatmapSpec(threshold=0.1, box=5, gamma=0.25),
        training=TrainingSpec(
            data="unit-test", series=3, slices=30, seed=0, command="pytest", feature_network="self-supervised",
            epochs={"dedn": 1, "drn_pretrain": 1, "drn_finetune": 1}, losses={},
        ),
        versions={"isl_rt": "test"},
        cavity=cavity,
    )
    write_manifest(root, manifest)
    return root


def edit_manifest(root: Path, **changes: object) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ---- loading ----------------------------------------------------------------------------------------
def test_valid_bundle_loads_with_typed_fields(tmp_path):
    root = make_bundle(tmp_path / "export" / "unit", threshold_scores=[1.0, 2.0, 3.0, 4.0])
    bundle = load_bundle(root)
    m = bundle.manifest
    assert m.format_version == FORMAT_VERSION and m.name == "unit" and m.size == 128
    assert [w.name for w in m.windows] == ["brain", "subdural", "bone"] and m.channels == 3
    assert bundle.windows_array.dtype == np.float32 and bundle.windows_array.tolist() == [[40, 80], [75, 215], [600, 2800]]
    assert bundle.centre.tolist() == [0.5, -0.25, 0.125, 1.0]
    assert m.partition.groups == 16
    assert bundle.dedn_path == root / "dedn.onnx" and bundle.drn_path == root / "drn.onnx"
    assert bundle.require_threshold().scan_score == 4.0
    # the manifest path itself is accepted too
    assert load_bundle(root / "manifest.json").manifest == m


def test_round_trip_of_manifest_is_lossless(tmp_path):
    root = make_bundle(tmp_path / "b", threshold_scores=[0.3, 0.1, 0.2])
    first = load_bundle(root).manifest
    write_manifest(root, first)
    assert load_bundle(root).manifest == first


def test_tampered_network_is_refused_naming_the_file(tmp_path):
    root = make_bundle(tmp_path / "b")
    path = root / "drn.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit of one byte
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        load_bundle(root)
    message = str(err.value)
    assert str(path) in message and "sha256" in message and "re-export" in message
    assert "\n" not in message
    # skipping the hash check (a caller that verified elsewhere) still loads it
    assert load_bundle(root, verify_hashes=False).manifest.name == "b"


def test_cavity_round_trips_and_resolves_to_the_bone_channel(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    assert bundle.manifest.cavity == DEFAULT_CAVITY
    channel, level, margin, sides, largest, air_margin = bundle.manifest.cavity.resolve(bundle.manifest.windows)
    assert channel == 2 and level == pytest.approx((300.0 - (600.0 - 1400.0)) / 2800.0) and margin == 2
    assert (sides, largest, air_margin) == (4, False, 0)
    assert load_bundle(make_bundle(tmp_path / "none", cavity=None)).manifest.cavity is None
    from isl_rt.pipeline import params_from_bundle

    assert params_from_bundle(bundle).cavity == (2, pytest.approx(level), 2, 4, False, 0)
    three = CavitySpec("bone", 300.0, 1, sides=3, largest=True)
    loaded = load_bundle(make_bundle(tmp_path / "three", cavity=three))
    assert loaded.manifest.cavity == three
    assert params_from_bundle(loaded).cavity == (2, pytest.approx(level), 1, 3, True, 0)
    assert "at least 3 of the four sides" in three.describe() and "most fully enclosed" in three.describe()
    assert "all four sides" in DEFAULT_CAVITY.describe() and "enclosed pixels" not in DEFAULT_CAVITY.describe()


def test_a_cavity_without_sides_and_largest_is_the_old_rule(tmp_path):
    # manifests written before sides and largest existed (the shipped head-ct-tiny among them)
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, cavity={"window": "bone", "bone_hu": 300, "margin": 2})
    assert load_bundle(root).manifest.cavity == CavitySpec("bone", 300.0, 2, sides=4, largest=False)


@pytest.mark.parametrize(("cavity", "pattern"), [
    ({"window": "soft", "bone_hu": 300, "margin": 2}, "cavity.window 'soft', which is not one of its windows"),
    ({"window": "bone", "bone_hu": 300, "margin": -1}, "cavity.margin = -1"),
    ({"window": "bone", "margin": 2}, "lacks the field 'cavity.bone_hu'"),
    ({"window": "bone", "bone_hu": 300, "margin": 2, "sides": 0}, "cavity.sides = 0, which is not 1, 2, 3 or 4"),
    ({"window": "bone", "bone_hu": 300, "margin": 2, "sides": 5}, "cavity.sides = 5"),
    ({"window": "bone", "bone_hu": 300, "margin": 2, "sides": 3.0}, "'cavity.sides' = 3.0, which is not an integer"),
    ({"window": "bone", "bone_hu": 300, "margin": 2, "largest": 1}, "'cavity.largest' = 1, which is not true or false"),
])
def test_bad_cavity_is_refused(tmp_path, cavity, pattern):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, cavity=cavity)
    with pytest.raises(BundleError, match=pattern):
        load_bundle(root)


def test_unknown_format_version_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=rf"format_version {FORMAT_VERSION + 1}.*reads format versions 2 and {FORMAT_VERSION} only"):
        load_bundle(root)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda r: (r / "manifest.json").unlink(), r"manifest.json is missing"),
        (lambda r: (r / "manifest.json").write_text("{not json"), r"is not valid JSON"),
        (lambda r: (r / "dedn.onnx").unlink(), r"dedn.onnx is missing"),
        (lambda r: edit_manifest(r, drn={"centre": [1.0, 2.0], "embedding_dim": 4}), r"DRN centre that is not a list of 4"),
        (lambda r: edit_manifest(r, size="128"), r"'size' = '128', which is not an integer"),
        (lambda r: edit_manifest(r, windows=[]), r"lists no windows"),
        (lambda r: edit_manifest(r, partition={"k": 2, "cell_group": [[0, 1], [3, 3]]}), r"group ids are not exactly 0..G-1"),
        (lambda r: edit_manifest(r, heatmap={"threshold": 0.1, "box": 4, "gamma": 1.0}), r"heatmap.box = 4"),
    ],
)
def test_broken_bundles_are_refused_with_a_sentence(tmp_path, change, pattern):
    root = make_bundle(tmp_path / "b")
    change(root)
    with pytest.raises(BundleError, match=pattern) as err:
        load_bundle(root)
    assert "\n" not in str(err.value)


def test_missing_field_is_named(tmp_path):
    root = make_bundle(tmp_path / "b")
    data = json.loads((root / "manifest.json").read_text())
    del data["canny"]["high"]
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"lacks the field 'canny.high'"):
        load_bundle(root)


def test_file_name_escaping_the_bundle_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    data = json.loads((root / "manifest.json").read_text())
    data["files"]["dedn"]["file"] = "../dedn.onnx"
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="not a plain file name"):
        load_bundle(root)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_uncalibrated_bundle_loads_but_has_no_threshold(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    assert bundle.manifest.threshold is None
    with pytest.raises(BundleError, match="no calibrated scan-score threshold"):
        bundle.require_threshold()


def test_partition_spec_builds_the_runtime_partition(tmp_path):
    from isl_rt.kernels.partition import Partition

    bundle = load_bundle(make_bundle(tmp_path / "b"))
    assert bundle.partition() == Partition.cells(4)


# ---- calibration --------------------------------------------------------------------------------------
def test_threshold_keeps_the_target_specificity_on_the_calibration_scans():
    rng = np.random.default_rng(0)
    scores = rng.gamma(2.0, 1.0, size=200)
    spec = calibrate_threshold(scores, target_specificity=0.95)
    flagged = scores > spec.scan_score  # the runtime's rule
    assert 1.0 - flagged.mean() >= 0.95
    assert spec.scan_score in set(scores.tolist())  # a real calibration score, not an interpolation
    assert spec.n_healthy_scans == 200 and spec.target_specificity == 0.95
    assert spec.healthy_quantiles["0.5"] == pytest.approx(np.quantile(scores, 0.5))
    assert spec.healthy_quantiles["0.99"] == pytest.approx(np.quantile(scores, 0.99))
    assert list(spec.healthy_quantiles) == ["0.5", "0.9", "0.95", "0.99"]
    assert spec.healthy_scores == sorted(scores.tolist())


def test_threshold_with_few_scans_is_their_maximum():
    spec = calibrate_threshold([0.2, 0.4, 0.3], target_specificity=0.95)
    assert spec.scan_score == 0.4


@pytest.mark.parametrize(("scores", "target", "pattern"), [
    ([], 0.95, "at least one"),
    ([1.0, float("nan")], 0.95, "not finite"),
    ([1.0, 2.0], 1.0, "between 0 and 1"),
])
def test_calibration_errors_are_sentences(scores, target, pattern):
    with pytest.raises(BundleError, match=pattern):
        calibrate_threshold(scores, target_specificity=target)


def test_calibrated_threshold_survives_the_manifest(tmp_path):
    root = make_bundle(tmp_path / "b", threshold_scores=[1.0, 2.0, 5.0])
    m = load_bundle(root).manifest
    assert m.threshold is not None and m.threshold.scan_score == 5.0 and m.threshold.n_healthy_scans == 3
    write_manifest(root, replace(m, threshold=None))
    assert load_bundle(root).manifest.threshold is None


# ---- runtime stays torch-free ------------------------------------------------------------------------
def test_loading_a_bundle_does_not_import_torch(tmp_path):
    root = make_bundle(tmp_path / "b")
    code = (
        "import sys; from isl_rt.bundle import load_bundle; "
        f"load_bundle({str(root)!r}); "
        "sys.exit(1 if 'torch' in sys.modules or 'onnx' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---- CLI -----------------------------------------------------------------------------------------------
def test_info_bundle_prints_the_summary(tmp_path):
    root = make_bundle(tmp_path / "export" / "unit", threshold_scores=[1.0, 2.0, 3.0])
    result = runner.invoke(app, ["info", "--bundle", str(root)])
    assert result.exit_code == 0, result.output
    assert "bundle unit" in result.output and "brain 40/80" in result.output
    assert "scan score > 3" in result.output and "bundle OK" in result.output


def test_info_bundle_names_the_drn_data_when_it_is_not_the_dedn_data(tmp_path):
    root = make_bundle(tmp_path / "b")
    data = json.loads((root / "manifest.json").read_text())
    assert data["training"]["drn_data"] == ""  # same data as the DeDN: nothing extra printed
    assert "DRN trained on" not in runner.invoke(app, ["info", "--bundle", str(root)]).output
    del data["training"]["drn_data"]  # manifests written before the field existed still load
    (root / "manifest.json").write_text(json.dumps(data))
    assert load_bundle(root).manifest.training.drn_data == ""
    data["training"]["drn_data"] = "40 healthy phantom studies (seed 3000) (40 series, 1282 slices)"
    (root / "manifest.json").write_text(json.dumps(data))
    result = runner.invoke(app, ["info", "--bundle", str(root)])
    assert result.exit_code == 0, result.output
    assert "DRN trained on: 40 healthy phantom studies (seed 3000) (40 series, 1282 slices)" in result.output


def test_info_bundle_json(tmp_path):
    root = make_bundle(tmp_path / "b")
    result = runner.invoke(app, ["info", "--bundle", str(root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["partition"] == {"k": 4, "groups": 16} and summary["threshold"] is None


def test_info_bundle_refuses_a_tampered_bundle_with_one_sentence(tmp_path):
    root = make_bundle(tmp_path / "b")
    with open(root / "dedn.onnx", "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    result = runner.invoke(app, ["info", "--bundle", str(root)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dedn.onnx does not match the sha256" in lines[0]
    assert "Traceback" not in result.output


def test_info_without_bundle_still_reports_the_installation():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert "extensions" in json.loads(result.output)


def test_train_and_export_without_the_train_extra_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without the extra
    for args in (
        ["train", "dedn", "phantom:1", "--ckpt", str(tmp_path / "ck")],
        ["train", "drn", "phantom:1", "--ckpt", str(tmp_path / "ck")],
        ["export", str(tmp_path / "ck"), "--out", str(tmp_path / "out")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert result.output.strip() == "error: This command needs torch, which is not installed here: pip install 'isl-rt[train]'."
    assert runner.invoke(app, ["info", "--json"]).exit_code == 0
