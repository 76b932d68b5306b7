"""gaussian_blur and canny: native (and CUDA) against the numpy twins, cv2 and skimage."""

from __future__ import annotations

import numpy as np
import pytest

from isl_rt import extensions, kernels
from isl_rt.errors import IslError
from isl_rt.kernels import reference

cv2 = pytest.importorskip("cv2")

THRESHOLDS_U8 = [(10, 30), (20, 60), (50, 100), (100, 200), (60, 60)]


def _u8_slices(head_slice, n: int = 3, size: int = 512, seed: int = 0) -> np.ndarray:
    """[n, 1, size, size] uint8 brain-window phantom slices, as the pipeline displays them."""
    hu = np.stack([head_slice(size, seed=seed + k) for k in range(n)])
    return kernels.window(hu, [(40, 80)], size, dtype=np.uint8)


def _float_slices(head_slice, n: int = 2, size: int = 256, seed: int = 0) -> np.ndarray:
    hu = np.stack([head_slice(2 * size, seed=seed + k) for k in range(n)])
    return kernels.window(hu, [(40, 80), (75, 215)], size)


def _cv2_canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.stack([[cv2.Canny(p, low, high, L2gradient=True) // 255 for p in planes] for planes in img])


# ---- gaussian_blur -------------------------------------------------------------------------------


class TestGaussianBlurSmoke:
    def test_shape_dtype_and_out(self, head_slice):
        x = _float_slices(head_slice, n=1, size=64)
        out = np.empty_like(x)
        assert kernels.gaussian_blur(x, 1.5, out=out) is out
        assert out.dtype == np.float32 and out.shape == x.shape
        assert out.std() < x.std()

    def test_uint8_input_is_blurred_as_float(self, head_slice):
        u = _u8_slices(head_slice, n=1, size=64)
        np.testing.assert_array_equal(kernels.gaussian_blur(u, 1.0), kernels.gaussian_blur(u.astype(np.float32), 1.0))


class TestGaussianBlurExceptions:
    @pytest.mark.parametrize("sigma", [0.0, -1.0, 16.5, float("nan"), float("inf"), "1"])
    def test_bad_sigma(self, sigma):
        with pytest.raises(IslError, match="sigma"):
            kernels.gaussian_blur(np.zeros((1, 1, 4, 4), np.float32), sigma)

    @pytest.mark.parametrize(
        ("img", "match"),
        [
            (np.zeros((4, 4), np.float32), r"\[N, C, H, W\]"),
            (np.zeros((1, 0, 4, 4), np.float32), "at least one channel"),
            (np.zeros((1, 1, 4, 4), np.int16), "float32"),
        ],
    )
    def test_bad_input(self, img, match):
        with pytest.raises(IslError, match=match):
            kernels.gaussian_blur(img, 1.0)

    def test_bad_out(self):
        with pytest.raises(IslError, match="out must be"):
            kernels.gaussian_blur(np.zeros((1, 1, 4, 4), np.float32), 1.0, out=np.zeros((1, 1, 4, 4), np.float64))


class TestGaussianBlurShapes:
    @pytest.mark.parametrize("shape", [(0, 2, 8, 8), (1, 1, 1, 1), (2, 3, 5, 1), (1, 1, 1, 9), (1, 2, 37, 53)])
    def test_shapes(self, shape):
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        assert kernels.gaussian_blur(x, 2.0).shape == shape


class TestGaussianBlurValues:
    @pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0, 16.0])
    def test_phantom_matches_reference(self, head_slice, kernel_tol, sigma):
        x = _float_slices(head_slice, n=1, size=128)
        np.testing.assert_allclose(kernels.gaussian_blur(x, sigma), reference._blur64(x, sigma), **kernel_tol["gaussian_blur"])

    @pytest.mark.parametrize("shape", [(1, 1, 3, 2), (1, 1, 1, 1), (2, 1, 5, 1), (1, 1, 2, 40)])
    def test_radius_larger_than_the_plane(self, kernel_tol, shape):
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        np.testing.assert_allclose(kernels.gaussian_blur(x, 4.0), reference._blur64(x, 4.0), **kernel_tol["gaussian_blur"])

    @pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 16.0])
    def test_matches_cv2_reflect101(self, head_slice, kernel_tol, sigma):
        x = _u8_slices(head_slice, n=1, size=128).astype(np.float32)
        r = int(np.ceil(4 * sigma))
        expected = cv2.GaussianBlur(x[0, 0], (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(kernels.gaussian_blur(x, sigma)[0, 0], expected, **kernel_tol["gaussian_blur_cv2"])

    def test_reflect101_by_hand(self):
        # Row [1, 0, 0] with radius 2: x=0 reads rows -2..2 -> 2 1 0 1 2, x=1 reads 1 0 1 2 1,
        # x=2 reads 0 1 2 1 0 (reflect-101); a 1-pixel column axis leaves the row unchanged.
        taps = reference.gaussian_taps(0.5)  # offsets -2..2
        assert len(taps) == 5
        x = np.array([[[[1.0, 0.0, 0.0]]]], dtype=np.float32)
        got = kernels.gaussian_blur(x, 0.5)[0, 0, 0]
        np.testing.assert_allclose(got, [taps[2], taps[1], taps[0] + taps[4]], rtol=1e-6)

    def test_constant_stays_constant(self, kernel_tol):
        x = np.full((1, 1, 9, 31), 0.25, np.float32)
        np.testing.assert_allclose(kernels.gaussian_blur(x, 3.0), 0.25, **kernel_tol["gaussian_blur"])

    def test_non_contiguous_input(self, head_slice):
        x = _float_slices(head_slice, n=1, size=64)
        view = x[:, ::-1, ::2, 1::2]
        np.testing.assert_array_equal(kernels.gaussian_blur(view, 1.2), kernels.gaussian_blur(np.ascontiguousarray(view), 1.2))


# ---- canny ---------------------------------------------------------------------------------------


class TestCannySmoke:
    def test_zero_one_uint8_output(self, head_slice):
        e = kernels.canny(_u8_slices(head_slice, n=1, size=64), 20, 60)
        assert e.dtype == np.uint8 and e.shape == (1, 1, 64, 64)
        assert set(np.unique(e)) == {0, 1}

    def test_out_is_filled_and_returned(self, head_slice):
        x = _float_slices(head_slice, n=1, size=32)
        out = np.full(x.shape, 7, np.uint8)
        assert kernels.canny(x, 0.1, 0.3, sigma=1.0, out=out) is out
        np.testing.assert_array_equal(out, kernels.canny(x, 0.1, 0.3, sigma=1.0))


class TestCannyExceptions:
    @pytest.mark.parametrize(
        ("low", "high", "match"),
        [(60, 20, "low <= high"), (-1, 20, "low <= high"), (float("nan"), 20, "finite"), (10, None, "finite"), (True, 3, "finite")],
    )
    def test_bad_thresholds(self, low, high, match):
        with pytest.raises(IslError, match=match):
            kernels.canny(np.zeros((1, 1, 8, 8), np.uint8), low, high)

    @pytest.mark.parametrize("sigma", [-0.5, 17.0, float("nan")])
    def test_bad_sigma(self, sigma):
        with pytest.raises(IslError, match="sigma"):
            kernels.canny(np.zeros((1, 1, 8, 8), np.uint8), 10, 20, sigma=sigma)

    @pytest.mark.parametrize(
        ("img", "match"),
        [
            (np.zeros((8, 8), np.uint8), r"\[N, C, H, W\]"),
            (np.zeros((1, 1, 0, 8), np.uint8), "at least one channel"),
            (np.zeros((1, 1, 8, 8), np.int16), "uint8 or float32"),
            (np.zeros((1, 1, 8, 8), bool), "uint8 or float32"),
        ],
    )
    def test_bad_input(self, img, match):
        with pytest.raises(IslError, match=match):
            kernels.canny(img, 10, 20)

    def test_bad_out(self):
        with pytest.raises(IslError, match="out must be"):
            kernels.canny(np.zeros((1, 1, 8, 8), np.uint8), 10, 20, out=np.zeros((1, 1, 8, 8), np.int32))

    def test_native_binding_validates_too(self):
        native = extensions.native()
        img, out = np.zeros((1, 1, 8, 8), np.uint8), np.zeros((1, 1, 8, 8), np.uint8)
        with pytest.raises(ValueError, match="low <= high"):
            native.canny(img, 30.0, 10.0, 0.0, out)
        with pytest.raises(ValueError, match="out must have shape"):
            native.canny(img, 10.0, 30.0, 0.0, np.zeros((1, 1, 8, 9), np.uint8))


class TestCannyShapes:
    @pytest.mark.parametrize("shape", [(0, 3, 16, 16), (1, 1, 1, 1), (1, 1, 2, 2), (2, 3, 37, 53), (1, 2, 1, 17), (1, 1, 19, 1)])
    @pytest.mark.parametrize("dtype", [np.uint8, np.float32])
    def test_shapes_match_reference(self, shape, dtype):
        rng = np.random.default_rng(sum(shape))
        img = rng.integers(0, 256, size=shape).astype(dtype)
        for low, high in [(20, 60), (100, 300)]:
            got = kernels.canny(img, low, high)
            assert got.shape == shape and got.dtype == np.uint8
            np.testing.assert_array_equal(got, reference.canny(img, low, high))
            if dtype == np.uint8 and shape[0] > 0:
                np.testing.assert_array_equal(got, _cv2_canny(img, low, high))


class TestCannyValues:
    @pytest.mark.parametrize(("low", "high"), THRESHOLDS_U8)
    def test_uint8_phantoms_equal_cv2(self, head_slice, f1_score, low, high):
        img = _u8_slices(head_slice)
        got, expected = kernels.canny(img, low, high), _cv2_canny(img, low, high)
        assert expected.sum() > 1000  # the phantom has edges at these thresholds
        assert f1_score(got, expected) >= 0.99
        np.testing.assert_array_equal(got, expected)  # in fact the same integer algorithm

    @pytest.mark.parametrize(("low", "high"), [(20, 60), (100, 200)])
    def test_uint8_phantoms_equal_reference(self, head_slice, low, high):
        img = _u8_slices(head_slice, n=2, size=256, seed=7)
        np.testing.assert_array_equal(kernels.canny(img, low, high), reference.canny(img, low, high))

    def test_noise_equals_cv2(self):
        rng = np.random.default_rng(3)
        img = rng.integers(0, 256, size=(4, 1, 61, 47), dtype=np.uint8)
        for low, high in [(0, 0), (50, 400), (300, 900), (1000, 1500)]:
            np.testing.assert_array_equal(kernels.canny(img, low, high), _cv2_canny(img, low, high))

    def test_float_holding_uint8_values_equals_uint8(self, head_slice):
        img = _u8_slices(head_slice, n=2, size=256)
        for low, high in [(20, 60), (50.5, 100.25)]:
            np.testing.assert_array_equal(kernels.canny(img.astype(np.float32), low, high), kernels.canny(img, low, high))

    @pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0])
    @pytest.mark.parametrize(("low", "high"), [(0.1, 0.3), (0.2, 0.5)])
    def test_float_phantoms_agree_with_reference(self, head_slice, kernel_tol, sigma, low, high):
        x = _float_slices(head_slice)
        got, ref = kernels.canny(x, low, high, sigma=sigma), reference.canny(x, low, high, sigma=sigma)
        assert ref.sum() > 1000
        assert np.mean(got == ref) >= kernel_tol["canny_float_agreement"]["min_fraction"]

    @pytest.mark.parametrize("sigma", [1.5, 3.0])
    @pytest.mark.parametrize(("low", "high"), [(0.1, 0.3), (0.2, 0.5)])
    def test_blurred_float_vs_skimage(self, head_slice, kernel_tol, f1_score, sigma, low, high):
        skimage_feature = pytest.importorskip("skimage.feature")
        hu = np.stack([head_slice(512, seed=k) for k in range(2)])
        x = kernels.window(hu, [(40, 80)], 512)
        got = kernels.canny(x, low, high, sigma=sigma)
        for n in range(2):
            sk = skimage_feature.canny(x[n, 0].astype(np.float64), sigma=sigma, low_threshold=low, high_threshold=high)
            assert f1_score(got[n, 0], sk) >= kernel_tol["canny_vs_skimage"]["min_f1"]

    def test_tie_keeps_the_left_or_upper_pixel_as_cv2(self):
        # A step between columns 2 and 3 gives equal magnitudes on both: cv2 keeps column 2.
        img = np.zeros((1, 1, 6, 6), np.uint8)
        img[..., 3:] = 200
        expected = np.zeros((6, 6), np.uint8)
        expected[:, 2] = 1
        np.testing.assert_array_equal(kernels.canny(img, 10, 50)[0, 0], expected)
        np.testing.assert_array_equal(kernels.canny(img.transpose(0, 1, 3, 2), 10, 50)[0, 0], expected.T)
        np.testing.assert_array_equal(_cv2_canny(img, 10, 50)[0, 0], expected)

    def test_border_pixels_can_be_edges_as_cv2(self):
        img = np.zeros((1, 1, 6, 6), np.uint8)
        img[..., 0] = 200  # step between columns 0 and 1: column 0 wins the tie
        got = kernels.canny(img, 10, 50)[0, 0]
        np.testing.assert_array_equal(got[:, 0], 1)
        np.testing.assert_array_equal(got, _cv2_canny(img, 10, 50)[0, 0])

    def test_hysteresis_follows_weak_chains_to_strong_pixels_only(self):
        # A vertical step at column 9/10: contrast 60 (|dx| = 240, strong) in rows 0-9 and 20
        # (|dx| = 80, weak) below, so the weak part is kept through 8-connected weak pixels. A
        # separate block of contrast 20 has weak edges only and is dropped.
        img = np.zeros((1, 1, 40, 40), np.uint8)
        img[0, 0, :, 10:] = 20
        img[0, 0, :10, 10:] = 60
        img[0, 0, 20:30, 25:35] = 40
        low, high = 40, 200
        got = kernels.canny(img, low, high)[0, 0]
        assert got[:9, 9].all() and got[11:, 9].all()   # the strong part and the weak rows below it
        assert not got[18:32, 22:38].any()              # the isolated weak block is gone
        assert reference.canny(img, low, 1e-9 + low)[0, 0, 18:32, 22:38].any()  # it is candidate-level
        np.testing.assert_array_equal(got, _cv2_canny(img, low, high)[0, 0])
        np.testing.assert_array_equal(got, reference.canny(img, low, high)[0, 0])

    def test_constant_and_tiny_planes_have_no_edges(self):
        for shape in [(1, 1, 1, 1), (1, 1, 9, 13)]:
            for dtype in (np.uint8, np.float32):
                assert not kernels.canny(np.full(shape, 77, dtype), 0, 0).any()

    def test_float64_and_big_endian_input_are_converted(self, head_slice):
        x = _float_slices(head_slice, n=1, size=64)
        expected = kernels.canny(x, 0.1, 0.3)
        np.testing.assert_array_equal(kernels.canny(x.astype(np.float64), 0.1, 0.3), expected)
        np.testing.assert_array_equal(kernels.canny(x.astype(">f4"), 0.1, 0.3), expected)

    def test_non_contiguous_input(self, head_slice):
        img = _u8_slices(head_slice, n=1, size=256)
        view = np.concatenate([img, img[:, :, ::-1]], axis=1)[:, :, 1::2, ::-1]
        assert not view.flags.c_contiguous
        np.testing.assert_array_equal(kernels.canny(view, 20, 60), kernels.canny(np.ascontiguousarray(view), 20, 60))
        np.testing.assert_array_equal(kernels.canny(view, 20, 60), _cv2_canny(np.ascontiguousarray(view), 20, 60))

    def test_blur_inside_canny_equals_blur_then_canny(self, head_slice):
        x = _float_slices(head_slice, n=1, size=128)
        np.testing.assert_array_equal(kernels.canny(x, 0.1, 0.3, sigma=1.5), kernels.canny(kernels.gaussian_blur(x, 1.5), 0.1, 0.3))
        u = _u8_slices(head_slice, n=1, size=128)
        np.testing.assert_array_equal(kernels.canny(u, 20, 60, sigma=1.0), kernels.canny(kernels.gaussian_blur(u, 1.0), 20, 60))

    def test_channels_are_independent_planes(self, head_slice):
        x = _float_slices(head_slice, n=2, size=64)
        both = kernels.canny(x, 0.1, 0.3)
        for c in range(2):
            np.testing.assert_array_equal(both[:, c : c + 1], kernels.canny(np.ascontiguousarray(x[:, c : c + 1]), 0.1, 0.3))

    def test_reference_mode_dispatches_to_the_twin(self, head_slice, monkeypatch):
        img = _u8_slices(head_slice, n=1, size=64)
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        out = np.empty_like(img)
        assert kernels.canny(img, 20, 60, out=out) is out
        np.testing.assert_array_equal(out, reference.canny(img, 20, 60))


# ---- CUDA twins ----------------------------------------------------------------------------------


@pytest.mark.gpu
class TestCannyCuda:
    @pytest.mark.parametrize(("low", "high", "sigma"), [(20, 60, 0.0), (100, 200, 0.0), (20, 60, 1.5)])
    def test_uint8_bitwise_equal_to_native(self, cupy, head_slice, low, high, sigma):
        img = _u8_slices(head_slice, n=3, size=512)
        got = cupy.asnumpy(kernels.canny(cupy.asarray(img), low, high, sigma=sigma))
        np.testing.assert_array_equal(got, kernels.canny(img, low, high, sigma=sigma))

    @pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0])
    def test_float_bitwise_equal_to_native(self, cupy, head_slice, sigma):
        x = _float_slices(head_slice)
        got = cupy.asnumpy(kernels.canny(cupy.asarray(x), 0.1, 0.3, sigma=sigma))
        np.testing.assert_array_equal(got, kernels.canny(x, 0.1, 0.3, sigma=sigma))

    @pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 37, 53), (1, 1, 1, 70), (1, 1, 70, 1)])
    def test_odd_shapes(self, cupy, shape):
        img = np.random.default_rng(2).integers(0, 256, size=shape).astype(np.uint8)
        got = cupy.asnumpy(kernels.canny(cupy.asarray(img), 50, 150))
        np.testing.assert_array_equal(got, kernels.canny(img, 50, 150))

    def test_nested_rings_of_weak_edges(self, cupy):
        # Concentric weak rings around a strong block: long closed candidate chains that the
        # union-find labelling must link (or keep apart) exactly as the CPU stack does.
        img = np.zeros((1, 1, 129, 129), np.uint8)
        for k in range(0, 64, 4):
            img[0, 0, k : 129 - k, k : 129 - k] = 30 if (k // 4) % 2 == 0 else 0
        img[0, 0, 60:69, 60:69] = 255
        got = cupy.asnumpy(kernels.canny(cupy.asarray(img), 20, 600))
        np.testing.assert_array_equal(got, kernels.canny(img, 20, 600))

    def test_blur_bitwise_equal_to_native(self, cupy, head_slice):
        x = _float_slices(head_slice, n=2, size=128)
        for sigma in (0.5, 2.0, 16.0):
            got = cupy.asnumpy(kernels.gaussian_blur(cupy.asarray(x), sigma))
            np.testing.assert_array_equal(got, kernels.gaussian_blur(x, sigma))

    def test_stream_and_errors(self, cupy, head_slice):
        img = cupy.asarray(_u8_slices(head_slice, n=1, size=64))
        out = cupy.empty(img.shape, dtype=cupy.uint8)
        stream = cupy.cuda.Stream(non_blocking=True)
        assert kernels.canny(img, 20, 60, out=out, stream=stream) is out
        stream.synchronize()
        np.testing.assert_array_equal(cupy.asnumpy(out), kernels.canny(cupy.asnumpy(img), 20, 60))
        with pytest.raises(IslError, match="uint8 or float32"):
            kernels.canny(cupy.zeros((1, 1, 8, 8), cupy.int16), 1, 2)
        with pytest.raises(IslError, match="mix of host"):
            kernels.canny(img, 20, 60, out=np.empty((1, 1, 64, 64), np.uint8))
