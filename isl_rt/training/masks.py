"""Random training masks drawn from the partitions the runtime uses, and the DeDN input.

One DeDN must serve any partition the runtime may use (``Partition.cells(k)`` for the paper's
K×K single cells, ``Partition.strided(k, s)`` for the faster grouped passes), so each training
image erases one group of one randomly drawn partition:

- "cell" (probability ``p_cell``): a random cell of a K×K grid, K uniform in ``k_min..k_max``;
- "strided" (``p_strided``): a random group of ``Partition.strided(K, s)``, K in max(3, k_min)..k_max,
  s uniform in 2..K-1 (s = K would repeat the cell case);
- "random" (the rest): a random set of 1..max(1, K²/4) cells of a K×K grid.

Cell boundaries always come from ``Partition.group_map`` (the runtime's ``cell_bounds``), so the
erased regions are pixel-exact cells of the runtime's grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MaskSampler", "assemble_input", "hole_from_group_map"]


def hole_from_group_map(group_map: np.ndarray, group: int) -> np.ndarray:
    """float32 [S,S]: 1 on the pixels of ``group`` (erased), 0 elsewhere; i.e. 1 - m_g."""
    return (group_map == group).astype(np.float32)


@dataclass(frozen=True)
class _Grid:
    k: int
    cells: np.ndarray  # int32 [S,S], cell id row*k+col (Partition.cells(k).group_map)
    strided: dict[int, np.ndarray]  # stride -> int32 [S,S] group map of Partition.strided(k, stride)


class MaskSampler:
    """Draws erased regions ("holes") for DeDN training; see the module docstring."""

    def __init__(
        self,
        size: int,
        *,
        k_min: int = 2,
        k_max: int = 8,
        p_cell: float = 0.5,
        p_strided: float = 0.25,
    ) -> None:
        if not 1 <= k_min <= k_max <= size:
            raise ValueError(f"need 1 ≤ k_min ≤ k_max ≤ size, got k_min={k_min}, k_max={k_max}, size={size}.")
        if p_cell < 0 or p_strided < 0 or p_cell + p_strided > 1:
            raise ValueError(f"p_cell={p_cell} and p_strided={p_strided} must be ≥ 0 with a sum ≤ 1.")
        from isl_rt.kernels.partition import Partition

        self.size = size
        self.k_min, self.k_max = k_min, k_max
        self.p_cell, self.p_strided = p_cell, p_strided
        self._grids = {
            k: _Grid(
                k=k,
                cells=Partition.cells(k).group_map(size),
                strided={s: Partition.strided(k, s).group_map(size) for s in range(2, k)},
            )
            for k in range(k_min, k_max + 1)
        }
        self._strided_ks = [k for k in self._grids if self._grids[k].strided]

    def sample_one(self, rng: np.random.Generator) -> np.ndarray:
        """One hole, float32 [S,S] (1 = erased)."""
        u = rng.random()
        if u < self.p_strided and self._strided_ks:
            grid = self._grids[self._strided_ks[rng.integers(len(self._strided_ks))]]
            stride = int(rng.integers(2, grid.k))
            return hole_from_group_map(grid.strided[stride], int(rng.integers(stride * stride)))
        grid = self._grids[int(rng.integers(self.k_min, self.k_max + 1))]
        cells = grid.k * grid.k
        if u < self.p_strided + self.p_cell or cells == 1:
            return hole_from_group_map(grid.cells, int(rng.integers(cells)))
        count = int(rng.integers(1, max(1, cells // 4) + 1))
        chosen = rng.choice(cells, size=count, replace=False)
        return np.isin(grid.cells, chosen).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` holes, float32 [n,1,S,S]."""
        out = np.empty((n, 1, self.size, self.size), dtype=np.float32)
        for i in range(n):
            out[i, 0] = self.sample_one(rng)
        return out


def assemble_input(x: np.ndarray, edges: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The DeDN input in the runtime's fan-out order: concat(x·m, 1 - m, edges), m = 1 - hole.

    x float32 [B,C,S,S], edges uint8/float [B,C,S,S] (0/1), hole float32 [B,1,S,S] ->
    float32 [B,2C+1,S,S]. Equals ``isl_rt.kernels.fanout`` for the same erased group.
    """
    keep = 1.0 - hole
    return np.concatenate([x * keep, hole, edges.astype(np.float32)], axis=1).astype(np.float32, copy=False)
