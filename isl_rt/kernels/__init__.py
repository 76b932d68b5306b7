"""The native kernels of isl-rt and their dispatch.

Every function here runs on ``isl_rt._native`` (C++/OpenMP) for numpy arrays, on ``isl_rt._cuda``
for GPU arrays (``__cuda_array_interface__``), and on the numpy twin of the same name in
:mod:`isl_rt.kernels.reference` when ``ISL_RT_KERNELS=reference``. Inputs are checked once,
here, before dispatch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from isl_rt import extensions
from isl_rt.errors import IslError
from isl_rt.kernels import reference
from isl_rt.kernels._dispatch import device_empty, device_pointer, host_array, host_out, mode, on_device, stream_handle
from isl_rt.kernels.partition import Partition, cell_bounds, group_ids_error

__all__ = ["Partition", "cell_bounds", "compose_diff", "fanout", "heatmap"]


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
