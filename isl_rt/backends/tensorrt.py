"""TensorRT backend: runs one engine that ``isl-rt build-engine`` put in the engine cache.

``activate()`` refuses an engine whose ``engine.json`` key does not match the bundle's networks,
this GPU or this TensorRT version, or whose file was changed, saying which; it then deserialises
the engine, makes one execution context and one CUDA stream, and allocates the output bindings
(and, for host inputs, pinned staging buffers) once, for the profile's largest batch.

``infer`` takes host numpy arrays (copied in and out through the pinned buffers; float32 is
accepted for a float16 binding and converted on the host; outputs come back as float32 numpy)
or GPU arrays with ``__cuda_array_interface__`` (CuPy, torch): zero copy, bound by address, and
the outputs come back as GPU arrays in the engine's dtype — views of the output bindings, valid
until the next ``infer``. A GPU input must be C-contiguous, in the binding's dtype, and written
by work already finished or queued on :attr:`TensorRTBackend.stream`.

Device memory comes from CuPy when installed, else torch (CUDA build). TensorRT, CuPy and torch
are imported by ``activate()``, never by importing this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from isl_rt.backends.base import Backend, TensorMeta
from isl_rt.backends.tensorrt_engines import (
    ENGINE_JSON,
    EngineRecord,
    cache_dir,
    engine_mismatch,
    find_engine,
    require_gpu,
    require_tensorrt,
)
from isl_rt.bundle import sha256_file
from isl_rt.errors import BackendError
from isl_rt.kernels._dispatch import data_pointer, device_new, device_pointer, stream_handle, torch_dtype

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.backends import BackendPair
    from isl_rt.bundle import Bundle


def check_record(record: EngineRecord, network: str, *, dedn_sha256: str, drn_sha256: str, gpu: Any,
                 tensorrt_version: str, verify_file: bool = True) -> None:
    """Raise BackendError (one sentence) when ``record``'s engine for ``network`` cannot run here."""
    why = engine_mismatch(record.key, dedn_sha256=dedn_sha256, drn_sha256=drn_sha256, gpu=gpu, tensorrt_version=tensorrt_version)
    if why is not None:
        raise BackendError(f"The engines in {record.folder} cannot run here: {why}; rebuild with `isl-rt build-engine BUNDLE`.")
    path = record.engine_path(network)
    if not path.is_file():
        raise BackendError(f"{path} is missing; rebuild with `isl-rt build-engine BUNDLE`.")
    if verify_file and sha256_file(path) != record.files[network]["sha256"]:
        raise BackendError(f"{path} does not match the sha256 in {record.folder / ENGINE_JSON}; rebuild with `isl-rt build-engine BUNDLE`.")


class _Allocator:
    """Device and pinned host buffers, a stream and copies, from CuPy or torch (the device helpers
    of :mod:`isl_rt.kernels._dispatch` allocate, read addresses and stream handles)."""

    def __init__(self) -> None:
        try:
            import cupy

            self.kind, self.lib = "cupy", cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
        except ImportError:
            try:
                import torch
            except ImportError:
                raise BackendError("The TensorRT backend needs CuPy or a CUDA build of torch for GPU buffers: pip install cupy-cuda12x.") from None
            if not torch.cuda.is_available():
                raise BackendError("The TensorRT backend found torch without CUDA and no CuPy: pip install cupy-cuda12x.")
            self.kind, self.lib = "torch", torch
            self.stream = torch.cuda.Stream()
        self.handle = stream_handle(self.stream)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return device_new(self.kind, shape, dtype)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if self.kind == "cupy":
            count = int(np.prod(shape))
            memory = self.lib.cuda.alloc_pinned_memory(count * np.dtype(dtype).itemsize)
            return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)
        return self.lib.empty(shape, dtype=torch_dtype(dtype), pin_memory=True).numpy()

    def to_device(self, device: Any, host: np.ndarray) -> None:
        """Queue host -> device on the stream (``host`` is pinned, ``device`` a buffer prefix view)."""
        if self.kind == "cupy":
            device.set(host, stream=self.stream)
        else:
            with self.lib.cuda.stream(self.stream):
                device.copy_(self.lib.from_numpy(host), non_blocking=True)

    def to_host(self, host: np.ndarray, device: Any) -> None:
        if self.kind == "cupy":
            device.get(stream=self.stream, out=host)
        else:
            with self.lib.cuda.stream(self.stream):
                self.lib.from_numpy(host).copy_(device, non_blocking=True)

    def synchronize(self) -> None:
        self.stream.synchronize()


class TensorRTBackend(Backend):
    """Runs the ``network`` ("dedn" or "drn") engine of an engine record with TensorRT."""

    name = "tensorrt"

    def __init__(self, record: EngineRecord, network: str, *, dedn_sha256: str, drn_sha256: str) -> None:
        if network not in record.files:
            raise BackendError(f"{record.folder / ENGINE_JSON} has no {network} engine.")
        super().__init__(str(record.engine_path(network)))
        self.record, self.network = record, network
        self.dedn_sha256, self.drn_sha256 = dedn_sha256, drn_sha256
        self.profile = record.key.dedn_profile if network == "dedn" else record.key.drn_profile
        self.input_name = str(record.files[network]["input"])
        self.output_name = str(record.files[network]["output"])
        self._trt: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._alloc: _Allocator | None = None
        self._meta: dict[str, TensorMeta] = {}
        self._out_dtype = np.dtype(np.float32)
        self._device: dict[str, Any] = {}
        self._host: dict[str, np.ndarray] = {}

    @property
    def stream(self) -> Any:
        """The CUDA stream (a CuPy or torch stream) the engine runs on."""
        self._require_active()
        assert self._alloc is not None
        return self._alloc.stream

    def _activate_impl(self) -> None:
        trt = require_tensorrt()
        gpu = require_gpu()
        check_record(self.record, self.network, dedn_sha256=self.dedn_sha256, drn_sha256=self.drn_sha256, gpu=gpu,
                     tensorrt_version=str(trt.__version__))
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(self.record.engine_path(self.network).read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT could not deserialise {self.model}; rebuild with `isl-rt build-engine BUNDLE`.")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted([self.input_name, self.output_name]):
            raise BackendError(f"{self.model} has tensors {names}, not {self.input_name!r} -> {self.output_name!r}.")
        in_shape = tuple(engine.get_tensor_shape(self.input_name))
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.model} (out of GPU memory?).")
        alloc = _Allocator()
        biggest = (self.profile.max, *in_shape[1:])
        if not context.set_input_shape(self.input_name, biggest):
            raise BackendError(f"{self.model} rejects input shape {biggest}.")
        out_shape = tuple(context.get_tensor_shape(self.output_name))
        self._device = {"in": alloc.empty(biggest, in_dtype), "out": alloc.empty(out_shape, self._out_dtype)}
        self._host = {"in": alloc.pinned(biggest, in_dtype), "out": alloc.pinned(out_shape, self._out_dtype)}
        context.set_tensor_address(self.output_name, data_pointer(self._device["out"]))
        self._trt, self._engine, self._context, self._alloc = trt, engine, context, alloc
        host = (np.dtype(np.float32),) if in_dtype == np.float16 else ()
        self._meta = {self.input_name: TensorMeta(self.input_name, in_dtype, (None, *in_shape[1:]),
                                                  batch=(self.profile.min, self.profile.max), host_dtypes=host)}

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return self._meta

    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        alloc, context = self._alloc, self._context
        assert alloc is not None
        array = feed[self.input_name]
        batch = int(array.shape[0])
        shape = (batch, *self._meta[self.input_name].shape[1:])
        if hasattr(array, "__cuda_array_interface__"):
            address = device_pointer(array, self.input_name, self._meta[self.input_name].dtype, shape)
        else:
            staged = self._host["in"][:batch]
            np.copyto(staged, array, casting="same_kind")
            alloc.to_device(self._device["in"][:batch], staged)
            address = data_pointer(self._device["in"])
        context.set_input_shape(self.input_name, shape)
        context.set_tensor_address(self.input_name, address)
        if not context.execute_async_v3(alloc.handle):
            raise BackendError(f"TensorRT failed to run {self.model} on a batch of {batch}.")
        out = self._device["out"][:batch]
        if hasattr(array, "__cuda_array_interface__"):
            return {self.output_name: out}
        host = self._host["out"][:batch]
        alloc.to_host(host, out)
        alloc.synchronize()
        return {self.output_name: host.astype(np.float32, copy=True)}

    def _deactivate_impl(self) -> None:
        if self._alloc is not None:
            self._alloc.synchronize()
        self._context = self._engine = self._alloc = None
        self._device, self._host = {}, {}


def open_tensorrt_pair(bundle: "Bundle", record: EngineRecord) -> "BackendPair":
    """DeDN and DRN runners on the engines of ``record`` (not yet active)."""
    from isl_rt.backends import BackendPair

    files = bundle.manifest.files
    hashes = {"dedn_sha256": files["dedn"].sha256, "drn_sha256": files["drn"].sha256}
    k = record.key
    return BackendPair(
        dedn=TensorRTBackend(record, "dedn", **hashes),
        drn=TensorRTBackend(record, "drn", **hashes),
        name="tensorrt",
        description=f"TensorRT {k.tensorrt_version}, {k.precision}, {k.gpu_name} (engines {record.folder})",
        precision=k.precision,
    )


def engine_for(bundle: "Bundle", *, cache: Path | None = None) -> EngineRecord:
    """The cached engine record for ``bundle`` on this GPU and TensorRT, or a BackendError saying
    what is missing (TensorRT, a GPU, or an engine built here)."""
    trt = require_tensorrt()
    gpu = require_gpu()
    record, passed = find_engine(bundle, gpu, str(trt.__version__), cache=cache)
    if record is None:
        where = cache_dir() if cache is None else cache
        extra = f" ({passed[0]})" if passed else ""
        raise BackendError(f"No TensorRT engine for {bundle.manifest.name} on {gpu.name} with TensorRT {trt.__version__} "
                           f"in {where}{extra}; build one with `isl-rt build-engine {bundle.root}`.")
    return record
