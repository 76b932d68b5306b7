"""The backend base class and the ONNX Runtime backend, on a tiny hand-built ONNX model."""

import importlib
import pkgutil

import numpy as np
import pytest

import isl_rt.backends
from isl_rt.backends.base import Backend
from isl_rt.backends.onnxruntime import OnnxRuntimeBackend
from isl_rt.errors import BackendError

onnx = pytest.importorskip("onnx")


@pytest.fixture()
def scale_model(tmp_path):
    """y = 2 * x with a dynamic batch axis."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "scale", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "scale.onnx"
    onnx.save(model, path)
    return path


def test_every_backend_subclasses_the_base():
    helpers = {"base", "gpu", "tensorrt_engines"}  # the base class, the GPU probe, TensorRT's engine cache
    modules = [m.name for m in pkgutil.iter_modules(isl_rt.backends.__path__) if m.name not in helpers]
    assert {"onnxruntime", "openvino", "tensorrt", "torch"} <= set(modules)
    for name in modules:
        module = importlib.import_module(f"isl_rt.backends.{name}")
        runners = [v for v in vars(module).values() if isinstance(v, type) and v.__name__.endswith("Backend") and v is not Backend]
        assert runners, f"isl_rt.backends.{name} defines no *Backend class"
        assert all(issubclass(r, Backend) for r in runners)


def test_input_check_covers_batch_ranges_and_host_dtypes():
    from isl_rt.backends.base import TensorMeta

    meta = TensorMeta("x", np.dtype(np.float16), (None, 3), batch=(1, 4), host_dtypes=(np.dtype(np.float32),))
    meta.check(np.zeros((4, 3), np.float16), "m")
    meta.check(np.zeros((2, 3), np.float32), "m")  # a host float32 array is converted by the runner
    with pytest.raises(BackendError, match="must be float16 or float32, got float64"):
        meta.check(np.zeros((2, 3), np.float64), "m")
    with pytest.raises(BackendError, match="takes batches of 1..4, got 5"):
        meta.check(np.zeros((5, 3), np.float16), "m")

    class GpuArray:  # what CuPy/torch expose: a GPU array must have the binding's dtype itself
        shape = (2, 3)
        __cuda_array_interface__ = {"typestr": "<f4", "shape": (2, 3), "data": (0, False), "version": 3}

    with pytest.raises(BackendError, match="must be float16, got float32"):
        meta.check(GpuArray(), "m")


def test_onnxruntime_infers_and_times(scale_model):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with OnnxRuntimeBackend(scale_model, threads=1) as backend:
        meta = backend.input_metadata()
        assert meta["x"].shape == (None, 3)
        out = backend.infer({"x": x})
        assert backend.inference_count == 1 and backend.last_inference_time > 0
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert not backend.is_active


def test_onnxruntime_rejects_wrong_inputs(scale_model):
    with OnnxRuntimeBackend(scale_model) as backend:
        with pytest.raises(BackendError, match="must be float32"):
            backend.infer({"x": np.zeros((1, 3), np.float64)})
        with pytest.raises(BackendError, match="must have shape"):
            backend.infer({"x": np.zeros((1, 4), np.float32)})
        with pytest.raises(BackendError, match="inputs must be"):
            backend.infer({"z": np.zeros((1, 3), np.float32)})


def test_inactive_backend_and_bad_file(tmp_path, scale_model):
    backend = OnnxRuntimeBackend(scale_model)
    with pytest.raises(BackendError, match="not active"):
        backend.infer({"x": np.zeros((1, 3), np.float32)})
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="could not load"):
        OnnxRuntimeBackend(bad).activate()
    with pytest.raises(BackendError, match="lacks the execution provider"):
        OnnxRuntimeBackend(scale_model, providers=["NoSuchExecutionProvider"]).activate()
