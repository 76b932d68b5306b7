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
from isl_rt.kernels._dispatch import device_empty, device_pointer, host_array, host_out, mode, on_device, stream_handle
from isl_rt.kernels.partition import Partition, cell_bounds, group_ids_error

__all__ = [
    "IMAGE_HU_SCALE",
    "MAX_BLUR_SIGMA",
    "MAX_WINDOWS",
    "Partition",
    "canny",
    "cavity",
    "cell_bounds",
    "compose_diff",
    "fanout",
    "gaussian_blur",
    "heatmap",
    "window",
    "window_images",
]

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


#: Pre-windowed images in [0, 1] become pseudo-HU round(v · IMAGE_HU_SCALE) before :func:`window`.
IMAGE_HU_SCALE = 4000


def window_images(images: Any, windows: Any, size: int) -> np.ndarray:
    """Model input of pre-windowed images: float [N,C,H,W] in [0, 1] -> float32 [N,C,S,S].

    The one definition training (``isl_rt.training.data``) and ``scan`` share: each value v becomes
    the pseudo-HU ``round(v · IMAGE_HU_SCALE)`` (int16), and image channel c goes through
    :func:`window` with window c alone, so the identity windows (level 2000, width 4000) give
    round(v · 4000) / 4000 resampled to S × S exactly as a CT slice is.
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise IslError(f"images must be a [N, C, H, W] stack, got shape {arr.shape}.")
    wins = _window_list(windows)
    if wins.shape[0] != arr.shape[1]:
        raise IslError(f"{arr.shape[1]} image channel(s) but {wins.shape[0]} window(s); give one window per channel.")
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise IslError("image values must be finite numbers in [0, 1].")
    pseudo_hu = np.rint(arr.astype(np.float32) * IMAGE_HU_SCALE).astype(np.int16)
    channels = [window(np.ascontiguousarray(pseudo_hu[:, c]), wins[c : c + 1], size) for c in range(arr.shape[1])]
    return channels[0] if len(channels) == 1 else np.ascontiguousarray(np.concatenate(channels, axis=1))


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


# ---- partition fan-out, composition and heat map (csrc/fanout.h, csrc/heatmap.h) ----------------
#
# group_map and groups: `groups` is a required argument and must equal group_map.max() + 1 with
# every id in 0..groups-1 (Partition.group_map(S) and Partition.groups always agree). The map is
# not scanned separately: on the CPU the kernel checks every id during its own pass and reports
# (ids out of range, largest id), and the call raises IslError when they do not fit. On the GPU
# nothing is read back (that would synchronise the stream); out-of-range ids are never used as an
# index there (compose_diff writes NaN for them), so pass maps built by Partition.


def _groups(groups: Any) -> int:
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise IslError(f"groups must be a positive integer (Partition.groups), got {groups!r}.")
    return int(groups)


def _nchw(shape: tuple[int, ...], name: str) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise IslError(f"{name} must have 4 dimensions [N, C, H, W], got shape {tuple(shape)}.")
    n, c, h, w = (int(v) for v in shape)
    if c < 1 or h < 1 or w < 1:
        raise IslError(f"{name} must have at least one channel and one pixel, got shape {tuple(shape)}.")
    return n, c, h, w


def _same_shape(actual: tuple[int, ...], expected: tuple[int, ...], name: str, what: str) -> None:
    if tuple(actual) != tuple(expected):
        raise IslError(f"{name} must have the shape of {what} {tuple(expected)}, got {tuple(actual)}.")


def _device_shape(array: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in array.__cuda_array_interface__["shape"])


def _raise_for_group_ids(check: tuple[int, int], groups: int) -> None:
    problem = group_ids_error(int(check[0]), int(check[1]), groups)
    if problem:
        raise IslError(problem)


def _fanout_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise IslError(f"fanout dtype must be float32 or float16 (float16 on the GPU only), got {dtype!r}.")
    return resolved


def fanout(
    x: Any,
    edges: Any,
    group_map: Any,
    groups: int,
    *,
    out: Any = None,
    dtype: Any = np.float32,
    stream: Any = None,
) -> Any:
    """The DeDN input batch [N*G, 2C+1, H, W] = (x·m_g, 1 - m_g, edges) for every slice and group.

    x float32 [N, C, H, W]; edges uint8 [N, C, H, W] (non-zero = edge); group_map int32 [H, W]
    with ids 0..groups-1. ``out`` is written in place when given (no allocation). ``dtype``:
    float32, or float16 on the GPU only, to write straight into an FP16 engine's input binding.
    """
    groups = _groups(groups)
    dtype = _fanout_dtype(dtype)
    if on_device(x, edges, group_map, out):
        return _fanout_cuda(x, edges, group_map, groups, out, dtype, stream)
    if dtype != np.float32:
        raise IslError("fanout writes float16 only into GPU buffers; on the CPU use dtype=np.float32.")
    xa = host_array(x, "x", np.float32, 4)
    n, c, h, w = _nchw(xa.shape, "x")
    ea = host_array(edges, "edges", np.uint8, 4)
    _same_shape(ea.shape, xa.shape, "edges", "x")
    gm = host_array(group_map, "group_map", np.int32, 2)
    _same_shape(gm.shape, (h, w), "group_map", "one slice of x")
    o = host_out(out, "out", (n * groups, 2 * c + 1, h, w), np.float32)
    if mode() == "reference":
        return reference.fanout(xa, ea, gm, groups, out=o)
    _raise_for_group_ids(extensions.native().fanout(xa, ea, gm, groups, o), groups)
    return o


def _fanout_cuda(x: Any, edges: Any, group_map: Any, groups: int, out: Any, dtype: np.dtype, stream: Any) -> Any:
    n, c, h, w = _nchw(_device_shape(x), "x")
    shape = (n * groups, 2 * c + 1, h, w)
    px = device_pointer(x, "x", np.float32, (n, c, h, w))
    pe = device_pointer(edges, "edges", np.uint8, (n, c, h, w))
    pg = device_pointer(group_map, "group_map", np.int32, (h, w))
    o = device_empty(x, shape, dtype) if out is None else out
    po = device_pointer(o, "out", dtype, shape)
    extensions.cuda().fanout(px, pe, pg, n, c, h, w, groups, po, dtype == np.float16, stream_handle(stream))
    return o


def compose_diff(
    x: Any,
    xhat: Any,
    group_map: Any,
    groups: int,
    *,
    out_dd: Any = None,
    out_dif: Any = None,
    stream: Any = None,
) -> tuple[Any, Any]:
    """(x_dd, x_dif) float32 [N, C, H, W]: x_dd[n,c,y,x] = xhat[n·G + group_map[y,x], c, y, x], x_dif = |x - x_dd|.

    xhat is float32 [N*G, C, H, W] (float16 also accepted on the GPU: an FP16 engine's output).
    """
    groups = _groups(groups)
    if on_device(x, xhat, group_map, out_dd, out_dif):
        return _compose_diff_cuda(x, xhat, group_map, groups, out_dd, out_dif, stream)
    xa = host_array(x, "x", np.float32, 4)
    n, c, h, w = _nchw(xa.shape, "x")
    xh = host_array(xhat, "xhat", np.float32, 4)
    _same_shape(xh.shape, (n * groups, c, h, w), "xhat", "[N*G, C, H, W]")
    gm = host_array(group_map, "group_map", np.int32, 2)
    _same_shape(gm.shape, (h, w), "group_map", "one slice of x")
    dd = host_out(out_dd, "out_dd", (n, c, h, w), np.float32)
    dif = host_out(out_dif, "out_dif", (n, c, h, w), np.float32)
    if mode() == "reference":
        return reference.compose_diff(xa, xh, gm, groups, out_dd=dd, out_dif=dif)
    _raise_for_group_ids(extensions.native().compose_diff(xa, xh, gm, groups, dd, dif), groups)
    return dd, dif


def _compose_diff_cuda(x: Any, xhat: Any, group_map: Any, groups: int, out_dd: Any, out_dif: Any,
                       stream: Any) -> tuple[Any, Any]:
    n, c, h, w = _nchw(_device_shape(x), "x")
    px = device_pointer(x, "x", np.float32, (n, c, h, w))
    xhat_dtype = np.dtype(xhat.__cuda_array_interface__["typestr"])
    if xhat_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise IslError(f"xhat must be float32 or float16 on the GPU, got {xhat_dtype.name}.")
    pxh = device_pointer(xhat, "xhat", xhat_dtype, (n * groups, c, h, w))
    pg = device_pointer(group_map, "group_map", np.int32, (h, w))
    dd = device_empty(x, (n, c, h, w), np.float32) if out_dd is None else out_dd
    dif = device_empty(x, (n, c, h, w), np.float32) if out_dif is None else out_dif
    pdd = device_pointer(dd, "out_dd", np.float32, (n, c, h, w))
    pdif = device_pointer(dif, "out_dif", np.float32, (n, c, h, w))
    extensions.cuda().compose_diff(px, pxh, xhat_dtype == np.float16, pg, n, c, h, w, groups, pdd, pdif,
                                   stream_handle(stream))
    return dd, dif


def _heat_params(threshold: Any, box: Any, gamma: Any) -> tuple[float, int, float]:
    try:
        t = float(threshold)
        gm = float(gamma)
    except (TypeError, ValueError):
        raise IslError(f"threshold and gamma must be numbers, got {threshold!r} and {gamma!r}.") from None
    if not 0.0 <= t < 1.0:
        raise IslError(f"The heat-map threshold must be in [0, 1), got {threshold!r}.")
    if isinstance(box, (bool, np.bool_)) or not isinstance(box, (int, np.integer)) or box < 1 or box % 2 == 0:
        raise IslError(f"The heat-map box must be an odd integer >= 1, got {box!r}.")
    if not (math.isfinite(gm) and gm >= 0.0):
        raise IslError(f"The heat-map exponent gamma must be finite and >= 0, got {gamma!r}.")
    if np.float32(t) >= 1.0:  # 0.99999999 rounds to 1.0 in the kernels' float32
        raise IslError(f"The heat-map threshold {threshold!r} is too close to 1.")
    return t, int(box), gm


def heatmap(
    x_dif: Any,
    x: Any,
    threshold: float,
    box: int,
    gamma: float,
    *,
    out: Any = None,
    stream: Any = None,
) -> tuple[Any, Any]:
    """(heat float32 [N, H, W] in [0, 1], apds float32 [N]) from x_dif and x [N, C, H, W].

    threshold t in [0, 1), box odd >= 1, gamma >= 0; the formula is documented in
    csrc/heatmap.h. ``out`` receives the heat maps when given; apds is always a new array.
    """
    t, box, gamma = _heat_params(threshold, box, gamma)
    if on_device(x_dif, x, out):
        return _heatmap_cuda(x_dif, x, t, box, gamma, out, stream)
    da = host_array(x_dif, "x_dif", np.float32, 4)
    n, c, h, w = _nchw(da.shape, "x_dif")
    xa = host_array(x, "x", np.float32, 4)
    _same_shape(xa.shape, da.shape, "x", "x_dif")
    heat = host_out(out, "out", (n, h, w), np.float32)
    if mode() == "reference":
        return reference.heatmap(da, xa, t, box, gamma, out=heat)
    apds = np.empty(n, dtype=np.float32)
    extensions.native().heatmap(da, xa, t, box, gamma, heat, apds)
    return heat, apds


def _heatmap_cuda(x_dif: Any, x: Any, t: float, box: int, gamma: float, out: Any, stream: Any) -> tuple[Any, Any]:
    n, c, h, w = _nchw(_device_shape(x_dif), "x_dif")
    pd = device_pointer(x_dif, "x_dif", np.float32, (n, c, h, w))
    px = device_pointer(x, "x", np.float32, (n, c, h, w))
    heat = device_empty(x_dif, (n, h, w), np.float32) if out is None else out
    ph = device_pointer(heat, "out", np.float32, (n, h, w))
    apds = device_empty(x_dif, (n,), np.float32)
    pa = device_pointer(apds, "apds", np.float32, (n,))
    extensions.cuda().heatmap(pd, px, n, c, h, w, t, box, gamma, ph, pa, stream_handle(stream))
    return heat, apds


# ---- cranial cavity mask (csrc/cavity.h) -----------------------------------------------------------


def _cavity_params(
    channel: Any, bone: Any, margin: Any, sides: Any, largest: Any, channels: int
) -> tuple[int, float, int, int, bool]:
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < channels:
        raise IslError(f"The cavity's bone channel must be an integer in 0..{channels - 1}, got {channel!r}.")
    if isinstance(margin, (bool, np.bool_)) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise IslError(f"The cavity margin must be an integer number of pixels >= 0, got {margin!r}.")
    if isinstance(sides, (bool, np.bool_)) or not isinstance(sides, (int, np.integer)) or not 1 <= sides <= 4:
        raise IslError(f"The cavity's sides (directions in which bone must be reached) must be 1, 2, 3 or 4, got {sides!r}.")
    if not isinstance(largest, (bool, np.bool_)):
        raise IslError(f"The cavity's largest must be True or False, got {largest!r}.")
    return int(channel), _real(bone, "bone"), int(margin), int(sides), bool(largest)


def _cavity_size(h: int, w: int, largest: bool) -> None:
    if largest and h * w > 2**31 - 1:
        raise IslError(f"The cavity's largest component needs slices of fewer than 2**31 pixels, got {h}x{w}.")


def cavity(
    x: Any,
    channel: int,
    bone: float,
    margin: int,
    sides: int = 4,
    largest: bool = False,
    *,
    out: Any = None,
    stream: Any = None,
) -> Any:
    """float32 [N, H, W] mask, 1 inside the skull, from windowed slices x [N, C, H, W].

    A pixel is inside when channel ``channel`` of x is below ``bone`` there, no bone lies within
    ``margin`` pixels of it along its row or column, and bone is reached in at least ``sides`` of
    the four directions (4: enclosed along its row and its column). With ``largest`` only one
    4-connected component of each slice is kept: the one with the most pixels enclosed on all
    four sides, then the largest, then the first in raster order (csrc/cavity.h). ``out``
    receives the mask when given.
    """
    if on_device(x, out):
        n, c, h, w = _nchw(_device_shape(x), "x")
        ch, level, margin, sides, largest = _cavity_params(channel, bone, margin, sides, largest, c)
        _cavity_size(h, w, largest)
        px = device_pointer(x, "x", np.float32, (n, c, h, w))
        mask = device_empty(x, (n, h, w), np.float32) if out is None else out
        pm = device_pointer(mask, "out", np.float32, (n, h, w))
        extensions.cuda().cavity(px, n, c, h, w, ch, level, margin, sides, largest, pm, stream_handle(stream))
        return mask
    xa = host_array(x, "x", np.float32, 4)
    n, c, h, w = _nchw(xa.shape, "x")
    ch, level, margin, sides, largest = _cavity_params(channel, bone, margin, sides, largest, c)
    _cavity_size(h, w, largest)
    mask = host_out(out, "out", (n, h, w), np.float32)
    if mode() == "reference":
        return reference.cavity(xa, ch, level, margin, sides=sides, largest=largest, out=mask)
    extensions.native().cavity(xa, ch, level, margin, sides, largest, mask)
    return mask
