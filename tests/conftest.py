"""Shared fixtures: the ONE table of float tolerances for kernels against their numpy twins, and
a synthetic head CT slice for kernel tests.

Usage: ``np.testing.assert_allclose(native, ref, **kernel_tol["window"])``. Integer and mask
outputs that are exact by construction are compared with ``np.array_equal`` and have no row
here. Every row says why it is not tighter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

KERNEL_TOLERANCES: dict[str, dict[str, float]] = {
    # ---- window, gaussian_blur, canny (engineer A) ----------------------------------------------
    # Native window (float32) vs float64 reference: one float32 division per source pixel and a
    # float32 sum of <= taps_y * taps_x weighted terms in [0, 1]; measured <= 1.8e-7 (S from 1
    # to 700 on 512x512 slices, H != W included).
    "window": {"rtol": 0.0, "atol": 1e-6},
    # uint8 window output vs the reference: the float32 sum can land on the other side of a .5
    # than the float64 one when the exact value is within ~1e-6 of a tie; measured on <= 2e-5 of
    # the pixels (shrink/enlarge), 0 for identity and for ties of exact windows such as 40/80.
    # Tests also bound the fraction of differing pixels (window_u8_mismatch).
    "window_u8": {"rtol": 0.0, "atol": 1.0},
    "window_u8_mismatch": {"max_fraction": 1e-3},
    # Native blur vs float64 reference: float32 taps (relative rounding 6e-8 each) and a float32
    # sum of 2*radius+1 terms; measured relative error <= 8.7e-7 up to sigma = 16.
    "gaussian_blur": {"rtol": 2e-6, "atol": 1e-6},
    # Native blur vs cv2.GaussianBlur(BORDER_REFLECT_101) on 0..255 data: cv2 builds its own float
    # taps and sums in another order; measured <= 9.2e-5 absolute (0.5 <= sigma <= 16).
    "gaussian_blur_cv2": {"rtol": 0.0, "atol": 2e-4},
    # Canny on float input vs the float64 reference: the float32 Sobel/magnitude rounding flips a
    # few NMS ties and threshold comparisons of nearly equal magnitudes (measured agreement
    # >= 0.99985 with blur, exact on most slices). uint8 input is compared exactly.
    "canny_float_agreement": {"min_fraction": 0.999},
    # Blurred canny vs skimage.feature.canny (same sigma and thresholds): skimage interpolates the
    # magnitude between neighbours in its non-maximum suppression instead of OpenCV's 4 sectors,
    # and blurs with a zero border; measured edge F1 0.91-0.95 (0.934 even with the same blur).
    "canny_vs_skimage": {"min_f1": 0.9},
    # ---- fanout, compose_diff, heatmap (engineer B) ---------------------------------------------
}


@pytest.fixture
def kernel_tol() -> dict[str, dict[str, float]]:
    """rtol/atol (or fractions) per kernel output, for ``np.testing.assert_allclose(..., **row)``."""
    return KERNEL_TOLERANCES


def make_head_slice(h: int = 512, w: int | None = None, seed: int = 0, noise_hu: float = 4.0) -> np.ndarray:
    """A synthetic axial head CT slice in HU (int16 [h, w]): air, an elliptical skull ring, brain
    with a grey/white texture, two ventricles, a small hyperdense bleed and Gaussian noise."""
    w = h if w is None else w
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = h / 2 + rng.uniform(-0.01, 0.01) * h, w / 2 + rng.uniform(-0.01, 0.01) * w
    r = np.hypot((yy - cy) / (0.42 * h), (xx - cx) / (0.36 * w))
    hu = np.full((h, w), -1000.0)
    hu[r < 1.0] = 1200.0
    brain = r < 0.92
    hu[brain] = 35.0 + 6.0 * (np.sin(xx / 9.0) * np.cos(yy / 13.0))[brain]
    for side in (-1, 1):
        rv = np.hypot((yy - cy + 0.05 * h) / (0.12 * h), (xx - cx - side * 0.06 * w) / (0.035 * w))
        hu[rv < 1.0] = 8.0
    hu[np.hypot(yy - cy - 0.15 * h, xx - cx + 0.12 * w) < 0.05 * min(h, w)] = 70.0
    hu += rng.normal(0.0, noise_hu, size=(h, w))
    return np.clip(np.round(hu), -32768, 32767).astype(np.int16)


@pytest.fixture
def head_slice() -> Callable[..., np.ndarray]:
    """``head_slice(h, w=None, seed=0, noise_hu=4.0)`` -> int16 [h, w] synthetic head slice in HU."""
    return make_head_slice


def edge_f1(edges: np.ndarray, truth: np.ndarray) -> float:
    """F1 of the edge pixels of ``edges`` against ``truth`` (both nonzero = edge); 1.0 if both empty."""
    a, b = np.asarray(edges) != 0, np.asarray(truth) != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.fixture
def f1_score() -> Callable[[np.ndarray, np.ndarray], float]:
    """``f1_score(edges, truth)``: edge-pixel F1 (see :func:`edge_f1`)."""
    return edge_f1
