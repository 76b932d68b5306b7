"""ONNX Runtime backend: the default on any CPU; CUDA and TensorRT execution providers when the
installed onnxruntime has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from isl_rt.backends.base import Backend, TensorMeta
from isl_rt.errors import BackendError

_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint8)": np.dtype(np.uint8),
}

#: execution providers in the order ``auto`` prefers them
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


class OnnxRuntimeBackend(Backend):
    """Runs one ONNX model with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.providers = list(providers)
        self.threads = threads
        self._session: Any = None
        self._inputs: dict[str, TensorMeta] = {}

    def _activate_impl(self) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise BackendError(f"onnxruntime cannot be imported ({err}); `pip install onnxruntime`.") from None
        missing = [p for p in self.providers if p not in onnxruntime.get_available_providers()]
        if missing:
            raise BackendError(
                f"ONNX Runtime here lacks the execution provider(s) {missing}; "
                f"available: {onnxruntime.get_available_providers()}."
            )
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads > 0:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(str(self.path), sess_options=options, providers=self.providers)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise BackendError(f"ONNX Runtime could not load {self.path}: {err}") from None
        self._inputs = {}
        for node in self._session.get_inputs():
            if node.type not in _ORT_DTYPES:
                raise BackendError(f"{self.path}: input {node.name!r} has unsupported type {node.type}.")
            shape = tuple(d if isinstance(d, int) else None for d in node.shape)
            dtype = _ORT_DTYPES[node.type]
            host = (np.dtype(np.float32),) if dtype == np.float16 else ()  # an FP16 graph takes float32, cast here
            self._inputs[node.name] = TensorMeta(node.name, dtype, shape, host_dtypes=host)

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return self._inputs

    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        names = [o.name for o in self._session.get_outputs()]
        feed = {k: v.astype(self._inputs[k].dtype) if v.dtype != self._inputs[k].dtype else v for k, v in feed.items()}
        values = self._session.run(names, feed)
        return dict(zip(names, values))

    def _deactivate_impl(self) -> None:
        self._session = None
