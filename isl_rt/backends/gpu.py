"""The CUDA GPU here, found through the driver API (libcuda via ctypes), so that neither
TensorRT, CuPy nor torch has to be imported to know whether a GPU exists."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    """A CUDA device: its name (``NVIDIA H100 80GB HBM3``) and compute capability (``9.0``)."""

    name: str
    compute_capability: str
    index: int = 0


_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


def _driver_gpu(index: int) -> tuple[GpuInfo | None, str]:
    """Device ``index`` through the CUDA driver API (libcuda, installed with the NVIDIA driver)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        return None, f"the NVIDIA driver library libcuda.so.1 cannot be loaded ({err})"
    if cuda.cuInit(0) != 0:
        return None, "the CUDA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= index:
        return None, f"the CUDA driver sees {count.value} device(s)"
    device = ctypes.c_int(0)
    if cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None, f"the CUDA driver cannot open device {index}"
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    if (cuda.cuDeviceGetName(name, 256, device) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, device) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, device) != 0):
        return None, f"the CUDA driver cannot describe device {index}"
    return GpuInfo(name.value.decode(errors="replace"), f"{major.value}.{minor.value}", index), ""


def gpu_or_reason(index: int = 0) -> tuple[GpuInfo | None, str]:
    """CUDA device ``index``, or None and why there is none (for reports)."""
    return _driver_gpu(index)


def detect_gpu(index: int = 0) -> GpuInfo | None:
    """CUDA device ``index`` (name and compute capability), or None where there is none.

    Uses the CUDA driver API through ctypes, so it needs neither TensorRT, CuPy nor torch.
    """
    return _driver_gpu(index)[0]
