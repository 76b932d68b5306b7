"""isl_rt.kernels.partition: cell bounds, the paper's K×K partition, strided groups, manifest form."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from isl_rt.errors import IslError
from isl_rt.kernels.partition import Partition, cell_bounds, group_ids_error


def _cells_of_group(p: Partition, g: int) -> list[tuple[int, int]]:
    rows, cols = np.nonzero(p.cell_group == g)
    return list(zip(rows.tolist(), cols.tolist()))


class TestCellBounds:
    # smoke
    def test_remainder_pixels_are_spread_evenly(self):
        np.testing.assert_array_equal(cell_bounds(10, 4), [0, 2, 5, 7, 10])
        assert cell_bounds(10, 4).dtype == np.int64

    # values
    @pytest.mark.parametrize(("size", "k"), [(s, k) for s in (1, 2, 7, 13, 128, 129, 255, 256, 512)
                                             for k in (1, 2, 3, 4, 5, 7, 8) if k <= s])
    def test_every_cell_is_floor_or_ceil_wide_and_bounds_cover_the_axis(self, size, k):
        b = cell_bounds(size, k)
        assert b.shape == (k + 1,) and b[0] == 0 and b[-1] == size
        widths = np.diff(b)
        assert set(widths.tolist()) <= {size // k, -(-size // k)}
        np.testing.assert_array_equal(b, [(i * size) // k for i in range(k + 1)])

    def test_k_equal_to_size_gives_one_pixel_cells(self):
        np.testing.assert_array_equal(cell_bounds(5, 5), np.arange(6))

    # exceptions
    @pytest.mark.parametrize(("size", "k", "match"), [(10, 0, "k must be at least 1"), (10, -2, "k must be at least 1"),
                                                       (3, 4, "at most the image size"), (0, 1, "size must be at least 1")])
    def test_bad_arguments_raise_a_sentence(self, size, k, match):
        with pytest.raises(IslError, match=match):
            cell_bounds(size, k)

    @pytest.mark.parametrize("k", [2.0, "4", True, None])
    def test_non_integer_k_is_refused(self, k):
        with pytest.raises(IslError, match="k must be an integer"):
            cell_bounds(8, k)


class TestPartition:
    # smoke
    def test_cells_is_the_papers_partition(self):
        p = Partition.cells(3)
        assert p.k == 3 and p.groups == 9
        np.testing.assert_array_equal(p.cell_group, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
        assert p.cell_group.dtype == np.int32

    # shapes
    @pytest.mark.parametrize(("size", "k"), [(1, 1), (13, 4), (128, 4), (129, 8), (7, 7)])
    def test_group_map_shape_and_dtype(self, size, k):
        gm = Partition.cells(k).group_map(size)
        assert gm.shape == (size, size) and gm.dtype == np.int32 and gm.flags.c_contiguous

    # values
    @pytest.mark.parametrize(("size", "k"), [(13, 4), (128, 4), (10, 3), (5, 5), (1, 1), (64, 1)])
    def test_group_map_follows_cell_bounds_and_covers_every_pixel_once(self, size, k):
        p = Partition.cells(k)
        gm = p.group_map(size)
        b = cell_bounds(size, k)
        counts = np.bincount(gm.ravel(), minlength=p.groups)
        assert counts.sum() == size * size and counts.size == p.groups  # every pixel in exactly one group
        for r in range(k):
            for c in range(k):
                block = gm[b[r]:b[r + 1], b[c]:b[c + 1]]
                assert np.all(block == r * k + c)
                assert counts[r * k + c] == block.size

    def test_strided_groups(self):
        p = Partition.strided(4, 2)
        assert p.groups == 4
        np.testing.assert_array_equal(p.cell_group, [[0, 1, 0, 1], [2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]])

    @pytest.mark.parametrize(("k", "stride"), [(4, 2), (6, 2), (6, 3), (5, 2), (8, 4), (7, 3)])
    def test_strided_cells_of_a_group_are_never_adjacent(self, k, stride):
        p = Partition.strided(k, stride)
        assert p.groups == stride * stride
        for g in range(p.groups):
            cells = _cells_of_group(p, g)
            assert cells, f"group {g} is empty"
            for i, (r1, c1) in enumerate(cells):
                for r2, c2 in cells[i + 1:]:
                    assert max(abs(r1 - r2), abs(c1 - c2)) >= 2, (g, (r1, c1), (r2, c2))
        gm = p.group_map(50)
        assert np.bincount(gm.ravel()).sum() == 2500 and gm.max() == p.groups - 1

    def test_strided_with_stride_k_has_the_groups_of_cells(self):
        assert Partition.strided(4, 4) == Partition.cells(4)

    def test_stride_one_is_a_single_group(self):
        p = Partition.strided(3, 1)
        assert p.groups == 1 and np.all(p.group_map(9) == 0)

    def test_custom_partition_and_value_semantics(self):
        p = Partition(2, np.array([[1, 0], [0, 1]]))
        assert p.groups == 2 and p.cell_group.dtype == np.int32
        assert p == Partition(2, [[1, 0], [0, 1]]) and hash(p) == hash(Partition(2, [[1, 0], [0, 1]]))
        assert p != Partition.cells(2) and p != "partition"
        assert "groups=2" in repr(p)

    def test_is_frozen_and_owns_its_array(self):
        cells = np.arange(4).reshape(2, 2)
        p = Partition(2, cells)
        cells[0, 0] = 3  # the caller's array is copied, not shared
        assert p.cell_group[0, 0] == 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.k = 3  # type: ignore[misc]
        with pytest.raises(ValueError, match="read-only"):
            p.cell_group[0, 0] = 1

    # manifest
    @pytest.mark.parametrize("p", [Partition.cells(4), Partition.strided(6, 2), Partition.cells(1)])
    def test_to_dict_round_trips_through_json(self, p):
        data = json.loads(json.dumps(p.to_dict()))
        assert data["k"] == p.k
        back = Partition.from_dict(data)
        assert back == p and back.groups == p.groups
        np.testing.assert_array_equal(back.group_map(37), p.group_map(37))

    # exceptions
    @pytest.mark.parametrize(("k", "cells", "match"), [
        (0, np.zeros((0, 0)), "k must be at least 1"),
        (2, [[0, 1, 2]], r"shape \(2, 2\)"),
        (2, [[0, 2], [2, 2]], r"group\(s\) 1 are empty"),
        (2, [[0, -1], [1, 1]], "ids must be 0..G-1"),
        (2, [[0.0, 1.0], [1.0, 0.0]], "integer group ids"),
        (2, [[True, False], [False, True]], "integer group ids"),
    ])
    def test_invalid_partitions_raise_a_sentence(self, k, cells, match):
        with pytest.raises(IslError, match=match):
            Partition(k, np.asarray(cells))

    @pytest.mark.parametrize(("k", "stride", "match"), [(4, 5, "at most k=4"), (4, 0, "stride must be at least 1"),
                                                        (0, 1, "k must be at least 1")])
    def test_strided_refuses_bad_strides(self, k, stride, match):
        with pytest.raises(IslError, match=match):
            Partition.strided(k, stride)

    def test_group_map_refuses_images_smaller_than_k(self):
        with pytest.raises(IslError, match="at most the image size"):
            Partition.cells(8).group_map(5)

    @pytest.mark.parametrize("data", [None, [], {"k": 2}, {"cell_group": [[0]]}, {"k": 2, "cell_group": [[0, 1], [2]]},
                                      {"k": "2", "cell_group": [[0, 1], [2, 3]]}])
    def test_from_dict_refuses_malformed_manifests(self, data):
        with pytest.raises(IslError):
            Partition.from_dict(data)


class TestGroupIdsError:
    def test_fitting_map_has_no_problem(self):
        assert group_ids_error(0, 15, 16) is None

    def test_out_of_range_and_mismatch_sentences(self):
        assert "3 pixel(s) with ids outside 0..15" in group_ids_error(3, 20, 16)
        assert "largest id is 14" in group_ids_error(0, 14, 16)
