"""Coordinate grids and small 3D shape primitives evaluated on one axial slice.

Frames used throughout the phantom (all in millimetres):

* image frame ``(x, y)``: ``x`` to the image right (patient left), ``y`` down the image
  (posterior), origin at the centre of the 512x512 matrix;
* head frame ``(u, v, z)``: ``u`` lateral (+ towards image right when the head is not
  rotated), ``v`` anterior, ``z`` up from the level of the foramen magnum.  The head frame is
  the image frame rotated by the head's in-plane angle and shifted by its offset.

Shapes are described in the head frame and evaluated only inside a small window of the slice
around them, so a slice costs what its structures cover, not what the matrix holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
Window = tuple[slice, slice]


@dataclass(frozen=True)
class Grid:
    """Head-frame coordinates of every pixel of a crop of the slice matrix.

    ``u`` and ``v`` are float32 arrays of the crop's shape; ``rows``/``cols`` place the crop in
    the full matrix.  ``spacing`` is the pixel size in mm.
    """

    rows: slice
    cols: slice
    u: np.ndarray
    v: np.ndarray
    y_img: np.ndarray  # image-frame y (mm, + posterior/down), for gravity-dependent layering
    spacing: float
    cos_a: float
    sin_a: float
    x0: float
    y0: float
    matrix: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape  # type: ignore[return-value]

    def to_crop_pixel(self, u: float, v: float) -> tuple[float, float]:
        """Crop (row, col) of a head-frame point."""
        w = -v
        x = self.cos_a * u - self.sin_a * w + self.x0
        y = self.sin_a * u + self.cos_a * w + self.y0
        half = (self.matrix - 1) / 2.0
        col = x / self.spacing + half - self.cols.start
        row = y / self.spacing + half - self.rows.start
        return row, col

    def window(self, u: float, v: float, radius: float) -> Window | None:
        """Crop window holding a disc of ``radius`` mm around head-frame point (u, v)."""
        row, col = self.to_crop_pixel(u, v)
        half = radius / self.spacing + 1.0
        h, w = self.shape
        r0, r1 = max(int(row - half), 0), min(int(row + half) + 2, h)
        c0, c1 = max(int(col - half), 0), min(int(col + half) + 2, w)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)


def make_grid(
    matrix: int, spacing: float, angle: float, x0: float, y0: float, half_extent: tuple[float, float]
) -> Grid:
    """Grid of the crop that holds a head centred at image point (x0, y0) mm.

    ``angle`` (rad) rotates the head in plane; ``half_extent`` is the (x, y) half size in mm of
    the region that can hold anything but air.
    """
    half = (matrix - 1) / 2.0
    c0 = max(int(np.floor((x0 - half_extent[0]) / spacing + half)), 0)
    c1 = min(int(np.ceil((x0 + half_extent[0]) / spacing + half)) + 1, matrix)
    r0 = max(int(np.floor((y0 - half_extent[1]) / spacing + half)), 0)
    r1 = min(int(np.ceil((y0 + half_extent[1]) / spacing + half)) + 1, matrix)
    xs = ((np.arange(c0, c1, dtype=F32) - half) * spacing - x0).astype(F32)
    ys = ((np.arange(r0, r1, dtype=F32) - half) * spacing - y0).astype(F32)
    ca, sa = float(np.cos(angle)), float(np.sin(angle))
    # Inverse rotation image -> head frame; v is anterior, i.e. minus the rotated y.
    u = (ca * xs[None, :] + sa * ys[:, None]).astype(F32)
    v = (-(-sa * xs[None, :] + ca * ys[:, None])).astype(F32)
    y_img = np.broadcast_to((ys + y0)[:, None], u.shape).astype(F32)
    return Grid(slice(r0, r1), slice(c0, c1), u, v, y_img, spacing, ca, sa, x0, y0, matrix)


def wrap_pi(a: np.ndarray) -> np.ndarray:
    """Angle wrapped to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def hash01(k: np.ndarray, salt: float | np.floating) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer ``k`` (vectorised)."""
    x = np.sin(k * F32(12.9898) + F32(salt)) * F32(43758.5453)
    return (x - np.floor(x)).astype(F32)


def bump(x: float | np.ndarray, power: float = 1.0) -> float | np.ndarray:
    """(1 - x^2)^power for |x| < 1, else 0: a smooth-ish compact profile."""
    return np.clip(1.0 - np.asarray(x) ** 2, 0.0, None) ** power


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned (in the head frame, optionally turned in plane) ellipsoid."""

    u: float
    v: float
    z: float
    a: float
    b: float
    c: float
    turn: float = 0.0  # in-plane rotation (rad) of the (a, b) axes

    def rho2(self, u: np.ndarray, v: np.ndarray, z: float) -> np.ndarray | None:
        """Squared normalised radius (<1 inside) on arrays u, v at height z; None if missed."""
        dz = (z - self.z) / self.c
        if abs(dz) >= 1.0:
            return None
        du, dv = u - F32(self.u), v - F32(self.v)
        if self.turn:
            ct, st = F32(np.cos(self.turn)), F32(np.sin(self.turn))
            du, dv = ct * du + st * dv, -st * du + ct * dv
        return (du / F32(self.a)) ** 2 + (dv / F32(self.b)) ** 2 + F32(dz * dz)

    def reach(self) -> float:
        return max(self.a, self.b)


@dataclass(frozen=True)
class Capsule:
    """Segment p->q in 3D with a radius growing linearly from ra to rb (a tapered tube)."""

    p: tuple[float, float, float]
    q: tuple[float, float, float]
    ra: float
    rb: float

    def distance_excess(self, u: np.ndarray, v: np.ndarray, z: float) -> np.ndarray | None:
        """Distance to the tube surface (mm, < 0 inside) at height z; None if z misses it."""
        pz, qz = self.p[2], self.q[2]
        rmax = max(self.ra, self.rb)
        if z < min(pz, qz) - rmax or z > max(pz, qz) + rmax:
            return None
        d = np.array(self.q, dtype=np.float64) - np.array(self.p, dtype=np.float64)
        dd = float(d @ d) or 1e-9
        du, dv = u - F32(self.p[0]), v - F32(self.p[1])
        dz = F32(z - pz)
        t = np.clip((du * F32(d[0]) + dv * F32(d[1]) + dz * F32(d[2])) / F32(dd), 0.0, 1.0)
        eu, ev, ez = du - t * F32(d[0]), dv - t * F32(d[1]), dz - t * F32(d[2])
        dist = np.sqrt(eu * eu + ev * ev + ez * ez)
        return dist - (F32(self.ra) + t * F32(self.rb - self.ra))

    def centre(self) -> tuple[float, float]:
        return (self.p[0] + self.q[0]) / 2, (self.p[1] + self.q[1]) / 2

    def reach(self) -> float:
        half = float(np.hypot(self.q[0] - self.p[0], self.q[1] - self.p[1])) / 2
        return half + max(self.ra, self.rb)
