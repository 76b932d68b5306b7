"""Numpy twins of the native kernels: the same signatures, written for reading, not speed.

Each function here is the definition the native (C++/OpenMP) and CUDA kernels are tested
against. They accept host arrays only; ``stream`` is accepted for signature parity and ignored.
Float math that accumulates is done in float64; element-wise float32 results (a product with a
0/1 mask, an absolute difference of two float32 values) are exact in float32 already.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from isl_rt.errors import IslError
from isl_rt.kernels.partition import group_ids_error

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
