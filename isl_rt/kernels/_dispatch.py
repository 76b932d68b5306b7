"""Where a kernel call runs: native CPU, CUDA, or the numpy reference.

- Arrays that expose ``__cuda_array_interface__`` (CuPy, torch CUDA tensors, numba) run on the
  CUDA extension; a GPU array without ``isl_rt._cuda`` raises ExtensionError naming the build
  flag — never a silent CPU fallback.
- Host arrays run on ``isl_rt._native`` unless ``ISL_RT_KERNELS=reference`` selects the numpy
  twins in :mod:`isl_rt.kernels.reference`.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from isl_rt.errors import IslError

Mode = Literal["native", "reference"]
_MODES: tuple[Mode, ...] = ("native", "reference")


def mode() -> Mode:
    """The host implementation chosen by ``ISL_RT_KERNELS`` (default ``native``)."""
    value = os.environ.get("ISL_RT_KERNELS", "native").strip().lower() or "native"
    if value not in _MODES:
        raise IslError(f"ISL_RT_KERNELS={value!r} is not one of {', '.join(_MODES)}.")
    return value  # type: ignore[return-value]


def on_device(*arrays: Any) -> bool:
    """True when the arrays live on a CUDA device; mixing host and device arrays is an error."""
    flags = [hasattr(a, "__cuda_array_interface__") for a in arrays if a is not None]
    if any(flags) and not all(flags):
        raise IslError("A kernel got a mix of host (numpy) and GPU arrays; pass all of them on one device.")
    return bool(flags) and all(flags)


def device_pointer(array: Any, name: str, dtype: np.dtype | type, shape: tuple[int, ...]) -> int:
    """Device address of a C-contiguous GPU array, after checking its dtype and shape."""
    iface = array.__cuda_array_interface__
    if np.dtype(iface["typestr"]) != np.dtype(dtype):
        raise IslError(f"{name} must be {np.dtype(dtype).name} on the GPU, got {np.dtype(iface['typestr']).name}.")
    if tuple(iface["shape"]) != tuple(shape):
        raise IslError(f"{name} must have shape {tuple(shape)}, got {tuple(iface['shape'])}.")
    strides = iface.get("strides")
    if strides is not None:
        expected = np.empty(0, dtype=dtype).itemsize
        contiguous = []
        for size in reversed(shape):
            contiguous.append(expected)
            expected *= size
        if tuple(reversed(contiguous)) != tuple(strides) and int(np.prod(shape)) > 1:
            raise IslError(f"{name} must be C-contiguous on the GPU; call .contiguous() / cupy.ascontiguousarray first.")
    return int(iface["data"][0])


def data_pointer(array: Any) -> int:
    """Device address of a GPU array (no checks; see :func:`device_pointer`)."""
    return int(array.__cuda_array_interface__["data"][0])


def torch_dtype(dtype: np.dtype | type) -> Any:
    """The torch dtype of a numpy dtype the kernels and engines use."""
    import torch

    table = {np.dtype(np.float32): torch.float32, np.dtype(np.uint8): torch.uint8, np.dtype(np.int16): torch.int16,
             np.dtype(np.int32): torch.int32, np.dtype(np.float16): torch.float16}
    return table[np.dtype(dtype)]


def device_new(library: str, shape: tuple[int, ...], dtype: np.dtype | type, device: Any = None) -> Any:
    """A new uninitialised GPU array from ``library`` ("cupy" or "torch") on ``device`` (default: current)."""
    if library == "cupy":
        import cupy

        if device is None:
            return cupy.empty(shape, dtype=dtype)
        with cupy.cuda.Device(device):
            return cupy.empty(shape, dtype=dtype)
    if library == "torch":
        import torch

        return torch.empty(shape, dtype=torch_dtype(dtype), device="cuda" if device is None else device)
    raise IslError(f"Cannot allocate GPU arrays with {library!r}; use CuPy or torch.")


def device_empty(like: Any, shape: tuple[int, ...], dtype: np.dtype | type) -> Any:
    """A new uninitialised GPU array from the same library (CuPy or torch) and device as ``like``."""
    module = type(like).__module__.split(".")[0]
    if module == "cupy":
        return device_new("cupy", shape, dtype, like.device.id)
    if module == "torch":
        return device_new("torch", shape, dtype, like.device)
    raise IslError(f"Cannot allocate a GPU output like a {type(like).__name__}; pass out= explicitly.")


def stream_handle(stream: Any) -> int:
    """A raw cudaStream_t from None (legacy default stream), an int, or a CuPy/torch stream."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("ptr", "cuda_stream"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise IslError(f"Cannot use {type(stream).__name__} as a CUDA stream; pass a CuPy or torch stream or an int handle.")


def host_array(array: Any, name: str, dtype: np.dtype | type, ndim: int) -> np.ndarray:
    """``array`` as a C-contiguous numpy array of ``dtype`` (copying only when needed)."""
    arr = np.asarray(array)
    if arr.ndim != ndim:
        raise IslError(f"{name} must have {ndim} dimensions, got shape {arr.shape}.")
    if arr.dtype != np.dtype(dtype):
        if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise IslError(f"{name} must be {np.dtype(dtype).name}, got {arr.dtype.name}.")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def host_out(out: np.ndarray | None, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A caller-provided output checked for shape, dtype and contiguity, or a new one."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != np.dtype(dtype):
        got = (getattr(out, "shape", None), getattr(getattr(out, "dtype", None), "name", None))
        raise IslError(f"{name} must be a numpy array of shape {tuple(shape)} and dtype {np.dtype(dtype).name}, got {got}.")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise IslError(f"{name} must be a writeable C-contiguous array.")
    return out
