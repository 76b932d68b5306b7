"""Numpy twins of the native kernels: the same signatures, written for reading, not speed.

Each function here is the definition the native (C++/OpenMP) and CUDA kernels are tested
against. They accept host arrays only; ``stream`` is accepted for signature parity and ignored.
Float math that accumulates is done in float64; element-wise float32 results (a product with a
0/1 mask, an absolute difference of two float32 values) are exact in float32 already.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from isl_rt.errors import IslError
from isl_rt.kernels.partition import group_ids_error

# ---- window: fused CT windowing + resampling (csrc/window.h) -------------------------------------


def resample_matrix(n: int, s: int) -> np.ndarray:
    """Dense [s, n] matrix that resamples an axis of n pixels to s samples (rows sum to 1).

    s < n: area averaging, output o covers [o*n/s, (o+1)*n/s) and pixel i covers [i, i+1).
    s > n: bilinear with half-pixel centres, source coordinate clamped to [0, n-1].
    s == n: identity.
    """
    r = np.zeros((s, n))
    if s == n:
        return np.eye(n)
    if s < n:
        scale = n / s
        for o in range(s):
            lo, hi = o * scale, (o + 1) * scale
            for i in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
                overlap = min(hi, i + 1) - max(lo, i)
                if overlap > 0:
                    r[o, i] = overlap / scale
        return r
    for o in range(s):
        src = min(max((o + 0.5) * n / s - 0.5, 0.0), n - 1.0)
        i0 = int(np.floor(src))
        f = src - i0
        r[o, i0] += 1.0 - f
        if f > 0:
            r[o, i0 + 1] += f
    return r


def window(
    hu: np.ndarray,
    windows: Any,
    size: int,
    *,
    out: np.ndarray | None = None,
    dtype: Any = np.float32,
    stream: Any = None,
) -> np.ndarray:
    """[N, C, S, S]: clip((HU - (level - width/2)) / width, 0, 1) per source pixel, then Ry @ v @ Rx.T.

    dtype uint8 gives floor(value*255 + 0.5) (round half up).
    """
    hu = np.asarray(hu)
    wins = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    n, h, w = hu.shape
    ry, rx = resample_matrix(h, size), resample_matrix(w, size)
    # uint8 output works on the 0..255 scale from the start (the same value as 255 * the [0, 1]
    # one); it keeps exact .5 ties exact for windows such as 40/80, where 255/80 = 3.1875.
    top = 255.0 if np.dtype(dtype) == np.uint8 else 1.0
    values = np.empty((n, len(wins), size, size))
    for c, (level, width) in enumerate(wins):
        windowed = np.clip((hu.astype(np.float64) - (level - width / 2)) * top / width, 0.0, top)
        values[:, c] = ry @ windowed @ rx.T
    if top == 255.0:
        result = np.floor(values + 0.5).astype(np.uint8)
    else:
        result = values.astype(np.float32)
    if out is None:
        return result
    out[...] = result
    return out


# ---- gaussian_blur and canny (csrc/canny.h) ------------------------------------------------------


def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised taps for offsets -radius..radius, radius = ceil(4*sigma)."""
    radius = int(np.ceil(4.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * offsets**2 / sigma**2)
    return taps / taps.sum()


def reflect101_index(index: np.ndarray, n: int) -> np.ndarray:
    """Reflect-101 (..., 2, 1 | 0, 1, ..., n-1 | n-2, ...) folded into [0, n); n == 1 gives 0."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    folded = np.mod(index, period)
    return np.where(folded < n, folded, period - folded)


def _blur_axis(img: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    n = img.shape[axis]
    radius = len(taps) // 2
    out = np.zeros(img.shape)
    positions = np.arange(n)
    for k, tap in enumerate(taps):
        out += tap * np.take(img, reflect101_index(positions + k - radius, n), axis=axis)
    return out


def _blur64(img: np.ndarray, sigma: float) -> np.ndarray:
    taps = gaussian_taps(sigma)
    return _blur_axis(_blur_axis(np.asarray(img, dtype=np.float64), taps, axis=3), taps, axis=2)


def gaussian_blur(img: np.ndarray, sigma: float, *, out: np.ndarray | None = None, stream: Any = None) -> np.ndarray:
    """[N, C, H, W] float32: separable Gaussian (radius ceil(4 sigma)), reflect-101 border."""
    blurred = _blur64(img, sigma)
    if out is None:
        return blurred.astype(np.float32)
    out[...] = blurred
    return out


TAN22_Q15 = 13573  # round(tan(22.5 deg) * 2**15), OpenCV's fixed-point sector boundary


def _canny_plane(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    # 3x3 Sobel with a replicated border.
    p = np.pad(plane, 1, mode="edge")
    smooth_rows = p[:-2] + 2 * p[1:-1] + p[2:]          # [1 2 1] down the columns
    diff_rows = p[2:] - p[:-2]                           # [-1 0 1] down the columns
    dx = smooth_rows[:, 2:] - smooth_rows[:, :-2]
    dy = diff_rows[:, :-2] + 2 * diff_rows[:, 1:-1] + diff_rows[:, 2:]
    mag2 = dx**2 + dy**2

    # Non-maximum suppression in four sectors, with OpenCV's tie rule (> before, >= after).
    m = np.pad(mag2, 1, mode="constant")                 # 0 outside the plane
    centre = m[1:-1, 1:-1]
    left, right = m[1:-1, :-2], m[1:-1, 2:]
    up, down = m[:-2, 1:-1], m[2:, 1:-1]
    up_left, up_right = m[:-2, :-2], m[:-2, 2:]
    down_left, down_right = m[2:, :-2], m[2:, 2:]
    ax, ay = np.abs(dx) * TAN22_Q15, np.abs(dy) * 2.0**15
    horizontal = ay < ax
    vertical = ~horizontal & (ay > ax + np.abs(dx) * 2.0**16)
    diagonal = ~horizontal & ~vertical
    same_sign = (dx < 0) == (dy < 0)
    keep = np.where(horizontal, (centre > left) & (centre >= right), False)
    keep |= vertical & (centre > up) & (centre >= down)
    keep |= diagonal & same_sign & (centre > up_left) & (centre > down_right)
    keep |= diagonal & ~same_sign & (centre > up_right) & (centre > down_left)

    # Double threshold on the squared magnitude, then hysteresis: keep the 8-connected
    # components of candidates that contain a strong pixel.
    candidate = keep & (mag2 > low * low)
    strong = candidate & (mag2 > high * high)
    from scipy import ndimage  # a runtime dependency (the phantom needs it too)

    labels, count = ndimage.label(candidate, structure=np.ones((3, 3), dtype=bool))
    has_strong = np.zeros(count + 1, dtype=bool)
    has_strong[labels[strong]] = True
    has_strong[0] = False
    return has_strong[labels].astype(np.uint8)


def canny(
    img: np.ndarray,
    low: float,
    high: float,
    *,
    sigma: float = 0.0,
    out: np.ndarray | None = None,
    stream: Any = None,
) -> np.ndarray:
    """[N, C, H, W] uint8 of 0/1 edges, as cv2.Canny(img, low, high, L2gradient=True) per plane.

    Thresholds are on the L2 Sobel magnitude in the units of the input; sigma > 0 blurs first.
    """
    img = np.asarray(img)
    planes = _blur64(img, sigma) if sigma > 0 else img.astype(np.float64)
    result = np.zeros(img.shape, dtype=np.uint8)
    for n in range(img.shape[0]):
        for c in range(img.shape[1]):
            result[n, c] = _canny_plane(planes[n, c], float(low), float(high))
    if out is None:
        return result
    out[...] = result
    return out


# ---- partition fan-out, composition and heat map (fanout.h, heatmap.h) --------------------------


def _check_group_map(group_map: np.ndarray, groups: int) -> None:
    out_of_range = int(np.count_nonzero((group_map < 0) | (group_map >= groups)))
    max_id = int(group_map.max())
    problem = group_ids_error(out_of_range, max_id, groups)
    if problem:
        raise IslError(problem)


def fanout(
    x: np.ndarray,
    edges: np.ndarray,
    group_map: np.ndarray,
    groups: int,
    *,
    out: np.ndarray | None = None,
    dtype: Any = np.float32,
    stream: Any = None,
) -> np.ndarray:
    """[N*G, 2C+1, H, W]: for slice n and group g, (x[n]·m_g, 1 - m_g, edges[n] != 0).

    m_g is 0 on the pixels of group g (``group_map == g``) and 1 elsewhere. ``dtype`` float16
    rounds the float32 values once (what the CUDA kernel writes into an FP16 binding).
    """
    x = np.asarray(x, dtype=np.float32)
    edges = np.asarray(edges)
    group_map = np.asarray(group_map)
    _check_group_map(group_map, groups)
    n, c, h, w = x.shape
    batch = np.empty((n * groups, 2 * c + 1, h, w), dtype=np.float32)
    for slice_index in range(n):
        for g in range(groups):
            keep = (group_map != g).astype(np.float32)  # m_g: 1 = kept pixel, 0 = erased
            item = batch[slice_index * groups + g]
            item[:c] = x[slice_index] * keep
            item[c] = 1.0 - keep
            item[c + 1 :] = edges[slice_index] != 0
    if out is None:
        return batch.astype(dtype)
    out[...] = batch
    return out


def compose_diff(
    x: np.ndarray,
    xhat: np.ndarray,
    group_map: np.ndarray,
    groups: int,
    *,
    out_dd: np.ndarray | None = None,
    out_dif: np.ndarray | None = None,
    stream: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x_dd, x_dif) float32 [N, C, H, W]: x_dd takes each pixel from the pass that erased it."""
    x = np.asarray(x, dtype=np.float32)
    group_map = np.asarray(group_map)
    _check_group_map(group_map, groups)
    n, c, h, w = x.shape
    xhat = np.asarray(xhat, dtype=np.float32).reshape(n, groups, c, h, w)
    x_dd = np.zeros((n, c, h, w), dtype=np.float32)
    for g in range(groups):
        erased = group_map == g  # the pixels pass g reconstructed
        x_dd[:, :, erased] = xhat[:, g][:, :, erased]
    x_dif = np.abs(x - x_dd)
    if out_dd is not None:
        out_dd[...] = x_dd
        x_dd = out_dd
    if out_dif is not None:
        out_dif[...] = x_dif
        x_dif = out_dif
    return x_dd, x_dif


def heatmap(
    x_dif: np.ndarray,
    x: np.ndarray,
    threshold: float,
    box: int,
    gamma: float,
    *,
    out: np.ndarray | None = None,
    stream: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(heat float32 [N, H, W] in [0, 1], apds float32 [N]); the formula is in csrc/heatmap.h."""
    t = float(threshold)
    r = np.asarray(x_dif, dtype=np.float64).mean(axis=1)  # channel mean [N, H, W]
    u = np.where(r >= t, np.minimum((r - t) / (1.0 - t), 1.0), 0.0)  # fixed normalisation to [0, 1]

    radius = box // 2
    padded = np.pad(u, ((0, 0), (radius, radius), (radius, radius)))  # zero padding
    box_sum = sliding_window_view(padded, (box, box), axis=(1, 2)).sum(axis=(-2, -1))
    b = u + box_sum  # in [0, B]
    big_b = 1.0 + box * box

    if gamma > 0 and np.expm1(-gamma * big_b) != 0.0:
        # (exp(γb) - 1) / (exp(γB) - 1), multiplied through by exp(-γB) so nothing overflows.
        heat = np.exp(gamma * (b - big_b)) * np.expm1(-gamma * b) / np.expm1(-gamma * big_b)
    else:
        heat = b / big_b

    foreground = (np.asarray(x).max(axis=1) > 0).sum(axis=(1, 2))  # pixels with max_c x > 0
    total = heat.sum(axis=(1, 2))
    apds = np.divide(total, foreground, out=np.zeros_like(total), where=foreground > 0)

    heat32 = heat.astype(np.float32)
    if out is not None:
        out[...] = heat32
        heat32 = out
    return heat32, apds.astype(np.float32)


# ---- cavity: cranial cavity mask (csrc/cavity.h) -------------------------------------------------


def _bone_distances(bone: np.ndarray) -> np.ndarray:
    """Distance along the last axis from each pixel to the nearest earlier bone pixel (inf if none)."""
    n = bone.shape[-1]
    idx = np.broadcast_to(np.arange(n, dtype=np.float64), bone.shape)
    last = np.maximum.accumulate(np.where(bone, idx, -np.inf), axis=-1)  # index of the latest bone so far
    before = np.concatenate([np.full(bone.shape[:-1] + (1,), -np.inf), last[..., :-1]], axis=-1)
    return idx - before


def _first_ranked_component(inside: np.ndarray, enclosed: np.ndarray) -> np.ndarray:
    """bool [H, W]: the 4-connected component of ``inside`` with the most ``enclosed`` pixels, then
    the most pixels, then the first in raster order; all False when nothing is inside."""
    h, w = inside.shape
    is_inside, is_enclosed = inside.tolist(), enclosed.tolist()  # Python lists: fast scalar access
    label = [[-1] * w for _ in range(h)]
    best: tuple[int, int] | None = None  # (enclosed pixels, area) of the kept component
    kept = component = -1
    for y0 in range(h):
        for x0 in range(w):  # seeds in raster order: each component's first pixel
            if not is_inside[y0][x0] or label[y0][x0] >= 0:
                continue
            component += 1
            label[y0][x0] = component
            queue = deque([(y0, x0)])
            area = n_enclosed = 0
            while queue:  # breadth-first flood fill
                y, x = queue.popleft()
                area += 1
                n_enclosed += is_enclosed[y][x]
                for ny, nx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x)):
                    if 0 <= ny < h and 0 <= nx < w and is_inside[ny][nx] and label[ny][nx] < 0:
                        label[ny][nx] = component
                        queue.append((ny, nx))
            if best is None or (n_enclosed, area) > best:  # strictly better: ties keep the earlier
                best, kept = (n_enclosed, area), component
    return (np.array(label, dtype=np.int64).reshape(h, w) == kept) & (kept >= 0)


def cavity(
    x: np.ndarray,
    channel: int,
    bone: float,
    margin: int,
    sides: int = 4,
    largest: bool = False,
    *,
    out: np.ndarray | None = None,
    stream: Any = None,
) -> np.ndarray:
    """float32 [N, H, W]: 1 where the pixel is not bone, no bone lies within ``margin`` along its row
    or column and bone is reached in at least ``sides`` directions; with ``largest`` only the
    first-ranked 4-connected component per slice (csrc/cavity.h)."""
    is_bone = np.asarray(x)[:, channel] >= np.float32(bone)  # [N, H, W]
    left = _bone_distances(is_bone)
    right = _bone_distances(is_bone[..., ::-1])[..., ::-1]
    up = _bone_distances(np.swapaxes(is_bone, 1, 2)).swapaxes(1, 2)
    down = _bone_distances(np.swapaxes(is_bone, 1, 2)[..., ::-1])[..., ::-1].swapaxes(1, 2)
    nearest = np.minimum(np.minimum(left, right), np.minimum(up, down))
    reached = sum(np.isfinite(d).astype(np.int64) for d in (left, right, up, down))  # directions with bone
    inside = ~is_bone & (nearest > margin) & (reached >= sides)
    if largest:
        for i in range(inside.shape[0]):
            inside[i] = _first_ranked_component(inside[i], reached[i] == 4)
    mask = inside.astype(np.float32)
    if out is not None:
        out[...] = mask
        return out
    return mask
