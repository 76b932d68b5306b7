"""TensorRT engines without TensorRT: the cache key, engine records and their refusals, the FP16
ONNX conversion (run by ONNX Runtime on the CPU), the comparator, and the CLI's sentence.
GPU tests (marked ``gpu``) build and run real engines and skip cleanly where there is no GPU."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.pipeline import params_from_bundle

from isl_rt import accuracy
from isl_rt.backends import open_backends
from isl_rt.backends import tensorrt_engines as engine
from isl_rt.backends.gpu import GpuInfo, detect_gpu
from isl_rt.backends.tensorrt import TensorRTBackend, check_record
from isl_rt.backends.tensorrt_engines import (
    BatchProfile,
    EngineKey,
    batch_profiles,
    engine_cache_key,
    load_engine_record,
)
from isl_rt.cli import app
from isl_rt.errors import BackendError
from isl_rt.precision import PRECISIONS, compare
from isl_rt.precision.compare import Tolerance, compare_arrays
from isl_rt.precision.fp16 import to_fp16_onnx

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
GPU = detect_gpu()
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
SHA_A, SHA_B = "a" * 64, "b" * 64


def _key(**change: object) -> EngineKey:
    base = engine_cache_key(dedn_sha256=SHA_A, drn_sha256=SHA_B, gpu=H100, tensorrt_version="10.13.3.9", precision="fp16",
                            profiles={"dedn": BatchProfile(1, 16, 64), "drn": BatchProfile(1, 32, 32)})
    return dataclasses.replace(base, **change)


def _fake_engines(folder: Path, key: EngineKey) -> Path:
    """Engine files with known bytes and an engine.json as build_engines writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in engine.NETWORKS:
        (folder / f"{name}.engine").write_bytes(f"not a real {name} plan".encode())
        from isl_rt.bundle import sha256_file

        files[name] = {"file": f"{name}.engine", "sha256": sha256_file(folder / f"{name}.engine"), "bytes": 20,
                       "input": "masked" if name == "dedn" else "difference", "output": "inpainted" if name == "dedn" else "embedding"}
    record = engine.EngineRecord(folder, key, {"tensorrt_major": 10, "fp16_method": "test"}, files)
    (folder / engine.ENGINE_JSON).write_text(json.dumps(record.to_json()))
    return folder


# ---- the cache key -------------------------------------------------------------------------------
def test_key_is_stable_and_round_trips():
    key = _key()
    assert key.id == _key().id and len(key.id) == 24 and int(key.id, 16) >= 0
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    words = key.describe()
    assert words["gpu"] == "NVIDIA H100 80GB HBM3 (compute 9.0)" and words["batch (min/opt/max)"] == "dedn 1/16/64, drn 1/32/32"


@pytest.mark.parametrize("change", [
    {"dedn_sha256": "c" * 64}, {"drn_sha256": "c" * 64}, {"gpu_name": "NVIDIA H200"}, {"compute_capability": "8.0"},
    {"tensorrt_version": "11.0.0.1"}, {"precision": "fp32"}, {"dedn_profile": BatchProfile(1, 16, 32)},
    {"dedn_profile": BatchProfile(1, 8, 64)}, {"drn_profile": BatchProfile(1, 16, 32)}, {"format": 2}, {"converter": 2},
])
def test_key_changes_with_every_field(change):
    assert _key(**change).id != _key().id


def test_key_and_profile_refusals():
    with pytest.raises(BackendError, match="--precision must be one of fp16, fp32"):
        engine_cache_key(dedn_sha256=SHA_A, drn_sha256=SHA_B, gpu=H100, tensorrt_version="10", precision="int8",
                         profiles=batch_profiles(4, 64))
    with pytest.raises(BackendError, match="min <= opt <= max"):
        BatchProfile(1, 65, 64)
    assert batch_profiles(4, 64) == {"dedn": BatchProfile(1, 16, 64), "drn": BatchProfile(1, 32, 32)}
    assert batch_profiles(9, 64)["dedn"] == BatchProfile(1, 9, 64)  # one whole slice of 9 groups fits 16
    assert batch_profiles(4, 8)["dedn"] == BatchProfile(1, 8, 8)
    with pytest.raises(BackendError, match="cannot hold one slice"):
        batch_profiles(4, 3)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ISL_RT_ENGINE_CACHE", str(tmp_path / "engines"))
    assert engine.cache_dir() == tmp_path / "engines"
    monkeypatch.delenv("ISL_RT_ENGINE_CACHE")
    assert engine.cache_dir() == Path.home() / ".cache" / "isl-rt" / "engines"


# ---- engine records and refusals -----------------------------------------------------------------
def test_engine_mismatch_names_what_differs():
    key = _key()
    here = {"dedn_sha256": SHA_A, "drn_sha256": SHA_B, "gpu": H100, "tensorrt_version": "10.13.3.9"}
    assert engine.engine_mismatch(key, **here) is None
    why = engine.engine_mismatch(key, **{**here, "gpu": GpuInfo("NVIDIA A100-SXM4-80GB", "8.0")})
    assert why == "it was built for the GPU NVIDIA H100 80GB HBM3 (compute 9.0), not NVIDIA A100-SXM4-80GB (compute 8.0)"
    why = engine.engine_mismatch(key, **{**here, "tensorrt_version": "10.14.1"})
    assert why is not None and "TensorRT 10.13.3.9, not 10.14.1" in why and "GPU" not in why
    assert "other networks" in (engine.engine_mismatch(key, **{**here, "dedn_sha256": "c" * 64}) or "")


def test_record_round_trip_and_tampering(tmp_path):
    folder = _fake_engines(tmp_path / "e", _key())
    record = load_engine_record(folder)
    assert record.key == _key() and record.engine_path("drn") == folder / "drn.engine"
    data = json.loads((folder / "engine.json").read_text())
    data["key"]["gpu_name"] = "NVIDIA H200"  # edited without updating key_id
    (folder / "engine.json").write_text(json.dumps(data))
    with pytest.raises(BackendError, match="was edited: its key_id"):
        load_engine_record(folder)
    (folder / "engine.json").write_text("{not json")
    with pytest.raises(BackendError, match="cannot be read as JSON"):
        load_engine_record(folder)
    with pytest.raises(BackendError, match="holds no engine.json"):
        load_engine_record(tmp_path / "nowhere")


def test_check_record_refuses_other_gpu_tensorrt_and_changed_files(tmp_path):
    record = load_engine_record(_fake_engines(tmp_path / "e", _key()))
    here = {"dedn_sha256": SHA_A, "drn_sha256": SHA_B, "gpu": H100, "tensorrt_version": "10.13.3.9"}
    check_record(record, "dedn", **here)
    with pytest.raises(BackendError, match=r"cannot run here: it was built for the GPU NVIDIA H100 .* not NVIDIA H200"):
        check_record(record, "dedn", **{**here, "gpu": GpuInfo("NVIDIA H200", "9.0")})
    with pytest.raises(BackendError, match="TensorRT 10.13.3.9, not 11.0.0"):
        check_record(record, "drn", **{**here, "tensorrt_version": "11.0.0"})
    (tmp_path / "e" / "drn.engine").write_bytes(b"changed")
    with pytest.raises(BackendError, match="does not match the sha256"):
        check_record(record, "drn", **here)
    (tmp_path / "e" / "dedn.engine").unlink()
    with pytest.raises(BackendError, match="dedn.engine is missing"):
        check_record(record, "dedn", **here)


def test_find_engine_prefers_fp16_and_reports_passed_over(tmp_path, small_bundle):
    files = small_bundle.manifest.files
    ours = {"dedn_sha256": files["dedn"].sha256, "drn_sha256": files["drn"].sha256}
    _fake_engines(tmp_path / "fp32", _key(**ours, precision="fp32"))
    _fake_engines(tmp_path / "fp16", _key(**ours))
    _fake_engines(tmp_path / "a100", _key(**ours, gpu_name="NVIDIA A100", compute_capability="8.0"))
    _fake_engines(tmp_path / "other", _key())  # another bundle: ignored silently
    record, passed = engine.find_engine(small_bundle, H100, "10.13.3.9", cache=tmp_path)
    assert record is not None and record.folder == tmp_path / "fp16"
    assert len(passed) == 1 and "a100" in passed[0] and "not NVIDIA H100" in passed[0]
    record, _ = engine.find_engine(small_bundle, H100, "10.14.0", cache=tmp_path)
    assert record is None


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_without_tensorrt_every_entry_point_says_how_to_install(tmp_path, small_bundle):
    record = load_engine_record(_fake_engines(tmp_path / "e", _key()))
    sentence = "TensorRT is not installed here; pip install 'isl-rt[trt]' on a machine with an NVIDIA GPU and driver."
    with pytest.raises(BackendError) as err:
        TensorRTBackend(record, "dedn", dedn_sha256=SHA_A, drn_sha256=SHA_B).activate()
    assert str(err.value) == sentence
    with pytest.raises(BackendError) as err:
        engine.build_engines(small_bundle, out=tmp_path / "out")
    assert str(err.value) == sentence and not (tmp_path / "out").exists()
    with pytest.raises(BackendError) as err:
        open_backends(small_bundle, "tensorrt")
    assert str(err.value) == sentence
    assert open_backends(small_bundle, "auto").name in ("onnxruntime", "onnxruntime-cuda", "openvino")
    result = CliRunner().invoke(app, ["build-engine", str(small_bundle.root), "--precision", "fp32"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"error: {sentence}"


@pytest.mark.skipif(GPU is not None, reason="a GPU is visible here")
def test_without_a_gpu_require_gpu_says_so():
    with pytest.raises(BackendError, match=r"TensorRT needs a CUDA GPU and none is usable here \(.+\); pip install"):
        engine.require_gpu()


def test_cli_rejects_an_unknown_precision(small_bundle):
    result = CliRunner().invoke(app, ["build-engine", str(small_bundle.root), "--precision", "int8"])
    assert result.exit_code == 2 and "int8" in result.output


# ---- FP16 ONNX -------------------------------------------------------------------------------------
def _types(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def test_fp16_onnx_of_the_small_bundle_runs_in_onnxruntime(tmp_path, small_bundle):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    from isl_rt.backends import BackendPair
    from isl_rt.backends.onnxruntime import OnnxRuntimeBackend

    paths = {}
    for name in engine.NETWORKS:
        paths[name] = tmp_path / f"{name}.fp16.onnx"
        report = to_fp16_onnx(small_bundle.root / f"{name}.onnx", paths[name], fp16_io=engine.FP16_IO[name])
        onnx.checker.check_model(str(paths[name]))
        assert report.initializers > 0 and report.clipped_values == 0
        assert report.kept_fp32_nodes.get("InstanceNormalization", 0) > 0
        types = _types(paths[name])
        model = onnx.load(str(paths[name]))
        # the kept ops really compute in FP32: every float input of every InstanceNormalization is float32
        for node in (n for n in model.graph.node if n.op_type == "InstanceNormalization"):
            assert all(types[i] == TensorProto.FLOAT for i in node.input), node.name
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert convs and all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)
        io = TensorProto.FLOAT16 if engine.FP16_IO[name] else TensorProto.FLOAT
        assert model.graph.input[0].type.tensor_type.elem_type == io and model.graph.output[0].type.tensor_type.elem_type == io
    # ONNX Runtime's CPU provider has no FP16 Conv/ConvTranspose/Relu/Pad/Tanh on x86: it runs them in
    # FP32 between Casts it inserts, so this measures the FP16 rounding of weights, I/O and the
    # boundaries of the FP32 islands, not FP16 arithmetic. Measured on this bundle: DeDN max 1.1e-3,
    # p99 6e-4; DRN embedding max 1.5e-3 (|h| <= 1.7). The engine tolerances (DEFAULT_TOLERANCES,
    # 5-10x wider) must hold; a tighter bound of 5e-3 on the DeDN max catches a wrong conversion.
    candidate = BackendPair(OnnxRuntimeBackend(paths["dedn"], threads=1), OnnxRuntimeBackend(paths["drn"], threads=1), "fp16",
                            "ORT fp16 graph", precision="fp16")
    hu = accuracy.phantom_cohort(1, slices=6)[0].hu
    with candidate, open_backends(small_bundle, "onnxruntime", threads=1) as reference:
        results = {c.name: c for c in accuracy.compare_outputs(params_from_bundle(small_bundle), candidate, reference, hu, "fp16")}
    assert all(c.passed for c in results.values()), [c.to_dict() for c in results.values()]
    dedn = results["inpainted"].stats
    assert dedn is not None and 0 < dedn.max_abs < 5e-3 and dedn.p99_abs < 2e-3
    assert results["slice_score"].stats is not None and results["slice_score"].stats.max_rel < 1e-2


def test_fp16_onnx_clips_out_of_range_weights_and_keeps_fp32_islands(tmp_path):
    onnx = pytest.importorskip("onnx")
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])
    big = numpy_helper.from_array(np.array([1e5, 0.5, -2.0, 1e-9], np.float32), "w")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("ReduceMean", ["xw", "axes"], ["y"], keepdims=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [big, axes]), opset_imports=[helper.make_opsetid("", 18)])
    src, dst = tmp_path / "g.onnx", tmp_path / "g16.onnx"
    onnx.save(model, src)
    report = to_fp16_onnx(src, dst, fp16_io=False)
    assert report.clipped_values == 1 and report.flushed_values == 1 and report.kept_fp32_nodes == {"ReduceMean": 1}
    types = _types(dst)
    assert types["w"] == TensorProto.FLOAT16 and types["y"] == TensorProto.FLOAT and types["x"] == TensorProto.FLOAT
    session = onnxruntime.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.ones((2, 4), np.float32)})[0]
    np.testing.assert_allclose(out, np.full((2, 1), (65504.0 + 0.5 - 2.0 + 0.0) / 4), rtol=1e-3)


# ---- the comparator ------------------------------------------------------------------------------
def test_comparator_passes_and_fails_by_statistic():
    rng = np.random.default_rng(0)
    ref = rng.random((4, 3, 16, 16)).astype(np.float32)
    noisy = ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)
    assert compare_arrays("x", ref, ref, [Tolerance(0.0)]).passed
    ok = compare_arrays("x", noisy, ref, [Tolerance(1e-2, 0.0, "p99"), Tolerance(1e-2, 0.0, "max")])
    assert ok.passed and ok.stats is not None and 1e-3 < ok.stats.max_abs < 1e-2 and ok.stats.mean_abs < ok.stats.p99_abs
    spiked = noisy.copy()
    spiked[0, 0, 0, 0] += 0.5
    tolerances = [Tolerance(1e-2, 0.0, "p99"), Tolerance(5e-2, 0.0, "max")]
    result = compare_arrays("x", spiked, ref, tolerances)
    assert not result.passed and [c["passed"] for c in result.checks] == [True, False]
    assert "max error 0.5" in result.reason
    assert compare_arrays("x", spiked, ref, [Tolerance(1e-2, 0.0, "median"), Tolerance(2e-3, 0.0, "mean")]).passed
    # rtol scales with |reference|: 1% of values near 1 passes where an absolute 1e-3 does not
    scaled = ref * 1.01
    assert compare_arrays("x", scaled, ref, [Tolerance(1e-7, 1.01e-2)]).passed
    assert not compare_arrays("x", scaled, ref, [Tolerance(1e-3, 0.0)]).passed
    nan = ref.copy()
    nan[1, 1, 1, 1] = np.nan
    assert "non-finite" in compare_arrays("x", nan, ref, tolerances).reason
    assert "shape" in compare_arrays("x", ref[:2], ref, tolerances).reason
    with pytest.raises(BackendError, match="statistic must be one of"):
        Tolerance(1e-3, 0.0, "p50")


def test_default_tolerances_cover_every_output_and_precision():
    for output in compare.OUTPUTS:
        for precision in PRECISIONS:
            assert compare.DEFAULT_TOLERANCES[(output, precision)]


# ---- torch backend options -------------------------------------------------------------------------
def test_torch_fp16_and_cuda_graphs_are_refused_on_the_cpu(small_bundle):
    from isl_rt.backends.torch import TorchBackend

    path = small_bundle.torch_path("dedn")
    common = {"input_name": "masked", "output_name": "inpainted", "channels": 3, "size": small_bundle.manifest.size}
    with pytest.raises(BackendError, match="need the torch-cuda backend"):
        TorchBackend(path, **common, fp16=True)
    with pytest.raises(BackendError, match="need the torch-cuda backend"):
        TorchBackend(path, **common, cuda_graph_batch=16)


# ---- on a GPU ----------------------------------------------------------------------------------------
def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_cuda(), reason="needs a CUDA build of torch and a GPU")
def test_torch_cuda_fp16_graph_matches_the_cpu(small_bundle):
    from isl_rt.pipeline import Scorer, params_from_bundle

    from isl_rt import kernels

    params = params_from_bundle(small_bundle)
    x = kernels.window(accuracy.phantom_cohort(1, slices=8)[0].hu, params.windows, params.size)
    e = kernels.canny(x, params.canny_low, params.canny_high, sigma=params.canny_sigma)
    groups = small_bundle.partition().groups

    batch = kernels.fanout(x, e, small_bundle.partition().group_map(small_bundle.manifest.size), groups)
    with open_backends(small_bundle, "torch") as cpu, \
            open_backends(small_bundle, "torch-cuda", torch_fp16=True, cuda_graph_batch=16) as gpu:
        ref = cpu.dedn.infer({"masked": batch[:16]})["inpainted"]
        graphed = gpu.dedn.infer({"masked": batch[:16]})["inpainted"]  # the captured batch
        eager = gpu.dedn.infer({"masked": batch[:groups]})["inpainted"]  # another batch: eager
        np.testing.assert_allclose(graphed, ref, atol=5e-2)
        assert np.quantile(np.abs(graphed - ref), 0.99) < 1e-2
        np.testing.assert_allclose(eager, graphed[:groups], atol=5e-3)
        Scorer(params_from_bundle(small_bundle), gpu.dedn, gpu.drn).score(np.zeros((2, 64, 64), np.int16))


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRT and GPU is not None), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_engines_build_run_and_match_onnxruntime(tmp_path, small_bundle, precision):
    result = engine.build_engines(small_bundle, precision=precision, max_batch=32, workspace_mb=1024,
                                  timing_cache=tmp_path / "timing.cache", cache=tmp_path / "cache")
    assert result.folder == tmp_path / "cache" / result.record.key.id and (tmp_path / "timing.cache").stat().st_size > 0
    report = accuracy.check_tensorrt(small_bundle, result.folder, series=4, slices=4)
    assert report.passed, report.to_dict()
    record, _ = engine.find_engine(small_bundle, GPU, result.record.key.tensorrt_version, cache=tmp_path / "cache")
    assert record is not None and record.folder == result.folder


def test_gpu_benchmark_without_a_gpu_prints_one_line_and_exits_0():
    import subprocess
    import sys

    if GPU is not None:
        pytest.skip("a GPU is visible here")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and len(lines) == 1
    report = json.loads(lines[0])
    assert report["gpu"] is None and report["skipped"].startswith("no CUDA GPU visible")
