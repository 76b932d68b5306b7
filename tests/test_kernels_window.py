"""window: fused CT windowing + resampling, native (and CUDA) against the numpy twin."""

from __future__ import annotations

import numpy as np
import pytest

from isl_rt import extensions, kernels
from isl_rt.errors import IslError
from isl_rt.kernels import reference

CLINICAL = [(40.0, 80.0), (75.0, 215.0), (600.0, 2800.0)]  # brain, subdural, bone


def _assert_u8_close(native: np.ndarray, ref: np.ndarray, kernel_tol: dict, *, bound_fraction: bool = True) -> None:
    diff = np.abs(native.astype(np.int16) - ref.astype(np.int16))
    assert diff.max(initial=0) <= kernel_tol["window_u8"]["atol"]
    if bound_fraction:
        assert np.count_nonzero(diff) <= kernel_tol["window_u8_mismatch"]["max_fraction"] * max(diff.size, 1)


class TestWindowSmoke:
    def test_float_output_in_unit_range(self, head_slice):
        hu = head_slice(64)[None]
        x = kernels.window(hu, CLINICAL, 32)
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert x.max() > 0.5  # the skull saturates every window

    def test_uint8_output(self, head_slice):
        x = kernels.window(head_slice(64)[None], CLINICAL, 48, dtype=np.uint8)
        assert x.shape == (1, 3, 48, 48) and x.dtype == np.uint8 and x.max() == 255

    def test_out_is_filled_and_returned(self, head_slice):
        hu = head_slice(40)[None]
        out = np.full((1, 3, 20, 20), -1.0, dtype=np.float32)
        result = kernels.window(hu, CLINICAL, 20, out=out)
        assert result is out
        np.testing.assert_array_equal(out, kernels.window(hu, CLINICAL, 20))

    def test_windows_as_array_and_single_pair(self, head_slice):
        hu = head_slice(32)[None]
        a = kernels.window(hu, np.array([[40.0, 80.0]]), 16)
        b = kernels.window(hu, (40, 80), 16)
        np.testing.assert_array_equal(a, b)


class TestWindowExceptions:
    @pytest.mark.parametrize(
        ("hu", "match"),
        [
            (np.zeros((4, 4), np.int16), r"\[N, H, W\]"),
            (np.zeros((1, 0, 4), np.int16), "at least 1x1"),
            (np.zeros((1, 4, 4), np.float32), "integer Hounsfield"),
            (np.full((1, 2, 2), 40000, np.int32), "fit in int16"),
        ],
    )
    def test_bad_hu(self, hu, match):
        with pytest.raises(IslError, match=match):
            kernels.window(hu, CLINICAL, 8)

    @pytest.mark.parametrize(
        ("windows", "match"),
        [
            ([(40, 0)], "width 0"),
            ([(40, -80)], "width -80"),
            ([(40, 80, 1)], "pairs"),
            ([], "pairs"),
            ([(40, 80)] * 17, "1 to 16"),
            ([(np.nan, 80)], "finite"),
            ("brain", "pairs"),
        ],
    )
    def test_bad_windows(self, windows, match):
        with pytest.raises(IslError, match=match):
            kernels.window(np.zeros((1, 4, 4), np.int16), windows, 8)

    @pytest.mark.parametrize("size", [0, -3, 2.5, True, "8"])
    def test_bad_size(self, size):
        with pytest.raises(IslError, match="size must be a positive integer"):
            kernels.window(np.zeros((1, 4, 4), np.int16), CLINICAL, size)

    def test_bad_dtype(self):
        with pytest.raises(IslError, match="float32 or uint8"):
            kernels.window(np.zeros((1, 4, 4), np.int16), CLINICAL, 8, dtype=np.float64)

    @pytest.mark.parametrize(
        "out",
        [np.zeros((1, 3, 8, 7), np.float32), np.zeros((1, 3, 8, 8), np.float64), np.zeros((1, 3, 8, 16), np.float32)[..., ::2]],
    )
    def test_bad_out(self, out):
        with pytest.raises(IslError, match="out must be"):
            kernels.window(np.zeros((1, 4, 4), np.int16), CLINICAL, 8, out=out)

    def test_native_binding_validates_too(self):
        native = extensions.native()
        with pytest.raises(ValueError, match="width > 0"):
            native.window(np.zeros((1, 4, 4), np.int16), np.array([[40.0, 0.0]]), 8, np.zeros((1, 1, 8, 8), np.float32))
        with pytest.raises(ValueError, match="out must have shape"):
            native.window(np.zeros((1, 4, 4), np.int16), np.array([[40.0, 80.0]]), 8, np.zeros((1, 1, 8, 4), np.float32))
        with pytest.raises(TypeError):  # strict dtypes: no silent conversion in the binding
            native.window(np.zeros((1, 4, 4), np.int32), np.array([[40.0, 80.0]]), 8, np.zeros((1, 1, 8, 8), np.float32))


class TestWindowShapes:
    def test_empty_batch(self):
        x = kernels.window(np.zeros((0, 16, 16), np.int16), CLINICAL, 8)
        assert x.shape == (0, 3, 8, 8)

    def test_one_channel(self, head_slice):
        x = kernels.window(head_slice(32)[None], [(40, 80)], 16)
        assert x.shape == (1, 1, 16, 16)

    @pytest.mark.parametrize(("h", "w", "s"), [(1, 1, 1), (1, 1, 5), (7, 3, 4), (3, 7, 5), (300, 520, 256), (13, 17, 1)])
    def test_any_source_and_output_size(self, head_slice, h, w, s):
        hu = np.stack([head_slice(h, w, seed=1), head_slice(h, w, seed=2)])
        assert kernels.window(hu, CLINICAL, s).shape == (2, 3, s, s)

    def test_widening_int_types_are_accepted(self, head_slice):
        hu = head_slice(16)[None]
        np.testing.assert_array_equal(kernels.window(hu.astype(np.int32), CLINICAL, 8), kernels.window(hu, CLINICAL, 8))


class TestWindowValues:
    @pytest.mark.parametrize("size", [512, 256, 128, 100, 700, 3, 1], ids=lambda s: f"S{s}")
    def test_phantom_slices_match_reference(self, head_slice, kernel_tol, size):
        hu = np.stack([head_slice(512, seed=s) for s in range(2)])
        np.testing.assert_allclose(kernels.window(hu, CLINICAL, size), reference.window(hu, CLINICAL, size), **kernel_tol["window"])
        native_u8 = kernels.window(hu, CLINICAL, size, dtype=np.uint8)
        _assert_u8_close(native_u8, reference.window(hu, CLINICAL, size, dtype=np.uint8), kernel_tol)

    @pytest.mark.parametrize(("h", "w", "s"), [(300, 520, 256), (300, 520, 400), (300, 520, 600), (97, 61, 80)])
    def test_mixed_axes_shrink_one_enlarge_other(self, head_slice, kernel_tol, h, w, s):
        hu = head_slice(h, w, seed=3)[None]
        np.testing.assert_allclose(kernels.window(hu, CLINICAL, s), reference.window(hu, CLINICAL, s), **kernel_tol["window"])

    def test_identity_is_the_window_value_exactly(self, head_slice):
        hu = head_slice(64)[None]
        x = kernels.window(hu, [(40, 80)], 64)
        expected = np.clip((hu.astype(np.float64) - 0.0) / 80.0, 0, 1).astype(np.float32)
        np.testing.assert_array_equal(x[:, 0], expected)
        np.testing.assert_array_equal(kernels.window(hu, [(40, 80)], 64, dtype=np.uint8)[:, 0],
                                      np.floor(np.clip(hu * 255.0 / 80.0, 0, 255) + 0.5).astype(np.uint8))

    def test_area_average_by_hand(self):
        # 3 -> 2 pixels: weights [2/3, 1/3, 0] and [0, 1/3, 2/3]; window 0/2 maps HU -1, 0, 1 to 0, 0.5, 1.
        hu = np.array([[[-1, 0, 1]] * 3], dtype=np.int16)  # 3x3, rows equal
        x = kernels.window(hu, [(0, 2)], 2)
        np.testing.assert_allclose(x[0, 0], [[1 / 6, 5 / 6], [1 / 6, 5 / 6]], atol=1e-7)

    def test_bilinear_by_hand(self):
        # 2 -> 4 pixels with half-pixel centres: source coordinates -0.25, 0.25, 0.75, 1.25, clamped.
        hu = np.array([[[0, 10], [0, 10]]], dtype=np.int16)
        x = kernels.window(hu, [(5, 10)], 4)
        np.testing.assert_allclose(x[0, 0], np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-7)

    def test_window_clips_before_resampling(self):
        # One bone pixel (HU 1000) among brain pixels: averaged after clipping it to 1, not before.
        hu = np.array([[[1000, 40], [40, 40]]], dtype=np.int16)
        x = kernels.window(hu, [(40, 80)], 1)
        assert x[0, 0, 0, 0] == pytest.approx((1.0 + 3 * 0.5) / 4)

    def test_resample_matrices(self):
        np.testing.assert_allclose(reference.resample_matrix(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
        for n, s in [(512, 100), (7, 3), (3, 7), (1, 4), (5, 5)]:
            np.testing.assert_allclose(reference.resample_matrix(n, s).sum(axis=1), 1.0)

    def test_extreme_hu(self, kernel_tol):
        rng = np.random.default_rng(5)
        hu = rng.choice(np.array([-32768, 32767, -1000, 0, 40], dtype=np.int16), size=(2, 33, 47))
        wins = [(40, 80), (0, 65535), (-32768, 1), (32767, 0.5)]
        for s in (16, 33, 90):
            np.testing.assert_allclose(kernels.window(hu, wins, s), reference.window(hu, wins, s), **kernel_tol["window"])
            # These windows put whole regions exactly on a .5 tie (e.g. HU 0 in 0/65535 -> 127.5), where
            # the rounding of float32 vs float64 weights (sums of 1 +- 1e-7) decides: only +-1 holds.
            _assert_u8_close(kernels.window(hu, wins, s, dtype=np.uint8), reference.window(hu, wins, s, dtype=np.uint8),
                             kernel_tol, bound_fraction=False)

    def test_constant_image_stays_constant(self):
        hu = np.full((1, 37, 53), 60, np.int16)
        for s in (1, 16, 37, 100):
            x = kernels.window(hu, [(40, 80)], s)
            np.testing.assert_allclose(x, 0.75, atol=1e-6)
            assert (kernels.window(hu, [(40, 80)], s, dtype=np.uint8) == 191).all()  # 0.75*255 = 191.25

    def test_non_contiguous_input(self, head_slice):
        base = head_slice(128, seed=4)
        strided = np.stack([base, base[::-1]])[:, ::2, 1::2]
        transposed = np.stack([base]).transpose(0, 2, 1)
        for hu in (strided, transposed):
            assert not hu.flags.c_contiguous
            np.testing.assert_array_equal(kernels.window(hu, CLINICAL, 50), kernels.window(np.ascontiguousarray(hu), CLINICAL, 50))

    def test_reference_mode_dispatches_to_the_twin(self, head_slice, monkeypatch):
        hu = head_slice(48)[None]
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        out = np.empty((1, 3, 20, 20), np.float32)
        result = kernels.window(hu, CLINICAL, 20, out=out)
        assert result is out
        np.testing.assert_array_equal(out, reference.window(hu, CLINICAL, 20))

    def test_threads_do_not_change_the_result(self, head_slice):
        hu = np.stack([head_slice(96, seed=s) for s in range(3)])
        native = extensions.native()
        threads = native.build_info()["openmp_max_threads"]
        try:
            native.set_num_threads(1)
            one = kernels.window(hu, CLINICAL, 70)
        finally:
            native.set_num_threads(threads)
        np.testing.assert_array_equal(one, kernels.window(hu, CLINICAL, 70))


# ---- CUDA twin -----------------------------------------------------------------------------------


@pytest.mark.gpu
class TestWindowCuda:
    @pytest.mark.parametrize(("h", "w", "s"), [(512, 512, 256), (512, 512, 512), (300, 520, 400), (1, 1, 3), (97, 61, 80)])
    @pytest.mark.parametrize("dtype", [np.float32, np.uint8])
    def test_bitwise_equal_to_native(self, cupy, head_slice, h, w, s, dtype):
        hu = np.stack([head_slice(h, w, seed=k) for k in range(3)])
        got = kernels.window(cupy.asarray(hu), CLINICAL, s, dtype=dtype)
        cupy.cuda.get_current_stream().synchronize()
        np.testing.assert_array_equal(cupy.asnumpy(got), kernels.window(hu, CLINICAL, s, dtype=dtype))

    def test_out_and_stream(self, cupy, head_slice):
        hu = cupy.asarray(np.stack([head_slice(64, seed=1)]))
        out = cupy.empty((1, 3, 32, 32), dtype=cupy.float32)
        stream = cupy.cuda.Stream(non_blocking=True)
        assert kernels.window(hu, CLINICAL, 32, out=out, stream=stream) is out
        stream.synchronize()
        np.testing.assert_array_equal(cupy.asnumpy(out), kernels.window(cupy.asnumpy(hu), CLINICAL, 32))

    def test_empty_batch_and_errors(self, cupy):
        assert kernels.window(cupy.zeros((0, 8, 8), cupy.int16), CLINICAL, 4).shape == (0, 3, 4, 4)
        with pytest.raises(IslError, match="int16"):
            kernels.window(cupy.zeros((1, 8, 8), cupy.int32), CLINICAL, 4)
        with pytest.raises(IslError, match="C-contiguous"):
            kernels.window(cupy.zeros((1, 8, 16), cupy.int16)[:, :, ::2], CLINICAL, 4)
