"""One schematic head slice in HU, for kernel tests and benchmarks that need no full study."""

from __future__ import annotations

import numpy as np


def simple_head_slice(h: int = 512, w: int | None = None, seed: int = 0, noise_hu: float = 4.0) -> np.ndarray:
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
