"""cavity: native (C++/OpenMP) and CUDA cranial cavity masks against the numpy twin and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from isl_rt import kernels as K
from isl_rt.errors import IslError
from isl_rt.kernels import reference as R

BONE = 0.5  # threshold in window units for the synthetic cases


def ring_case(n: int, c: int, h: int, w: int, seed: int = 0, gap: bool = False) -> np.ndarray:
    """x [N,C,H,W] with an elliptical bone ring (value 1) around soft tissue (0.3) in channel c-1,
    random bright specks outside, and optionally a gap cut through the ring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.zeros((n, c, h, w), np.float32)
    for i in range(n):
        cy, cx = h / 2 + rng.uniform(-1, 1), w / 2 + rng.uniform(-1, 1)
        r = np.hypot((yy - cy) / max(0.4 * h, 0.5), (xx - cx) / max(0.35 * w, 0.5))
        plane = np.where(r < 1.0, 0.3, 0.0) + np.where((r >= 0.8) & (r < 1.0), 0.7, 0.0)
        plane += (rng.random((h, w)) < 0.01) * 0.9  # specks, some of them "bone"
        if gap:
            plane[: h // 2, int(cx)] = np.minimum(plane[: h // 2, int(cx)], 0.3)
        x[i, -1] = plane
        x[i, :-1] = rng.random((c - 1, h, w))
    return x


SHAPES = {"phantom_128": (2, 3, 128, 128), "odd": (3, 2, 13, 21), "c1": (2, 1, 20, 20), "one_pixel": (2, 1, 1, 1), "empty": (0, 3, 8, 8)}


class TestCavity:
    def test_ring_interior_is_inside(self):
        x = ring_case(1, 3, 64, 64)
        mask = K.cavity(x, 2, BONE, 0)
        assert mask.shape == (1, 64, 64) and mask.dtype == np.float32
        assert mask[0, 32, 32] == 1.0  # centre of the ring
        assert mask[0, 0, 0] == 0.0 and mask[0, 32, 0] == 0.0  # air outside
        assert np.all(mask[0][x[0, 2] >= BONE] == 0.0)  # bone itself is never inside

    def test_hand_computed_line_and_margin(self):
        plane = np.array([[0, 1, 0, 0, 0, 0, 1, 0]], np.float32)
        x = np.repeat(plane[None, None], 1, axis=0)  # [1,1,1,8]: a single row, no column bone
        assert K.cavity(x, 0, BONE, 0).sum() == 0  # nothing above or below: not enclosed
        square = np.zeros((1, 1, 7, 7), np.float32)
        square[0, 0, 0, :] = square[0, 0, -1, :] = square[0, 0, :, 0] = square[0, 0, :, -1] = 1
        inside = K.cavity(square, 0, BONE, 0)[0]
        np.testing.assert_array_equal(inside, np.pad(np.ones((5, 5)), 1))
        np.testing.assert_array_equal(K.cavity(square, 0, BONE, 1)[0], np.pad(np.ones((3, 3)), 2))
        np.testing.assert_array_equal(K.cavity(square, 0, BONE, 2)[0], np.pad(np.ones((1, 1)), 3))
        assert K.cavity(square, 0, BONE, 3).sum() == 0

    def test_a_gap_in_the_skull_does_not_leak(self):
        x = ring_case(1, 1, 64, 64, gap=True)
        mask = K.cavity(x, 0, BONE, 0)[0]
        assert mask[32, 32] == 1.0
        assert mask[:5].sum() == 0  # the gap's column is open upwards but the air above stays out

    @pytest.mark.parametrize("margin", [0, 1, 3])
    @pytest.mark.parametrize("name", list(SHAPES))
    def test_native_matches_reference(self, name, margin):
        x = ring_case(*SHAPES[name], seed=margin) if SHAPES[name][0] else np.zeros(SHAPES[name], np.float32)
        channel = SHAPES[name][1] - 1
        np.testing.assert_array_equal(K.cavity(x, channel, BONE, margin), R.cavity(x, channel, BONE, margin))

    def test_reference_mode_and_out(self, monkeypatch):
        x = ring_case(2, 3, 32, 32)
        out = np.full((2, 32, 32), 7.0, np.float32)
        assert K.cavity(x, 2, BONE, 1, out=out) is out
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        np.testing.assert_array_equal(K.cavity(x, 2, BONE, 1), out)

    def test_non_contiguous_and_float64_input(self):
        x = ring_case(2, 3, 40, 40)
        wide = np.zeros((2, 3, 40, 80), np.float32)
        wide[..., ::2] = x
        np.testing.assert_array_equal(K.cavity(wide[..., ::2], 2, BONE, 0), R.cavity(x, 2, BONE, 0))
        np.testing.assert_array_equal(K.cavity(x.astype(np.float64), 2, BONE, 0), R.cavity(x, 2, BONE, 0))

    @pytest.mark.parametrize(("args", "match"), [
        ((3, BONE, 0), r"bone channel must be an integer in 0\.\.2"),
        ((-1, BONE, 0), "bone channel"),
        ((1.0, BONE, 0), "bone channel"),
        ((2, float("nan"), 0), "bone must be a finite number"),
        ((2, BONE, -1), "margin must be an integer"),
        ((2, BONE, 1.5), "margin must be an integer"),
    ])
    def test_bad_parameters(self, args, match):
        with pytest.raises(IslError, match=match):
            K.cavity(ring_case(1, 3, 8, 8), *args)

    def test_bad_shapes(self):
        with pytest.raises(IslError, match="4 dimensions"):
            K.cavity(np.zeros((3, 8, 8), np.float32), 0, BONE, 0)
        with pytest.raises(IslError, match="shape"):
            K.cavity(np.zeros((1, 1, 8, 8), np.float32), 0, BONE, 0, out=np.zeros((1, 8, 9), np.float32))


@pytest.mark.gpu
class TestCavityCuda:
    @pytest.mark.parametrize("margin", [0, 2])
    @pytest.mark.parametrize("name", [k for k in SHAPES if SHAPES[k][0]])
    def test_matches_reference(self, cupy, name, margin):
        x = ring_case(*SHAPES[name], seed=margin)
        channel = SHAPES[name][1] - 1
        mask = K.cavity(cupy.asarray(x), channel, BONE, margin)
        assert isinstance(mask, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(mask), R.cavity(x, channel, BONE, margin))
