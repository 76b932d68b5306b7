"""The native kernels of isl-rt and their dispatch.

Every function here runs on ``isl_rt._native`` (C++/OpenMP) for numpy arrays, on ``isl_rt._cuda``
for GPU arrays (``__cuda_array_interface__``), and on the numpy twin of the same name in
:mod:`isl_rt.kernels.reference` when ``ISL_RT_KERNELS=reference``. Inputs are checked once,
here, before dispatch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from isl_rt import extensions
from isl_rt.errors import IslError
from isl_rt.kernels import reference
from isl_rt.kernels._dispatch import device_empty, device_pointer, host_out, mode, on_device, stream_handle

__all__ = ["MAX_BLUR_SIGMA", "MAX_WINDOWS", "canny", "gaussian_blur", "window"]

# ---- window, gaussian_blur, canny (csrc/window.h, csrc/canny.h) ----------------------------------

MAX_WINDOWS = 16            #: most windows (channels) one window() call produces (kMaxWindows)
MAX_BLUR_SIGMA = 16.0       #: largest Gaussian sigma (radius ceil(4 sigma) <= 64, kMaxBlurSigma)


def _real(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise IslError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _shape_of(array: Any) -> tuple[int, ...]:
    if hasattr(array, "__cuda_array_interface__"):
        return tuple(int(v) for v in array.__cuda_array_interface__["shape"])
    return tuple(np.shape(array))


def _window_list(windows: Any) -> np.ndarray:
    try:
        wins = np.array(windows, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise IslError(f"windows must be (level, width) pairs of numbers, got {windows!r}.") from err
    if wins.ndim == 1 and wins.shape == (2,):
        wins = wins[None]
    if wins.ndim != 2 or wins.shape[1] != 2 or not 1 <= wins.shape[0] <= MAX_WINDOWS:
        raise IslError(f"windows must be 1 to {MAX_WINDOWS} (level, width) pairs, got shape {wins.shape}.")
    if not np.all(np.isfinite(wins)):
        raise IslError("Every window level and width must be a finite number.")
    bad = np.flatnonzero(wins[:, 1] <= 0)
    if bad.size:
        raise IslError(f"Window {int(bad[0])} has width {wins[bad[0], 1]:g}; a window width must be > 0 HU.")
    return np.ascontiguousarray(wins)


def _size(size: Any) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral) or int(size) < 1:
        raise IslError(f"size must be a positive integer (the output side S), got {size!r}.")
    return int(size)


def _host_hu(hu: Any) -> np.ndarray:
    arr = np.asarray(hu)
    if arr.ndim != 3:
        raise IslError(f"hu must be a [N, H, W] stack of slices, got shape {arr.shape}.")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise IslError(f"hu slices must be at least 1x1 pixels, got shape {arr.shape}.")
    if arr.dtype != np.int16:
        if not np.issubdtype(arr.dtype, np.integer):
            raise IslError(f"hu must hold integer Hounsfield units (int16), got {arr.dtype.name}.")
        if arr.size and (arr.min() < -32768 or arr.max() > 32767):
            raise IslError("hu values must fit in int16 (-32768..32767 HU).")
        arr = arr.astype(np.int16)
    return np.ascontiguousarray(arr)


def window(
    hu: Any,
    windows: Any,
    size: int,
    *,
    out: Any = None,
    dtype: Any = np.float32,
    stream: Any = None,
) -> Any:
    """Window HU slices into C channels and resample them to S x S: int16 [N,H,W] -> [N,C,S,S].

    ``windows`` is a sequence of (level, width) pairs in HU (or a float array [C, 2]). Each source
    pixel becomes clip((HU - (level - width/2)) / width, 0, 1); each axis is then resampled on its
    own: area averaging when it shrinks, bilinear (half-pixel centres, clamped edges) when it
    grows, unchanged when equal. ``dtype=np.float32`` gives values in [0, 1]; ``np.uint8`` gives
    round(value*255) for display. ``out`` receives the result when given (no allocation).
    """
    wins = _window_list(windows)
    s = _size(size)
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise IslError(f"window dtype must be float32 or uint8, got {out_dtype.name}.")
    if on_device(hu, out):
        return _window_cuda(hu, wins, s, out, out_dtype, stream)
    arr = _host_hu(hu)
    shape = (arr.shape[0], wins.shape[0], s, s)
    if mode() == "reference":
        result = reference.window(arr, wins, s, dtype=out_dtype)
        return result if out is None else _fill(out, result, "out")
    dst = host_out(out, "out", shape, out_dtype)
    extensions.native().window(arr, wins, s, dst)
    return dst


def _window_cuda(hu: Any, wins: np.ndarray, s: int, out: Any, out_dtype: np.dtype, stream: Any) -> Any:
    shape = _shape_of(hu)
    if len(shape) != 3 or shape[1] < 1 or shape[2] < 1:
        raise IslError(f"hu must be a [N, H, W] stack of slices of at least 1x1 pixels, got shape {shape}.")
    n, h, w = shape
    src = device_pointer(hu, "hu", np.int16, shape)
    out_shape = (n, wins.shape[0], s, s)
    if out is None:
        out = device_empty(hu, out_shape, out_dtype)
    dst = device_pointer(out, "out", out_dtype, out_shape)
    extensions.cuda().window(src, n, h, w, wins, s, dst, out_dtype == np.uint8, stream_handle(stream))
    return out


def _fill(out: Any, result: np.ndarray, name: str) -> np.ndarray:
    dst = host_out(out, name, result.shape, result.dtype)
    dst[...] = result
    return dst


def _planes(img: Any, name: str, dtypes: tuple[type, ...]) -> np.ndarray:
    """A host [N, C, H, W] array of one of ``dtypes`` (float64 is converted to float32)."""
    arr = np.asarray(img)
    if arr.ndim != 4:
        raise IslError(f"{name} must be a [N, C, H, W] array, got shape {arr.shape}.")
    if arr.shape[1] < 1 or arr.shape[2] < 1 or arr.shape[3] < 1:
        raise IslError(f"{name} must have at least one channel of at least 1x1 pixels, got shape {arr.shape}.")
    allowed = [np.dtype(d) for d in dtypes]
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.float64 and np.dtype(np.float32) in allowed:
        arr = arr.astype(np.float32)
    if arr.dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        raise IslError(f"{name} must be {names}, got {arr.dtype.name}.")
    return np.ascontiguousarray(arr)


def _device_planes(img: Any, name: str, dtypes: tuple[type, ...]) -> tuple[tuple[int, int, int, int], np.dtype]:
    shape = _shape_of(img)
    if len(shape) != 4 or min(shape[1:]) < 1:
        raise IslError(f"{name} must be a [N, C, H, W] array with at least 1x1 pixels per channel, got shape {shape}.")
    dtype = np.dtype(img.__cuda_array_interface__["typestr"])
    if dtype not in [np.dtype(d) for d in dtypes]:
        names = " or ".join(np.dtype(d).name for d in dtypes)
        raise IslError(f"{name} must be {names} on the GPU, got {dtype.name}.")
    return (shape[0], shape[1], shape[2], shape[3]), dtype


def _sigma(sigma: Any, allow_zero: bool) -> float:
    value = _real(sigma, "sigma")
    low = 0.0 if allow_zero else math.nextafter(0.0, 1.0)
    if not low <= value <= MAX_BLUR_SIGMA:
        bound = "0 <= sigma" if allow_zero else "0 < sigma"
        raise IslError(f"sigma must satisfy {bound} <= {MAX_BLUR_SIGMA:g} pixels, got {value:g}.")
    return value


def gaussian_blur(img: Any, sigma: float, *, out: Any = None, stream: Any = None) -> Any:
    """Separable Gaussian blur of every [H, W] plane: float32 [N,C,H,W] -> float32 [N,C,H,W].

    Taps exp(-i²/2σ²) for |i| <= ceil(4σ), normalised; reflect-101 border (OpenCV's default);
    0 < sigma <= 16. uint8 and float64 input is converted to float32.
    """
    s = _sigma(sigma, allow_zero=False)
    if on_device(img, out):
        shape, _ = _device_planes(img, "img", (np.float32,))
        n, c, h, w = shape
        src = device_pointer(img, "img", np.float32, shape)
        if out is None:
            out = device_empty(img, shape, np.float32)
        dst = device_pointer(out, "out", np.float32, shape)
        extensions.cuda().gaussian_blur(src, n, c, h, w, s, dst, stream_handle(stream))
        return out
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32)
    arr = _planes(arr, "img", (np.float32,))
    if mode() == "reference":
        result = reference.gaussian_blur(arr, s)
        return result if out is None else _fill(out, result, "out")
    dst = host_out(out, "out", arr.shape, np.float32)
    extensions.native().gaussian_blur(arr, s, dst)
    return dst


def canny(img: Any, low: float, high: float, *, sigma: float = 0.0, out: Any = None, stream: Any = None) -> Any:
    """Canny edges of every [H, W] plane: uint8 or float32 [N,C,H,W] -> uint8 [N,C,H,W] of 0/1.

    3x3 Sobel, L2 gradient magnitude, 4-sector non-maximum suppression, double threshold
    (candidate if magnitude > low, strong if > high, 0 <= low <= high, in the units of the input)
    and 8-connected hysteresis, as ``cv2.Canny(img, low, high, L2gradient=True)`` — uint8 input
    gives cv2's edge map exactly. ``sigma > 0`` applies :func:`gaussian_blur` first (cv2 never
    blurs). float64 input is converted to float32.
    """
    lo, hi = _real(low, "low"), _real(high, "high")
    if lo < 0 or lo > hi:
        raise IslError(f"Canny thresholds must satisfy 0 <= low <= high, got low={lo:g}, high={hi:g}.")
    s = _sigma(sigma, allow_zero=True)
    if on_device(img, out):
        shape, dtype = _device_planes(img, "img", (np.uint8, np.float32))
        n, c, h, w = shape
        if n * c * h * w >= 2**31:
            raise IslError(f"A GPU canny batch must hold fewer than 2^31 pixels, got shape {shape}; split it.")
        src = device_pointer(img, "img", dtype, shape)
        if out is None:
            out = device_empty(img, shape, np.uint8)
        dst = device_pointer(out, "out", np.uint8, shape)
        extensions.cuda().canny(src, dtype == np.uint8, n, c, h, w, lo, hi, s, dst, stream_handle(stream))
        return out
    arr = _planes(img, "img", (np.uint8, np.float32))
    if mode() == "reference":
        result = reference.canny(arr, lo, hi, sigma=s)
        return result if out is None else _fill(out, result, "out")
    dst = host_out(out, "out", arr.shape, np.uint8)
    extensions.native().canny(arr, lo, hi, s, dst)
    return dst
