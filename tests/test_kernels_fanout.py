"""fanout and compose_diff: native (C++/OpenMP) and CUDA kernels against their numpy twins.

Both kernels only move and mask float32 values (a product with 0/1, an absolute difference of two
float32 values), so every comparison here is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from isl_rt import kernels as K
from isl_rt.errors import IslError
from isl_rt.kernels import reference as R
from isl_rt.kernels.partition import Partition


def head_slices(n: int, c: int, s: int, seed: int = 0) -> np.ndarray:
    """Phantom-like windowed head slices in [0, 1]: air 0, a bright skull ring, textured brain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    out = np.zeros((n, c, s, s), dtype=np.float32)
    for i in range(n):
        cy, cx = s / 2 + rng.uniform(-1, 1), s / 2 + rng.uniform(-1, 1)
        rr = np.hypot((yy - cy) / (0.42 * s), (xx - cx) / (0.36 * s))
        skull = (rr > 0.88) & (rr <= 1.0)
        brain = rr <= 0.88
        for ch in range(c):
            img = np.where(skull, 0.95 - 0.1 * ch, 0.0) + np.where(brain, 0.45 + 0.05 * ch, 0.0)
            img = img + brain * rng.normal(0, 0.03, (s, s))
            out[i, ch] = np.clip(img, 0, 1)
    return out


def edges_of(x: np.ndarray, level: float = 0.2) -> np.ndarray:
    """A cheap 0/1 edge map (horizontal gradient above a level), uint8 like canny's output."""
    grad = np.abs(np.diff(x, axis=-1, append=x[..., -1:]))
    return (grad > level).astype(np.uint8)


def case(n: int, c: int, s: int, k: int, seed: int = 0, strided: int = 0):
    p = Partition.strided(k, strided) if strided else Partition.cells(k)
    x = head_slices(n, c, s, seed)
    return x, edges_of(x), p.group_map(s), p.groups


CASES = {
    "phantom_128_k4": (2, 3, 128, 4),
    "s_not_multiple_of_k": (2, 3, 13, 4),
    "k1": (2, 3, 16, 1),
    "c1": (3, 1, 20, 3),
    "one_pixel": (2, 2, 1, 1),
    "s_equals_k": (1, 3, 5, 5),
}


class TestFanout:
    # smoke
    def test_smoke(self):
        x, e, gm, g = case(1, 3, 16, 4)
        batch = K.fanout(x, e, gm, g)
        assert batch.shape == (16, 7, 16, 16) and batch.dtype == np.float32 and batch.flags.c_contiguous

    # exceptions
    @pytest.mark.parametrize(("change", "match"), [
        (lambda x, e, gm, g: (x[0], e, gm, g), "x must have 4 dimensions"),
        (lambda x, e, gm, g: (x, e[:, :1], gm, g), "edges must have the shape of x"),
        (lambda x, e, gm, g: (x, e, gm[:-1], g), "group_map must have the shape of one slice"),
        (lambda x, e, gm, g: (x, e, gm, g - 1), r"ids outside 0..14 for groups=15"),
        (lambda x, e, gm, g: (x, e, gm, g + 1), "largest id is 15"),
        (lambda x, e, gm, g: (x, e, np.where(gm == 3, -1, gm), g), "1 pixel|pixel\\(s\\) with ids outside"),
        (lambda x, e, gm, g: (x, e, gm, 0), "groups must be a positive integer"),
        (lambda x, e, gm, g: (x, e, gm, 2.0), "groups must be a positive integer"),
        (lambda x, e, gm, g: (x, e, gm.astype(np.float32), g), "group_map must be int32"),
        (lambda x, e, gm, g: (x[:, :, :0], e[:, :, :0], gm[:0], g), "at least one channel and one pixel"),
    ])
    def test_bad_inputs_raise_a_sentence(self, change, match):
        args = change(*case(2, 2, 12, 4))
        with pytest.raises(IslError, match=match):
            K.fanout(*args)

    def test_bad_inputs_raise_in_reference_mode_too(self, monkeypatch):
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        x, e, gm, g = case(1, 1, 8, 2)
        with pytest.raises(IslError, match="largest id is 3"):
            K.fanout(x, e, gm, g + 1)

    @pytest.mark.parametrize(("out", "match"), [
        (np.empty((16, 7, 12, 12), np.float32), "out must be a numpy array of shape"),
        (np.empty((32, 5, 12, 12), np.float64), "dtype float32"),
        (np.empty((32, 5, 12, 24), np.float32)[..., ::2], "C-contiguous"),
    ])
    def test_bad_out_is_refused(self, out, match):
        with pytest.raises(IslError, match=match):
            K.fanout(*case(2, 2, 12, 4), out=out)

    def test_float16_is_refused_on_the_cpu(self):
        with pytest.raises(IslError, match="float16 only into GPU buffers"):
            K.fanout(*case(1, 1, 8, 2), dtype=np.float16)
        with pytest.raises(IslError, match="float32 or float16"):
            K.fanout(*case(1, 1, 8, 2), dtype=np.float64)

    def test_mixing_host_and_device_arrays_is_refused(self):
        class FakeDeviceArray:
            __cuda_array_interface__ = {"shape": (8, 8), "typestr": "<i4", "data": (0, False), "version": 3}

        x, e, _, g = case(1, 1, 8, 2)
        with pytest.raises(IslError, match="mix of host"):
            K.fanout(x, e, FakeDeviceArray(), g)

    # shapes
    @pytest.mark.parametrize("name", list(CASES))
    def test_shape(self, name):
        n, c, s, k = CASES[name]
        assert K.fanout(*case(n, c, s, k)).shape == (n * k * k, 2 * c + 1, s, s)

    def test_no_slices(self):
        x, e, gm, g = case(0, 3, 16, 4)
        assert K.fanout(x, e, gm, g).shape == (0, 7, 16, 16)

    def test_no_slices_still_checks_the_group_map(self):
        x, e, gm, g = case(0, 3, 16, 4)
        with pytest.raises(IslError, match="largest id is 15"):
            K.fanout(x, e, gm, g + 2)

    # values
    @pytest.mark.parametrize("name", list(CASES))
    def test_matches_reference_exactly(self, name):
        args = case(*CASES[name])
        np.testing.assert_array_equal(K.fanout(*args), R.fanout(*args))

    @pytest.mark.parametrize(("n", "c", "s", "k"), [(2, 3, 13, 4), (1, 1, 9, 3)])
    def test_definition_by_hand(self, n, c, s, k):
        x, e, gm, g = case(n, c, s, k)
        e[0, 0, 0, :] = 255  # any non-zero byte is an edge
        batch = K.fanout(x, e, gm, g)
        for ni in range(n):
            for gi in range(g):
                item = batch[ni * g + gi]
                erased = gm == gi
                assert np.all(item[:c][:, erased] == 0)
                np.testing.assert_array_equal(item[:c][:, ~erased], x[ni][:, ~erased])
                np.testing.assert_array_equal(item[c], erased.astype(np.float32))
                np.testing.assert_array_equal(item[c + 1:], (e[ni] != 0).astype(np.float32))

    def test_strided_partition(self):
        args = case(2, 3, 30, 6, strided=2)
        batch = K.fanout(*args)
        assert batch.shape == (8, 7, 30, 30)
        np.testing.assert_array_equal(batch, R.fanout(*args))
        # each pass erases 9 of the 36 cells: a quarter of the pixels
        assert batch[0, 3].sum() == 900 / 4

    def test_non_contiguous_and_other_dtypes_are_accepted(self):
        x, e, gm, g = case(2, 3, 13, 4)
        x_wide = np.zeros((2, 3, 13, 26), np.float64)
        x_wide[..., ::2] = x
        e_bool = np.asfortranarray(e.astype(bool))
        gm64 = np.asfortranarray(gm.astype(np.int64))
        np.testing.assert_array_equal(K.fanout(x_wide[..., ::2], e_bool, gm64, g), R.fanout(x, e, gm, g))

    def test_constant_images(self):
        x = np.full((2, 2, 7, 7), 0.5, np.float32)
        e = np.ones_like(x, dtype=np.uint8)
        p = Partition.cells(2)
        batch = K.fanout(x, e, p.group_map(7), p.groups)
        np.testing.assert_array_equal(batch[:, :2].sum(axis=(1, 2, 3)) + batch[:, 2].sum(axis=(1, 2)), np.full(8, 49.0))
        assert np.all(batch[:, 3:] == 1)

    def test_writes_every_element_of_out_in_place(self):
        x, e, gm, g = case(2, 3, 13, 4)
        out = np.full((32, 7, 13, 13), np.nan, np.float32)
        result = K.fanout(x, e, gm, g, out=out)
        assert result is out
        np.testing.assert_array_equal(out, R.fanout(x, e, gm, g))

    def test_one_thread_gives_the_same_batch(self, threads_one):
        args = case(2, 3, 13, 4)
        np.testing.assert_array_equal(K.fanout(*args), R.fanout(*args))

    def test_reference_mode_dispatches_to_the_twin(self, monkeypatch):
        args = case(1, 3, 13, 4)
        native = K.fanout(*args)
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        np.testing.assert_array_equal(K.fanout(*args), native)


class TestComposeDiff:
    # smoke
    def test_smoke(self):
        x, _, gm, g = case(1, 3, 16, 4)
        x_dd, x_dif = K.compose_diff(x, np.repeat(x, g, axis=0), gm, g)
        assert x_dd.shape == x_dif.shape == (1, 3, 16, 16) and x_dd.dtype == x_dif.dtype == np.float32

    # exceptions
    @pytest.mark.parametrize(("change", "match"), [
        (lambda x, xh, gm, g: (x, xh[1:], gm, g), r"xhat must have the shape of \[N\*G, C, H, W\]"),
        (lambda x, xh, gm, g: (x, xh, gm.T[:-1], g), "group_map must have the shape"),
        (lambda x, xh, gm, g: (x, xh.reshape(2, 16, 2, 12, 12)[:, :8].reshape(16, 2, 12, 12), gm, 8),
         r"ids outside 0..7"),
        (lambda x, xh, gm, g: (x, np.concatenate([xh, xh]), gm, 2 * g), "largest id is 15"),
        (lambda x, xh, gm, g: (x[0], xh, gm, g), "x must have 4 dimensions"),
    ])
    def test_bad_inputs_raise_a_sentence(self, change, match):
        x, _, gm, g = case(2, 2, 12, 4)
        with pytest.raises(IslError, match=match):
            K.compose_diff(*change(x, np.repeat(x, g, axis=0), gm, g))

    def test_bad_out_is_refused(self):
        x, _, gm, g = case(1, 1, 8, 2)
        with pytest.raises(IslError, match="out_dif must be"):
            K.compose_diff(x, np.repeat(x, g, axis=0), gm, g, out_dif=np.empty((1, 1, 8, 8), np.float64))

    # shapes
    def test_no_slices(self):
        x, _, gm, g = case(0, 3, 16, 4)
        x_dd, x_dif = K.compose_diff(x, np.zeros((0, 3, 16, 16), np.float32), gm, g)
        assert x_dd.shape == x_dif.shape == (0, 3, 16, 16)

    # values
    @pytest.mark.parametrize("name", list(CASES))
    def test_composing_the_unmodified_image_gives_it_back_exactly(self, name):
        x, _, gm, g = case(*CASES[name])
        x_dd, x_dif = K.compose_diff(x, np.repeat(x, g, axis=0), gm, g)
        np.testing.assert_array_equal(x_dd, x)
        assert np.all(x_dif == 0)

    @pytest.mark.parametrize("name", list(CASES))
    def test_each_pixel_comes_from_the_pass_that_erased_it(self, name):
        n, c, s, k = CASES[name]
        x, _, gm, g = case(n, c, s, k)
        # pass g of slice i reconstructs everything as the constant 100*i + g + 1
        xhat = np.empty((n * g, c, s, s), np.float32)
        for i in range(n):
            for gi in range(g):
                xhat[i * g + gi] = 100 * i + gi + 1
        x_dd, x_dif = K.compose_diff(x, xhat, gm, g)
        expected = (100 * np.arange(n)[:, None, None, None] + gm[None, None] + 1).astype(np.float32)
        np.testing.assert_array_equal(x_dd, np.broadcast_to(expected, x.shape))
        np.testing.assert_array_equal(x_dif, np.abs(x - x_dd))

    @pytest.mark.parametrize("name", list(CASES))
    def test_matches_reference_exactly(self, name):
        n, c, s, k = CASES[name]
        x, _, gm, g = case(n, c, s, k)
        xhat = np.random.default_rng(1).normal(0.5, 0.3, (n * g, c, s, s)).astype(np.float32)
        for got, want in zip(K.compose_diff(x, xhat, gm, g), R.compose_diff(x, xhat, gm, g)):
            np.testing.assert_array_equal(got, want)

    def test_round_trip_through_fanout(self):
        # An "inpainter" that fills the hole with 0.25: x_dd is x with 0.25 nowhere (every pixel
        # was erased once), so x_dd == 0.25 everywhere and x_dif == |x - 0.25|.
        x, e, gm, g = case(2, 3, 13, 4)
        batch = K.fanout(x, e, gm, g)
        xhat = batch[:, :3] + 0.25 * batch[:, 3:4]
        x_dd, x_dif = K.compose_diff(x, xhat, gm, g)
        assert np.all(x_dd == 0.25)
        np.testing.assert_array_equal(x_dif, np.abs(x - np.float32(0.25)))

    def test_non_contiguous_inputs_and_out_buffers(self):
        x, _, gm, g = case(2, 3, 13, 4)
        xhat = np.random.default_rng(2).random((2 * g, 3, 13, 13)).astype(np.float32)
        out_dd = np.full(x.shape, np.nan, np.float32)
        out_dif = np.full(x.shape, np.nan, np.float32)
        x_dd, x_dif = K.compose_diff(np.asfortranarray(x), xhat[:, :, ::-1][:, :, ::-1], gm, g,
                                     out_dd=out_dd, out_dif=out_dif)
        assert x_dd is out_dd and x_dif is out_dif
        want = R.compose_diff(x, xhat, gm, g)
        np.testing.assert_array_equal(x_dd, want[0])
        np.testing.assert_array_equal(x_dif, want[1])

    def test_one_thread_gives_the_same_result(self, threads_one):
        x, _, gm, g = case(2, 3, 13, 4)
        xhat = np.random.default_rng(3).random((2 * g, 3, 13, 13)).astype(np.float32)
        for got, want in zip(K.compose_diff(x, xhat, gm, g), R.compose_diff(x, xhat, gm, g)):
            np.testing.assert_array_equal(got, want)


# ---- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.gpu
class TestFanoutCuda:
    @pytest.mark.parametrize("name", list(CASES))
    def test_float32_matches_reference_exactly(self, cp, name):
        x, e, gm, g = case(*CASES[name])
        got = K.fanout(cp.asarray(x), cp.asarray(e), cp.asarray(gm), g)
        assert isinstance(got, cp.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(cp.asnumpy(got), R.fanout(x, e, gm, g))

    def test_float16_into_a_caller_buffer_on_a_stream(self, cp):
        x, e, gm, g = case(2, 3, 13, 4)
        out = cp.full((2 * g, 7, 13, 13), cp.nan, dtype=cp.float16)
        stream = cp.cuda.Stream(non_blocking=True)
        got = K.fanout(cp.asarray(x), cp.asarray(e), cp.asarray(gm), g, out=out, dtype=np.float16, stream=stream)
        stream.synchronize()
        assert got is out
        np.testing.assert_array_equal(cp.asnumpy(out), R.fanout(x, e, gm, g, dtype=np.float16))

    def test_no_slices(self, cp):
        x, e, gm, g = case(0, 3, 16, 4)
        assert K.fanout(cp.asarray(x), cp.asarray(e), cp.asarray(gm), g).shape == (0, 7, 16, 16)

    def test_non_contiguous_device_input_is_refused(self, cp):
        x, e, gm, g = case(1, 3, 16, 4)
        with pytest.raises(IslError, match="C-contiguous"):
            K.fanout(cp.asarray(x)[..., ::-1], cp.asarray(e), cp.asarray(gm), g)

    def test_wrong_out_dtype_is_refused(self, cp):
        x, e, gm, g = case(1, 3, 16, 4)
        with pytest.raises(IslError, match="out must be float16"):
            K.fanout(cp.asarray(x), cp.asarray(e), cp.asarray(gm), g, out=cp.empty((16, 7, 16, 16), cp.float32),
                     dtype=np.float16)

    @pytest.mark.parametrize("name", list(CASES))
    def test_compose_diff_matches_reference_exactly(self, cp, name):
        n, c, s, k = CASES[name]
        x, _, gm, g = case(n, c, s, k)
        xhat = np.random.default_rng(1).normal(0.5, 0.3, (n * g, c, s, s)).astype(np.float32)
        got = K.compose_diff(cp.asarray(x), cp.asarray(xhat), cp.asarray(gm), g)
        for dev, want in zip(got, R.compose_diff(x, xhat, gm, g)):
            np.testing.assert_array_equal(cp.asnumpy(dev), want)

    def test_compose_diff_reads_a_float16_engine_output(self, cp):
        x, _, gm, g = case(2, 3, 13, 4)
        xhat16 = np.random.default_rng(2).random((2 * g, 3, 13, 13)).astype(np.float16)
        got = K.compose_diff(cp.asarray(x), cp.asarray(xhat16), cp.asarray(gm), g)
        for dev, want in zip(got, R.compose_diff(x, xhat16.astype(np.float32), gm, g)):
            np.testing.assert_array_equal(cp.asnumpy(dev), want)

    def test_compose_diff_marks_out_of_range_ids_with_nan(self, cp):
        x, _, gm, g = case(1, 1, 8, 2)
        bad = gm.copy()
        bad[0, 0] = 7
        x_dd, x_dif = K.compose_diff(cp.asarray(x), cp.asarray(np.repeat(x, g, axis=0)), cp.asarray(bad), g)
        x_dd = cp.asnumpy(x_dd)
        assert np.isnan(x_dd[0, 0, 0, 0]) and np.isnan(cp.asnumpy(x_dif)[0, 0, 0, 0])
        np.testing.assert_array_equal(x_dd.ravel()[1:], x.ravel()[1:])
