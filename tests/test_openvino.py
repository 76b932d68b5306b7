"""The OpenVINO backend (FP32, BF16, INT8 by NNCF), its network cache and refusals, the one
accuracy check (per output and per scan) and what `--backend auto` makes of it.

Runs real OpenVINO and NNCF on the small test bundle; skips cleanly where the `openvino` extra
is not installed (a test then checks the sentence that says how to install it)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt import accuracy
from isl_rt.backends import open_backends
from isl_rt.cli import app
from isl_rt.errors import BackendError
from isl_rt.pipeline import params_from_bundle
from isl_rt.precision.compare import ScanTolerance, compare_scan_scores

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="needs the openvino extra")
runner = CliRunner()


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    """One OpenVINO network cache for the module (INT8 is quantized once)."""
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture
def cache_env(ov_cache, monkeypatch):
    monkeypatch.setenv("ISL_RT_OPENVINO_CACHE", str(ov_cache))
    return ov_cache


@pytest.fixture(scope="module")
def int8_record(small_bundle, ov_cache):
    from isl_rt.backends.openvino import prepare_networks

    return prepare_networks(small_bundle, "int8", cache=ov_cache)


# ---- the scan-level comparator (pure) --------------------------------------------------------------
def test_scan_comparison_passes_within_one_percent_and_fails_past_it():
    ref = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    labels = {"a": 0, "b": 0, "c": 1, "d": 1}
    ok = compare_scan_scores({k: v * 1.009 for k, v in ref.items()}, ref, labels)
    assert ok.passed and ok.auc_reference == ok.auc_candidate == 1.0 and 0.0089 < ok.max_score_rel < 0.0091
    bad = compare_scan_scores({**ref, "b": 2.03}, ref, labels)
    assert not bad.passed and bad.worst_series == "b" and "1 of 4 scan scores differ by more than 1%" in bad.reason
    # a swapped pair keeps every score within 1 % only if the scores are close; the AUC catches the order
    close = {"a": 1.0, "b": 2.0, "c": 2.001, "d": 4.0}
    flipped = compare_scan_scores({**close, "b": 2.0015, "c": 2.0005}, close, labels, ScanTolerance(0.01, 0.002))
    assert not flipped.passed and "AUC 0.7500 differs from the reference's 1.0000" in flipped.reason
    missing = compare_scan_scores({"a": 1.0}, ref, labels)
    assert not missing.passed and "3 series have no candidate score" in missing.reason
    assert compare_scan_scores(ref, ref, {"a": 0}).auc_reference is None  # one class: scores only
    # fused scan scores sit about 0 for healthy scans: a change there is judged against the cohort's spread
    fused = {"a": 0.001, "b": -0.8, "c": 3.0, "d": 6.0}
    near = compare_scan_scores({**fused, "a": 0.02}, fused, labels)
    assert near.passed and near.max_score_rel == pytest.approx(0.019 / np.std(list(fused.values())))
    assert not compare_scan_scores({**fused, "a": 0.2}, fused, labels).passed


def test_compare_scores_cli_on_two_score_files(tmp_path):
    rows = "path,SeriesInstanceUID,status,scan_score\n"
    (tmp_path / "ref.csv").write_text(rows + "p,a,ok,1.0\np,b,ok,2.0\np,c,ok,3.0\n")
    (tmp_path / "cand.csv").write_text(rows + "p,a,ok,1.001\np,b,ok,2.0\np,c,ok,3.2\n")
    (tmp_path / "labels.csv").write_text("SeriesInstanceUID,label\na,0\nb,1\nc,1\n")
    result = runner.invoke(app, ["compare-scores", str(tmp_path / "cand.csv"), str(tmp_path / "ref.csv"),
                                 "--labels", str(tmp_path / "labels.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 of 3 scan scores differ by more than 1% (worst 6.67%, series c)" in result.output
    (tmp_path / "cand.csv").write_text(rows + "p,a,ok,1.001\np,b,ok,2.0\np,c,ok,3.0\n")
    result = runner.invoke(app, ["compare-scores", str(tmp_path / "cand.csv"), str(tmp_path / "ref.csv")])
    assert result.exit_code == 0 and "PASSED" in result.output


# ---- without OpenVINO ------------------------------------------------------------------------------
@pytest.mark.skipif(HAS_OPENVINO, reason="OpenVINO is installed here")
def test_without_openvino_the_backend_says_how_to_install(small_bundle):
    with pytest.raises(BackendError, match=r"OpenVINO is not installed here; pip install 'isl-rt\[openvino\]'"):
        open_backends(small_bundle, "openvino")
    assert open_backends(small_bundle, "auto").name in ("onnxruntime", "onnxruntime-cuda")


def test_precision_is_refused_for_other_backends(small_bundle):
    with pytest.raises(BackendError, match="--precision int8 is for --backend openvino"):
        open_backends(small_bundle, "onnxruntime", precision="int8")
    result = runner.invoke(app, ["scan", ".", "--backend", "torch", "--precision", "bf16"])
    assert result.exit_code == 1 and "--precision bf16 is for --backend openvino" in result.output


# ---- FP32 and BF16 -----------------------------------------------------------------------------------
@needs_openvino
def test_fp32_matches_onnxruntime_per_output(small_bundle, cache_env):
    hu = accuracy.phantom_cohort(1, slices=3)[0].hu
    params = params_from_bundle(small_bundle)
    with open_backends(small_bundle, "openvino", precision="fp32", threads=1) as ov, \
            open_backends(small_bundle, "onnxruntime", threads=1) as ort:
        assert ov.name == "openvino" and ov.precision == "fp32" and "DeDN fp32, DRN fp32" in ov.description
        results = accuracy.compare_outputs(params, ov, ort, hu, "fp32")
    assert all(c.passed for c in results), [c.to_dict() for c in results]
    assert not any(cache_env.iterdir())  # FP32 reads the bundle's ONNX and writes no cache


@needs_openvino
def test_bf16_runs_or_says_this_cpu_runs_fp32(small_bundle, cache_env):
    from isl_rt.backends.openvino import cpu_info

    with open_backends(small_bundle, "openvino", precision="bf16", threads=1) as pair:
        out = pair.dedn.infer({"masked": np.zeros((4, 7, 32, 32), np.float32)})["inpainted"]
        runs = pair.dedn.runs
    assert out.shape == (4, 3, 32, 32) and out.dtype == np.float32
    if cpu_info().bf16:
        assert runs == "bf16" and "DeDN bf16" in pair.description
    else:
        assert runs == "f32" and "this CPU has no BF16 instructions: OpenVINO runs it in FP32" in pair.description


# ---- INT8 and the network cache --------------------------------------------------------------------
@needs_openvino
def test_int8_is_quantized_from_healthy_slices_and_recorded(small_bundle, int8_record):
    from isl_rt.backends.openvino import CALIBRATION, RECORD_JSON

    record = json.loads((int8_record.folder / RECORD_JSON).read_text())
    assert set(record["files"]) == {"dedn.xml", "dedn.bin"} and record["key"]["precision"] == "int8"
    quant = record["built"]["quantization"]
    assert quant["fake_quantize_ops"] > 0 and quant["samples"] == CALIBRATION["studies"] * CALIBRATION["slices_per_study"]
    assert json.loads(record["key"]["calibration"])["data"] == "healthy phantom studies"
    xml = (int8_record.folder / "dedn.xml").read_text()
    assert "FakeQuantize" in xml


@needs_openvino
def test_tampered_or_foreign_networks_are_refused(small_bundle, int8_record, tmp_path):
    from isl_rt.backends.openvino import RECORD_JSON, load_record, network_key

    key = network_key(small_bundle, "int8")
    copy = tmp_path / "copy"
    shutil.copytree(int8_record.folder, copy)
    assert load_record(copy, key).files == int8_record.files
    weights = bytearray((copy / "dedn.bin").read_bytes())
    weights[100] ^= 0xFF
    (copy / "dedn.bin").write_bytes(bytes(weights))
    with pytest.raises(BackendError, match=r"dedn.bin does not match the sha256 in .*networks.json; delete .* to rebuild it"):
        load_record(copy, key)
    shutil.copy(int8_record.folder / "dedn.bin", copy / "dedn.bin")
    data = json.loads((copy / RECORD_JSON).read_text())
    data["key"]["precision"] = "bf16"  # edited without updating key_id
    (copy / RECORD_JSON).write_text(json.dumps(data))
    with pytest.raises(BackendError, match="was edited: its key_id"):
        load_record(copy, key)
    with pytest.raises(BackendError, match=r"belongs to other networks or another installation \(precision 'int8', not 'bf16'"):
        load_record(int8_record.folder, network_key(small_bundle, "bf16"))


@needs_openvino
def test_int8_scan_runs_and_auto_uses_only_a_passed_check(small_bundle, int8_record, cache_env, phantom_cohort, tmp_path):
    from isl_rt.backends.openvino import CHECK_JSON, checked_precision, cpu_info, write_check

    (int8_record.folder / CHECK_JSON).unlink(missing_ok=True)
    precision, why = checked_precision(small_bundle)
    assert precision == "fp32" and "int8 has not been checked here" in why
    write_check(int8_record, {"passed": False, "reason": "scans: too far", "device": cpu_info().name})
    # a CPU with BF16 also says bf16 was not checked (it is tried after int8); one without never mentions it
    bf16_too = "; bf16 has not been checked here (isl-rt check-precision --precision bf16)" if cpu_info().bf16 else ""
    assert checked_precision(small_bundle) == ("fp32", "int8 failed the accuracy check (scans: too far)" + bf16_too)
    write_check(int8_record, {"passed": True, "device": "another CPU", "checked_at": "t"})
    assert "not on this CPU" in checked_precision(small_bundle)[1]
    write_check(int8_record, {"passed": True, "device": cpu_info().name, "checked_at": "t"})
    pair = open_backends(small_bundle, "auto")
    assert pair.name == "openvino" and pair.precision == "int8" and "chosen: int8 passed the accuracy check" in pair.description
    result = runner.invoke(app, ["scan", str(phantom_cohort), "--out", str(tmp_path / "s.csv"), "--bundle", str(small_bundle.root),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "DeDN int8" in result.output and "3 series scored" in result.output
    (int8_record.folder / CHECK_JSON).unlink()


@needs_openvino
def test_check_precision_cli_records_its_verdict(small_bundle, int8_record, cache_env):
    from isl_rt.backends.openvino import CHECK_JSON, cpu_info

    result = runner.invoke(app, ["check-precision", "--precision", "int8", "--bundle", str(small_bundle.root),
                                 "--series", "2", "--slices", "2", "--threads", "1"])
    assert "Traceback" not in result.output
    check = json.loads((int8_record.folder / CHECK_JSON).read_text())
    assert check["device"] == cpu_info().name and check["precision"] == "int8" and check["cohort"]["series"] == 2
    assert [o["output"] for o in check["outputs"]] == ["inpainted", "embedding", "slice_score"]
    assert result.exit_code == (0 if check["passed"] else 1), result.output
    assert ("int8 passed" if check["passed"] else "int8 FAILED") in result.output
    (int8_record.folder / CHECK_JSON).unlink()


@needs_openvino
def test_scan_with_openvino_bf16_matches_onnxruntime(small_bundle, phantom_cohort, tmp_path):
    scores = {}
    for backend, extra in (("onnxruntime", []), ("openvino", ["--precision", "bf16"])):
        out = tmp_path / f"{backend}.csv"
        result = runner.invoke(app, ["scan", str(phantom_cohort), "--out", str(out), "--bundle", str(small_bundle.root),
                                     "--backend", backend, "--threads", "1", *extra])
        assert result.exit_code == 0, result.output
        scores[backend] = out
    comparison = accuracy.compare_score_files(scores["openvino"], scores["onnxruntime"])
    assert comparison.passed and comparison.series == 3
