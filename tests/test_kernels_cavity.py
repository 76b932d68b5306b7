"""cavity: native (C++/OpenMP) and CUDA cranial cavity masks against the numpy twin and by hand."""

from __future__ import annotations

import os
from pathlib import Path

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
            col = min(int(cx), w - 1)
            plane[: h // 2, col] = np.minimum(plane[: h // 2, col], 0.3)
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


# ---- sides and largest: hand-built slices with known answers ------------------------------------
def square_ring(plane: np.ndarray, top: int, left: int, bottom: int, right: int) -> None:
    """Bone (1.0) on the border of rows top..bottom and columns left..right of ``plane``."""
    plane[top, left: right + 1] = plane[bottom, left: right + 1] = 1.0
    plane[top: bottom + 1, left] = plane[top: bottom + 1, right] = 1.0


def as_x(*planes: np.ndarray) -> np.ndarray:
    """[N, 1, H, W] float32 from 2D planes."""
    return np.stack(planes)[:, None].astype(np.float32)


def box(shape: tuple[int, int], *cells: tuple[slice, slice]) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    for rows, cols in cells:
        out[rows, cols] = 1.0
    return out


def ring_with_gap() -> np.ndarray:
    """A 10x10 ring (rows and columns 1..10) whose right side is open on rows 4..6."""
    plane = np.zeros((12, 12), np.float32)
    square_ring(plane, 1, 1, 10, 10)
    plane[4:7, 10] = 0.0
    return plane


def skull_and_holder() -> np.ndarray:
    """A skull (a ring, interior 4 x 12 = 48 px) above a head holder: a bar below it and an arm up
    its left side, which enclose 8 x 14 = 112 px of "scalp and air" under the skull on three sides
    (up, down, left)."""
    plane = np.zeros((18, 26), np.float32)
    square_ring(plane, 1, 4, 6, 17)  # the skull
    plane[15, 1:25] = 1.0  # the holder's bar
    plane[7:16, 1] = 1.0  # and its arm on the left
    return plane


class TestCavitySidesAndLargest:
    def test_a_gap_on_one_side_drops_the_rows_with_sides_4_and_keeps_them_with_3(self):
        x = as_x(ring_with_gap())
        interior = box((12, 12), (slice(2, 10), slice(2, 10)))
        four = interior.copy()
        four[4:7] = 0.0  # the rows through the gap have no bone to their right
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0)[0], four)
        three = interior.copy()
        three[4:7, 10] = 1.0  # the gap itself: bone left, up and down
        for largest in (False, True):
            np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, sides=3, largest=largest)[0], three)
        # the split halves of the sides-4 cavity: largest keeps the lower one (rows 7..9, 24 px,
        # against rows 2..3, 16 px), all of it enclosed on four sides
        lower = box((12, 12), (slice(7, 10), slice(2, 10)))
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, largest=True)[0], lower)

    def test_two_rings_keep_the_larger_interior(self):
        plane = np.zeros((16, 20), np.float32)
        square_ring(plane, 1, 1, 7, 7)  # interior 5x5
        square_ring(plane, 9, 11, 15, 19)  # interior 5x7: more enclosed pixels
        x = as_x(plane)
        both = box((16, 20), (slice(2, 7), slice(2, 7)), (slice(10, 15), slice(12, 19)))
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0), both[None])
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, largest=True)[0], box((16, 20), (slice(10, 15), slice(12, 19))))

    def test_components_are_4_connected(self):
        # a diagonal wall of single bone pixels splits a ring's interior into two triangles that
        # touch only at corners: two components of 45 px each, the upper one first in raster order
        plane = np.zeros((12, 12), np.float32)
        square_ring(plane, 0, 0, 11, 11)
        plane[np.arange(1, 11), np.arange(1, 11)] = 1.0
        rows, cols = np.mgrid[0:12, 0:12]
        upper = ((cols > rows) & (rows >= 1) & (cols <= 10)).astype(np.float32)
        assert upper.sum() == 45
        np.testing.assert_array_equal(K.cavity(as_x(plane), 0, BONE, 0, largest=True)[0], upper)
        # mirrored: the upper-left triangle is now the one first in raster order
        np.testing.assert_array_equal(K.cavity(as_x(plane[:, ::-1]), 0, BONE, 0, largest=True)[0], upper[:, ::-1])

    def test_the_head_holder_region_goes_with_largest(self):
        x = as_x(skull_and_holder())
        brain = box((18, 26), (slice(2, 6), slice(5, 17)))
        under_skull = box((18, 26), (slice(7, 15), slice(4, 18)))
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, sides=3)[0], brain + under_skull)
        # more scalp and air than brain, but none of it enclosed on all four sides: largest keeps the brain
        assert under_skull.sum() > brain.sum()
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, sides=3, largest=True)[0], brain)
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0)[0], brain)  # the four-sided rule never had it

    def test_without_enclosed_pixels_area_then_raster_order_decide(self):
        plane = np.zeros((24, 24), np.float32)
        plane[14:20, 1] = plane[14:20, 9] = plane[19, 1:10] = 1.0  # a U, 7 wide x 5 deep, lower left
        plane[1:6, 14] = plane[1:6, 20] = plane[5, 14:21] = 1.0  # a U, 5 wide x 4 deep, upper right
        x = as_x(plane)
        lower_left = box((24, 24), (slice(14, 19), slice(2, 9)))
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, sides=3, largest=True)[0], lower_left)
        assert K.cavity(x, 0, BONE, 0, sides=4, largest=True).sum() == 0  # nothing inside: all zero
        # equal ranks: the component whose first pixel comes first in raster order (the upper one,
        # although it lies further right)
        same = np.zeros((24, 24), np.float32)
        same[14:20, 1] = same[14:20, 7] = same[19, 1:8] = 1.0
        same[1:7, 14] = same[1:7, 20] = same[6, 14:21] = 1.0
        upper_right = box((24, 24), (slice(1, 6), slice(15, 20)))
        np.testing.assert_array_equal(K.cavity(as_x(same), 0, BONE, 0, sides=3, largest=True)[0], upper_right)

    def test_sides_counts_the_directions_that_reach_bone(self):
        plane = np.zeros((5, 5), np.float32)
        plane[2, 0] = 1.0  # one bone pixel: the rest of its row and its column reach it, once
        x = as_x(plane)
        cross = box((5, 5), (slice(2, 3), slice(1, 5)), (slice(0, 5), slice(0, 1)))
        cross[2, 0] = 0.0
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 0, sides=1)[0], cross)
        assert K.cavity(x, 0, BONE, 0, sides=2).sum() == 0
        cross[2, 1] = cross[1, 0] = cross[3, 0] = 0.0  # within the margin of it
        np.testing.assert_array_equal(K.cavity(x, 0, BONE, 1, sides=1)[0], cross)

    @pytest.mark.parametrize("sides", [1, 2, 3, 4])
    @pytest.mark.parametrize("largest", [False, True])
    def test_empty_all_bone_and_one_pixel_slices(self, sides, largest):
        for x in (np.zeros((2, 1, 9, 7), np.float32), np.ones((2, 1, 9, 7), np.float32),
                  np.zeros((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)):
            mask = K.cavity(x, 0, BONE, 0, sides=sides, largest=largest)
            assert mask.shape == (x.shape[0],) + x.shape[2:] and mask.sum() == 0
            np.testing.assert_array_equal(mask, R.cavity(x, 0, BONE, 0, sides=sides, largest=largest))
        assert K.cavity(np.zeros((0, 2, 5, 5), np.float32), 1, BONE, 0, sides=sides, largest=largest).shape == (0, 5, 5)

    def test_defaults_are_the_four_sided_rule(self):
        x = ring_case(3, 2, 40, 36, seed=5, gap=True)
        np.testing.assert_array_equal(K.cavity(x, 1, BONE, 2), K.cavity(x, 1, BONE, 2, sides=4, largest=False))
        np.testing.assert_array_equal(K.cavity(x, 1, BONE, 2, 3, True), K.cavity(x, 1, BONE, 2, sides=3, largest=True))

    def test_each_slice_keeps_its_own_component(self):
        planes = [ring_with_gap(), skull_and_holder()[:12, :12], np.zeros((12, 12), np.float32), ring_with_gap().T]
        x = as_x(*planes)
        together = K.cavity(x, 0, BONE, 1, sides=3, largest=True)
        for i, plane in enumerate(planes):
            np.testing.assert_array_equal(together[i], K.cavity(as_x(plane), 0, BONE, 1, sides=3, largest=True)[0])

    @pytest.mark.parametrize("margin", [0, 2])
    @pytest.mark.parametrize(("sides", "largest"), [(4, True), (3, False), (3, True), (2, True), (1, True)])
    @pytest.mark.parametrize("name", list(SHAPES))
    def test_native_matches_reference(self, name, margin, sides, largest):
        x = ring_case(*SHAPES[name], seed=margin, gap=True) if SHAPES[name][0] else np.zeros(SHAPES[name], np.float32)
        channel = SHAPES[name][1] - 1
        mask = K.cavity(x, channel, BONE, margin, sides=sides, largest=largest)
        np.testing.assert_array_equal(mask, R.cavity(x, channel, BONE, margin, sides=sides, largest=largest))
        assert set(np.unique(mask)) <= {0.0, 1.0}

    def test_native_matches_reference_on_random_bone(self):
        rng = np.random.default_rng(3)
        for trial in range(40):
            n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 24)), int(rng.integers(1, 24))
            x = (rng.random((n, 1, h, w)) < rng.uniform(0.02, 0.4)).astype(np.float32)
            for sides in (1, 2, 3, 4):
                for largest in (False, True):
                    margin = trial % 3
                    np.testing.assert_array_equal(K.cavity(x, 0, BONE, margin, sides=sides, largest=largest),
                                                  R.cavity(x, 0, BONE, margin, sides=sides, largest=largest),
                                                  err_msg=f"trial {trial}, sides {sides}, largest {largest}")

    def test_non_contiguous_input_and_reference_mode(self, monkeypatch):
        x = ring_case(2, 3, 40, 40, gap=True)
        wide = np.zeros((2, 3, 40, 80), np.float32)
        wide[..., ::2] = x
        want = R.cavity(x, 2, BONE, 1, sides=3, largest=True)
        np.testing.assert_array_equal(K.cavity(wide[..., ::2], 2, BONE, 1, sides=3, largest=True), want)
        out = np.full((2, 40, 40), 7.0, np.float32)
        monkeypatch.setenv("ISL_RT_KERNELS", "reference")
        assert K.cavity(x, 2, BONE, 1, sides=3, largest=True, out=out) is out
        np.testing.assert_array_equal(out, want)

    @pytest.mark.parametrize(("kwargs", "match"), [
        ({"sides": 0}, "sides .* must be 1, 2, 3 or 4, got 0"),
        ({"sides": 5}, "must be 1, 2, 3 or 4, got 5"),
        ({"sides": 3.0}, "must be 1, 2, 3 or 4, got 3.0"),
        ({"sides": True}, "must be 1, 2, 3 or 4, got True"),
        ({"largest": 1}, "largest must be True or False, got 1"),
        ({"largest": "yes"}, "largest must be True or False"),
    ])
    def test_bad_sides_and_largest(self, kwargs, match):
        with pytest.raises(IslError, match=match):
            K.cavity(ring_case(1, 3, 8, 8), 2, BONE, 0, **kwargs)


# ---- phantom and real head CT ---------------------------------------------------------------------
PARAMS = [(4, False), (4, True), (3, False), (3, True)]


def test_native_matches_reference_on_phantom_slices(phantom_cohort):
    from isl_rt.bundle import DEFAULT_CAVITY, DEFAULT_WINDOWS
    from isl_rt.io import dicom

    hu = dicom.load_volume(dicom.discover(phantom_cohort).series[0]).hu
    x = K.window(hu[:: max(1, hu.shape[0] // 6)], [(w.level, w.width) for w in DEFAULT_WINDOWS], 128)
    channel, bone, margin, *_ = DEFAULT_CAVITY.resolve(DEFAULT_WINDOWS)
    for sides, largest in PARAMS:
        mask = K.cavity(x, channel, bone, margin, sides=sides, largest=largest)
        np.testing.assert_array_equal(mask, R.cavity(x, channel, bone, margin, sides=sides, largest=largest))
        assert mask.sum() > 0


def _real_data() -> Path | None:
    """../shared/data/phe-sich-ct-ids next to the checkout or one of its parents (ISL_RT_REAL_DATA
    points elsewhere)."""
    if os.environ.get("ISL_RT_REAL_DATA"):
        return Path(os.environ["ISL_RT_REAL_DATA"])
    for parent in Path(__file__).resolve().parents[1].parents:
        if (parent / "shared" / "data" / "phe-sich-ct-ids" / "labels.csv").is_file():
            return parent / "shared" / "data" / "phe-sich-ct-ids"
    return None


REAL = _real_data()


@pytest.mark.skipif(REAL is None, reason="the real head CT slices (../shared/data/phe-sich-ct-ids) are not here")
def test_native_matches_reference_on_real_slices():
    from PIL import Image

    assert REAL is not None
    # the skull base, the middle and the vertex of three patients, windowed as the runtime does
    # pre-windowed images: pseudo-HU round(v * 4000) through level 2000, width 4000, at S = 128
    paths = []
    for patient in sorted(p for p in (REAL / "images").iterdir() if p.is_dir())[:3]:
        pngs = sorted(patient.glob("*.png"))
        paths += [pngs[0], pngs[len(pngs) // 2], pngs[-1]]
    v = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float64) / 255.0 for p in paths])
    x = K.window(np.rint(v * 4000).astype(np.int16), [(2000.0, 4000.0)], 128)
    for sides, largest in PARAMS:
        mask = K.cavity(x, 0, 0.975, 2, sides=sides, largest=largest)
        np.testing.assert_array_equal(mask, R.cavity(x, 0, 0.975, 2, sides=sides, largest=largest))
    assert K.cavity(x, 0, 0.975, 2, sides=3, largest=True).sum() > 0


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

    @pytest.mark.parametrize("margin", [0, 2])
    @pytest.mark.parametrize(("sides", "largest"), [(4, True), (3, False), (3, True), (1, True)])
    @pytest.mark.parametrize("name", [k for k in SHAPES if SHAPES[k][0]])
    def test_sides_and_largest_match_reference(self, cupy, name, margin, sides, largest):
        x = ring_case(*SHAPES[name], seed=margin, gap=True)
        channel = SHAPES[name][1] - 1
        mask = K.cavity(cupy.asarray(x), channel, BONE, margin, sides=sides, largest=largest)
        np.testing.assert_array_equal(cupy.asnumpy(mask), R.cavity(x, channel, BONE, margin, sides=sides, largest=largest))

    def test_hand_built_and_random_slices_match_reference(self, cupy):
        rng = np.random.default_rng(4)
        cases = [as_x(ring_with_gap(), ring_with_gap().T), as_x(skull_and_holder()), np.zeros((2, 1, 9, 7), np.float32),
                 np.ones((1, 1, 1, 1), np.float32)]
        cases += [(rng.random((2, 1, 37, 53)) < p).astype(np.float32) for p in (0.05, 0.2, 0.4)]
        # a long snake: one component whose smallest label must travel its whole length
        snake = np.ones((1, 1, 61, 61), np.float32)
        for row in range(1, 60, 2):
            snake[0, 0, row, 1:60] = 0.0
            snake[0, 0, row + 1, 59 if row % 4 == 1 else 1] = 0.0
        cases.append(snake)
        for x in cases:
            for sides, largest in PARAMS + [(1, True), (2, True)]:
                mask = K.cavity(cupy.asarray(x), 0, BONE, 0, sides=sides, largest=largest)
                np.testing.assert_array_equal(cupy.asnumpy(mask), R.cavity(x, 0, BONE, 0, sides=sides, largest=largest))

    def test_real_slice_sizes_on_a_stream(self, cupy):
        x = ring_case(8, 1, 512, 512, gap=True)
        stream = cupy.cuda.Stream(non_blocking=True)
        mask = K.cavity(cupy.asarray(x), 0, BONE, 2, sides=3, largest=True, stream=stream)
        stream.synchronize()
        np.testing.assert_array_equal(cupy.asnumpy(mask), R.cavity(x, 0, BONE, 2, sides=3, largest=True))
