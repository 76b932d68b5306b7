"""Mask partitions: which pixels each ISL inference pass erases.

The slice is split into a K×K grid of cells (:func:`cell_bounds`); a :class:`Partition` assigns
every cell to one of G groups, and pass g erases (mask ``m_g = 0``) the cells of group g. The
groups cover every pixel exactly once, so composing the G reconstructions gives a complete
dedisorder image.

- :meth:`Partition.cells` is the paper's partition: K² groups of one cell each,
  group id = row·K + col.
- :meth:`Partition.strided` puts cell (r, c) in group (r mod s)·s + (c mod s): s² groups whose
  cells are never adjacent (not even diagonally) when s ≥ 2. It is a speed option (G = s² < K²
  passes) whose accuracy cost must be measured before it is offered.

Pure numpy; the native kernels only ever see the ``group_map`` an instance produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isl_rt.errors import IslError

__all__ = ["Partition", "cell_bounds", "group_ids_error"]


def cell_bounds(size: int, k: int) -> np.ndarray:
    """Pixel boundaries of k cells along an axis of ``size`` pixels: int64 [k+1], b_i = (i·size)//k.

    Cell i covers pixels [b_i, b_{i+1}). Remainder pixels are spread evenly: every cell has
    floor(size/k) or ceil(size/k) pixels (e.g. size 10, k 4 -> [0, 2, 5, 7, 10]).
    """
    size, k = _positive_int(size, "size"), _positive_int(k, "k")
    if k > size:
        raise IslError(f"Cannot split {size} pixels into k={k} cells: k must be at most the image size.")
    return (np.arange(k + 1, dtype=np.int64) * size) // k


@dataclass(frozen=True, eq=False)
class Partition:
    """A K×K grid of cells and the group of every cell (``cell_group`` int32 [K, K], ids 0..G-1)."""

    k: int
    cell_group: np.ndarray

    def __post_init__(self) -> None:
        k = _positive_int(self.k, "k")
        cells = np.asarray(self.cell_group)
        if cells.shape != (k, k):
            raise IslError(f"cell_group must have shape ({k}, {k}) for k={k}, got {cells.shape}.")
        if cells.dtype.kind not in "iu":
            raise IslError(f"cell_group must hold integer group ids, got dtype {cells.dtype.name}.")
        if cells.min() < 0:
            raise IslError(f"Group ids must be 0..G-1, but cell_group holds {int(cells.min())}.")
        groups = int(cells.max()) + 1
        missing = np.setdiff1d(np.arange(groups), cells)
        if missing.size:
            raise IslError(
                f"Every group 0..{groups - 1} must own at least one cell, but group(s) "
                f"{', '.join(map(str, missing[:8].tolist()))} are empty."
            )
        frozen = cells.astype(np.int32, copy=True)
        frozen.setflags(write=False)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "cell_group", frozen)

    # ---- constructors ---------------------------------------------------------------------------
    @classmethod
    def cells(cls, k: int) -> Partition:
        """The paper's partition: K² groups of one cell each, group id = row·K + col."""
        k = _positive_int(k, "k")
        return cls(k, np.arange(k * k, dtype=np.int32).reshape(k, k))

    @classmethod
    def strided(cls, k: int, stride: int) -> Partition:
        """stride² groups; cell (r, c) -> group (r mod stride)·stride + (c mod stride).

        Cells of one group are ``stride`` cells apart, hence never adjacent when stride ≥ 2.
        stride must be 1..k (stride = k gives the same groups as :meth:`cells`; stride = 1 is one
        group that erases the whole image).
        """
        k = _positive_int(k, "k")
        stride = _positive_int(stride, "stride")
        if stride > k:
            raise IslError(f"stride={stride} leaves groups without cells; it must be at most k={k}.")
        r = np.arange(k)[:, None] % stride
        c = np.arange(k)[None, :] % stride
        return cls(k, (r * stride + c).astype(np.int32))

    # ---- queries --------------------------------------------------------------------------------
    @property
    def groups(self) -> int:
        """G, the number of groups (= inference passes per slice)."""
        return int(self.cell_group.max()) + 1

    def group_map(self, size: int) -> np.ndarray:
        """int32 [size, size]: the group id of every pixel of a size×size slice (cells by :func:`cell_bounds`)."""
        bounds = cell_bounds(size, self.k)
        cell_of_pixel = np.repeat(np.arange(self.k), np.diff(bounds))
        return np.ascontiguousarray(self.cell_group[cell_of_pixel[:, None], cell_of_pixel[None, :]], dtype=np.int32)

    # ---- manifest -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the model-bundle manifest: ``{"k": K, "cell_group": [[...], ...]}``."""
        return {"k": self.k, "cell_group": self.cell_group.tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> Partition:
        """The inverse of :meth:`to_dict`, validating what a manifest holds."""
        if not isinstance(data, dict) or "k" not in data or "cell_group" not in data:
            raise IslError('A mask partition must be an object with "k" and "cell_group".')
        try:
            cells = np.asarray(data["cell_group"])
        except ValueError as err:  # ragged lists
            raise IslError(f"cell_group must be a k×k list of integer group ids ({err}).") from None
        return cls(data["k"], cells)

    # ---- value semantics (the array field rules out the generated __eq__/__hash__) ------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return self.k == other.k and bool(np.array_equal(self.cell_group, other.cell_group))

    def __hash__(self) -> int:
        return hash((self.k, self.cell_group.tobytes()))

    def __repr__(self) -> str:
        return f"Partition(k={self.k}, groups={self.groups}, cell_group={self.cell_group.tolist()})"


def group_ids_error(out_of_range: int, max_id: int, groups: int) -> str | None:
    """The sentence for a group_map that does not fit ``groups`` (None when it fits).

    A map fits when all ids are in 0..groups-1 and the largest is groups-1. Shared by the native
    dispatch (which gets the counts from the kernel's own pass) and the reference twins.
    """
    if out_of_range:
        return (f"group_map holds {out_of_range} pixel(s) with ids outside 0..{groups - 1} for groups={groups}; "
                "build it with Partition.group_map(size).")
    if max_id != groups - 1:
        return (f"groups={groups} does not match group_map, whose largest id is {max_id}; "
                "pass groups=partition.groups.")
    return None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise IslError(f"{name} must be an integer, got {value!r}.")
    if value < 1:
        raise IslError(f"{name} must be at least 1, got {value}.")
    return int(value)
