"""heatmap: native (C++/OpenMP) and CUDA kernels against the numpy twin and against hand-computed maps."""

from __future__ import annotations

import numpy as np
import pytest

from isl_rt import kernels as K
from isl_rt.errors import IslError
from isl_rt.kernels import reference as R


def difference_case(n: int, c: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x_dif, x): phantom-like head slices x and difference images with reconstruction noise and
    one lesion-like blob per slice (values up to ~1, some above 1 to exercise the clamp)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rr = np.hypot((yy - h / 2) / (0.42 * h), (xx - w / 2) / (0.36 * w))
    head = (rr <= 1.0).astype(np.float32)
    x = np.clip(head * (0.5 + 0.05 * rng.standard_normal((n, c, h, w))), 0, 1).astype(np.float32)
    x_dif = np.abs(0.04 * rng.standard_normal((n, c, h, w))) * head
    for i in range(n):
        cy, cx, rad = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(1, max(1.5, h / 6))
        x_dif[i] += (np.hypot(yy - cy, xx - cx) < rad) * rng.uniform(0.95, 1.2, (c, h, w))
    return x_dif.astype(np.float32), x


PARAMS = [  # (threshold, box, gamma): gamma * (1 + box^2) up to 1000, the range kernel_tol covers
    (0.0, 1, 0.0),
    (0.1, 3, 1.0),
    (0.05, 5, 2.0),
    (0.2, 9, 5.0),
    (0.0, 15, 1.0),
    (0.3, 7, 20.0),
    (0.5, 3, 0.001),
]

SHAPES = {  # (N, C, H, W)
    "phantom_128": (2, 3, 128, 128),
    "odd_non_square": (3, 3, 13, 21),
    "c1": (2, 1, 20, 20),
    "one_pixel": (2, 3, 1, 1),
    "box_larger_than_image": (1, 2, 3, 4),
}


def one_pixel_blob(s: int, y: int, x: int, value: float = 1.0, c: int = 1) -> tuple[np.ndarray, np.ndarray]:
    x_dif = np.zeros((1, c, s, s), np.float32)
    x_dif[0, :, y, x] = value
    return x_dif, np.ones((1, c, s, s), np.float32)


class TestHeatmap:
    # smoke
    def test_smoke(self):
        x_dif, x = difference_case(2, 3, 32, 32)
        heat, apds = K.heatmap(x_dif, x, 0.1, 3, 1.0)
        assert heat.shape == (2, 32, 32) and heat.dtype == np.float32
        assert apds.shape == (2,) and apds.dtype == np.float32
        assert heat.min() >= 0 and heat.max() <= 1 and np.all(apds > 0)

    # exceptions
    @pytest.mark.parametrize(("threshold", "box", "gamma", "match"), [
        (-0.1, 3, 1.0, r"threshold must be in \[0, 1\)"),
        (1.0, 3, 1.0, r"threshold must be in \[0, 1\)"),
        (0.999999999, 3, 1.0, "too close to 1"),
        (float("nan"), 3, 1.0, r"threshold must be in \[0, 1\)"),
        ("high", 3, 1.0, "must be numbers"),
        (0.1, 4, 1.0, "box must be an odd integer"),
        (0.1, 0, 1.0, "box must be an odd integer"),
        (0.1, -3, 1.0, "box must be an odd integer"),
        (0.1, 3.0, 1.0, "box must be an odd integer"),
        (0.1, True, 1.0, "box must be an odd integer"),
        (0.1, 3, -1.0, "gamma must be finite and >= 0"),
        (0.1, 3, float("inf"), "gamma must be finite and >= 0"),
        (0.1, 3, float("nan"), "gamma must be finite and >= 0"),
    ])
    def test_bad_parameters_raise_a_sentence(self, threshold, box, gamma, match):
        x_dif, x = difference_case(1, 1, 8, 8)
        with pytest.raises(IslError, match=match):
            K.heatmap(x_dif, x, threshold, box, gamma)

    def test_bad_arrays_raise_a_sentence(self):
        x_dif, x = difference_case(2, 3, 8, 8)
        with pytest.raises(IslError, match="x must have the shape of x_dif"):
            K.heatmap(x_dif, x[:, :1], 0.1, 3, 1.0)
        with pytest.raises(IslError, match="x_dif must have 4 dimensions"):
            K.heatmap(x_dif[0], x[0], 0.1, 3, 1.0)
        with pytest.raises(IslError, match="out must be a numpy array of shape"):
            K.heatmap(x_dif, x, 0.1, 3, 1.0, out=np.empty((2, 3, 8, 8), np.float32))

    # shapes
    @pytest.mark.parametrize("name", list(SHAPES))
    def test_shapes(self, name):
        n, c, h, w = SHAPES[name]
        heat, apds = K.heatmap(*difference_case(n, c, h, w), 0.1, 3, 1.0)
        assert heat.shape == (n, h, w) and apds.shape == (n,)

    def test_no_slices(self):
        x = np.zeros((0, 3, 16, 16), np.float32)
        heat, apds = K.heatmap(x, x, 0.1, 3, 1.0)
        assert heat.shape == (0, 16, 16) and apds.shape == (0,)

    # values by hand
    def test_zeros_give_zero_heat_and_zero_apds(self):
        z = np.zeros((2, 3, 9, 9), np.float32)
        for t, box, gamma in PARAMS:
            heat, apds = K.heatmap(z, np.ones_like(z), t, box, gamma)
            assert np.all(heat == 0) and np.all(apds == 0)

    def test_empty_foreground_gives_apds_zero(self):
        x_dif, _ = one_pixel_blob(7, 3, 3)
        heat, apds = K.heatmap(x_dif, np.zeros_like(x_dif), 0.0, 3, 0.0)
        assert heat.max() > 0 and apds[0] == 0

    def test_single_bright_pixel_gives_the_box_sum_by_hand(self):
        x_dif, x = one_pixel_blob(7, 3, 3)
        heat, apds = K.heatmap(x_dif, x, 0.0, 3, 0.0)
        b = np.zeros((7, 7))
        b[2:5, 2:5] = 1.0  # box sum of the neighbours
        b[3, 3] = 2.0  # u + box sum at the pixel itself
        np.testing.assert_allclose(heat[0], b / 10.0, rtol=1e-7, atol=0)  # B = 1 + 3*3
        np.testing.assert_allclose(apds[0], (2 + 8) / 10 / 49, rtol=1e-7)

    def test_exponential_enhancement_by_hand(self):
        x_dif, x = one_pixel_blob(7, 3, 3)
        heat, _ = K.heatmap(x_dif, x, 0.0, 3, 2.0)
        assert heat[0, 3, 3] == pytest.approx(np.expm1(4.0) / np.expm1(20.0), rel=1e-6)
        assert heat[0, 2, 2] == pytest.approx(np.expm1(2.0) / np.expm1(20.0), rel=1e-6)
        assert heat[0, 0, 0] == 0

    def test_zero_padding_at_the_corner(self):
        x_dif, x = one_pixel_blob(7, 0, 0)
        heat, apds = K.heatmap(x_dif, x, 0.0, 3, 0.0)
        expected = np.zeros((7, 7))
        expected[:2, :2] = 0.1
        expected[0, 0] = 0.2
        np.testing.assert_allclose(heat[0], expected, rtol=1e-7, atol=0)  # nothing wraps to the far edges
        np.testing.assert_allclose(apds[0], 0.5 / 49, rtol=1e-7)

    def test_threshold_and_fixed_normalisation(self):
        # u = (0.6 - 0.2) / (1 - 0.2) = 0.5 at the pixel, whatever else the slice holds
        x_dif = np.zeros((2, 1, 9, 9), np.float32)
        x_dif[:, 0, 4, 4] = 0.6
        x_dif[1, 0, 0, 8] = 1.0  # a brighter spot far away must not rescale slice 1
        x_dif[:, 0, 8, 0] = 0.2  # exactly t: u = 0
        x_dif[:, 0, 8, 8] = 0.19  # below t: u = 0
        heat, _ = K.heatmap(x_dif, np.ones_like(x_dif), 0.2, 1, 0.0)
        assert heat[0, 4, 4] == pytest.approx(2 * 0.5 / 2, rel=1e-6)  # b = u + u (box 1), B = 2
        assert heat[1, 4, 4] == heat[0, 4, 4]
        assert heat[0, 8, 0] == 0 and heat[0, 8, 8] == 0

    def test_values_above_one_are_clamped(self):
        a, x = one_pixel_blob(5, 2, 2, 1.5)
        b, _ = one_pixel_blob(5, 2, 2, 1.0)
        np.testing.assert_array_equal(K.heatmap(a, x, 0.1, 3, 1.0)[0], K.heatmap(b, x, 0.1, 3, 1.0)[0])

    def test_channel_mean(self):
        x_dif = np.zeros((1, 3, 5, 5), np.float32)
        x_dif[0, :, 2, 2] = [0.3, 0.6, 0.9]
        heat, _ = K.heatmap(x_dif, np.ones_like(x_dif), 0.0, 1, 0.0)
        assert heat[0, 2, 2] == pytest.approx(0.6, rel=1e-6)

    def test_apds_counts_pixels_whose_channel_max_is_positive(self):
        x_dif, _ = one_pixel_blob(6, 2, 2, c=2)
        x = np.full((1, 2, 6, 6), -0.5, np.float32)
        x[0, 1, :, 0] = 0.25  # 6 foreground pixels, positive in one channel only
        x[0, 0, 0, 5] = 1e-30  # tiny but > 0 counts
        heat, apds = K.heatmap(x_dif, x, 0.0, 3, 0.0)
        np.testing.assert_allclose(apds[0], heat[0].astype(np.float64).sum() / 7, rtol=1e-6)

    def test_large_gamma_does_not_overflow(self):
        x_dif = np.ones((1, 1, 20, 20), np.float32)
        heat, apds = K.heatmap(x_dif, x_dif, 0.0, 15, 20.0)  # gamma * B = 4520: exp(gamma*B) overflows double
        assert np.all(np.isfinite(heat)) and heat.min() >= 0 and heat.max() <= 1
        assert heat[0, 10, 10] == 1.0  # b = B in the interior
        assert heat[0, 0, 0] == 0.0  # b = 1 + 64 at the corner: exp(-20 * 161) underflows to 0
        assert np.isfinite(apds[0]) and 0 < apds[0] < 1

    def test_box_larger_than_the_image(self):
        x_dif = np.ones((1, 1, 3, 3), np.float32)
        heat, _ = K.heatmap(x_dif, x_dif, 0.0, 9, 0.0)
        np.testing.assert_allclose(heat, np.full((1, 3, 3), 10 / 82), rtol=1e-6)  # b = 1 + 9, B = 1 + 81

    def test_one_pixel_image(self):
        heat, apds = K.heatmap(np.full((1, 1, 1, 1), 0.5, np.float32), np.ones((1, 1, 1, 1), np.float32), 0.0, 1, 0.0)
        assert heat[0, 0, 0] == pytest.approx(0.5, rel=1e-7) and apds[0] == pytest.approx(0.5, rel=1e-7)

    # values against the reference
    @pytest.mark.parametrize("params", PARAMS, ids=str)
    @pytest.mark.parametrize("name", list(SHAPES))
    def test_matches_reference(self, name, params, kernel_tol):
        x_dif, x = difference_case(*SHAPES[name], seed=list(SHAPES).index(name))
        heat, apds = K.heatmap(x_dif, x, *params)
        ref_heat, ref_apds = R.heatmap(x_dif, x, *params)
        np.testing.assert_allclose(heat, ref_heat, **kernel_tol["heatmap"])
        np.testing.assert_allclose(apds, ref_apds, **kernel_tol["apds"])

    def test_heat_spans_the_unit_interval_on_lesions(self, kernel_tol):
        # guards the reference comparison above against only ever comparing near-zero maps
        x_dif, x = difference_case(2, 3, 64, 64, seed=5)
        heat, _ = K.heatmap(x_dif, x, 0.05, 5, 2.0)
        assert heat.max() > 0.5 and heat.min() == 0

    def test_non_contiguous_inputs_and_out(self, kernel_tol):
        x_dif, x = difference_case(2, 3, 17, 17)
        wide = np.zeros((2, 3, 17, 34), np.float64)
        wide[..., 1::2] = x_dif
        out = np.full((2, 17, 17), np.nan, np.float32)
        heat, apds = K.heatmap(wide[..., 1::2], np.asfortranarray(x), 0.1, 5, 2.0, out=out)
        assert heat is out
        ref_heat, ref_apds = R.heatmap(x_dif, x, 0.1, 5, 2.0)
        np.testing.assert_allclose(heat, ref_heat, **kernel_tol["heatmap"])
        np.testing.assert_allclose(apds, ref_apds, **kernel_tol["apds"])

    def test_slice_parallel_and_row_parallel_paths_agree(self):
        # N >= 2 x threads runs one slice per thread; N = 1 splits each slice over rows.
        x_dif, x = difference_case(8, 3, 33, 31)
        heat, apds = K.heatmap(x_dif, x, 0.1, 5, 2.0)
        for i in range(8):
            one_heat, one_apds = K.heatmap(x_dif[i:i + 1], x[i:i + 1], 0.1, 5, 2.0)
            np.testing.assert_array_equal(heat[i], one_heat[0])
            np.testing.assert_allclose(apds[i], one_apds[0], rtol=1e-7)

    def test_one_thread_gives_the_same_maps(self, threads_one, kernel_tol):
        x_dif, x = difference_case(3, 3, 33, 31)
        heat, apds = K.heatmap(x_dif, x, 0.1, 5, 2.0)
        ref_heat, ref_apds = R.heatmap(x_dif, x, 0.1, 5, 2.0)
        np.testing.assert_allclose(heat, ref_heat, **kernel_tol["heatmap"])
        np.testing.assert_allclose(apds, ref_apds, **kernel_tol["apds"])

    def test_reference_mode_dispatches_to_the_twin(self, monkeypatch):
        x_dif, x = difference_case(1, 3, 16, 16)
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        heat, apds = K.heatmap(x_dif, x, 0.1, 3, 1.0)
        ref_heat, ref_apds = R.heatmap(x_dif, x, 0.1, 3, 1.0)
        np.testing.assert_array_equal(heat, ref_heat)
        np.testing.assert_array_equal(apds, ref_apds)


# ---- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.gpu
class TestHeatmapCuda:
    @pytest.mark.parametrize("params", PARAMS, ids=str)
    @pytest.mark.parametrize("name", list(SHAPES))
    def test_matches_reference(self, cp, name, params, kernel_tol):
        x_dif, x = difference_case(*SHAPES[name], seed=list(SHAPES).index(name))
        heat, apds = K.heatmap(cp.asarray(x_dif), cp.asarray(x), *params)
        assert isinstance(heat, cp.ndarray) and isinstance(apds, cp.ndarray)
        ref_heat, ref_apds = R.heatmap(x_dif, x, *params)
        np.testing.assert_allclose(cp.asnumpy(heat), ref_heat, **kernel_tol["heatmap_cuda"])
        np.testing.assert_allclose(cp.asnumpy(apds), ref_apds, **kernel_tol["apds_cuda"])

    def test_box_too_large_for_shared_memory_uses_the_direct_kernel(self, cp, kernel_tol):
        x_dif, x = difference_case(2, 3, 80, 70)
        heat, apds = K.heatmap(cp.asarray(x_dif), cp.asarray(x), 0.1, 65, 0.2)
        ref_heat, ref_apds = R.heatmap(x_dif, x, 0.1, 65, 0.2)
        np.testing.assert_allclose(cp.asnumpy(heat), ref_heat, **kernel_tol["heatmap_cuda"])
        np.testing.assert_allclose(cp.asnumpy(apds), ref_apds, **kernel_tol["apds_cuda"])

    def test_hand_computed_blob_and_zeros(self, cp):
        x_dif, x = one_pixel_blob(7, 3, 3)
        heat, apds = K.heatmap(cp.asarray(x_dif), cp.asarray(x), 0.0, 3, 0.0)
        b = np.zeros((7, 7))
        b[2:5, 2:5] = 1.0
        b[3, 3] = 2.0
        np.testing.assert_allclose(cp.asnumpy(heat)[0], b / 10.0, rtol=1e-6)
        np.testing.assert_allclose(cp.asnumpy(apds)[0], 1 / 49, rtol=1e-6)
        z = cp.zeros((2, 3, 9, 9), cp.float32)
        heat, apds = K.heatmap(z, cp.ones_like(z), 0.1, 3, 1.0)
        assert int(cp.count_nonzero(heat)) == 0 and int(cp.count_nonzero(apds)) == 0

    def test_into_out_on_a_stream_and_no_slices(self, cp, kernel_tol):
        x_dif, x = difference_case(3, 3, 40, 40)
        out = cp.full((3, 40, 40), cp.nan, cp.float32)
        stream = cp.cuda.Stream(non_blocking=True)
        heat, _ = K.heatmap(cp.asarray(x_dif), cp.asarray(x), 0.1, 5, 2.0, out=out, stream=stream)
        stream.synchronize()
        assert heat is out
        np.testing.assert_allclose(cp.asnumpy(out), R.heatmap(x_dif, x, 0.1, 5, 2.0)[0], **kernel_tol["heatmap_cuda"])
        empty = cp.zeros((0, 3, 8, 8), cp.float32)
        heat, apds = K.heatmap(empty, empty, 0.1, 3, 1.0)
        assert heat.shape == (0, 8, 8) and apds.shape == (0,)
