"""The healthy phantom head: drawn parameters, per-study geometry, and one rendered slice.

A head is a nest of surfaces around the cranial cavity.  The cavity's axial outline is an
egg-shaped ellipse with random smooth harmonics (``R0(theta)``); the skull, the scalp and the
temporalis muscle are offsets of it, each closing over its own dome at the vertex, so the top
slices cut the skull tangentially as real ones do.  The skull base is a *floor* under the
cavity, the lower envelope of a few bowls (anterior, middle and posterior cranial fossae, the
sella, the clivus and the foramen magnum); the cavity at height ``z`` is where the slice is
above that floor and inside the inner table.  Brain structures are placed in a template
(mm, for a cavity 134 mm wide, 168 mm long and a 140 mm foramen-magnum-to-vertex height)
scaled to the drawn head.

Typical values used (unenhanced head CT; e.g. Hounsfield-unit tables in Lev & Gonzalez,
"CT angiography and CT perfusion imaging", and standard neuroradiology texts such as
Osborn's *Brain*):

==========================  ====================  ===========================================
tissue                      HU drawn per head     note
==========================  ====================  ===========================================
grey matter                 35 – 42               cortex, cerebellar cortex
white matter                22 – 30               >= 6 HU below grey matter
deep grey nuclei            GM - 3 .. GM          caudate, putamen, thalamus
CSF                         3 – 10                ventricles, cisterns, sulci
cortical bone               1250 – 1750           inner/outer table (after partial volume)
diploe                      450 – 750             cancellous bone between the tables
petrous bone                1600 – 2100           densest bone in the head
scalp / skin                30 – 55
subcutaneous fat            -110 – -70
muscle                      40 – 55               temporalis, neck and masticator muscles
vitreous / lens             5 – 15 / 80 – 110
orbital fat                 -110 – -80
sinus / mastoid air, FOV    -1000                 air, clipped at -1024
normal calcification        100 – 400             pineal, choroid plexus glomus, falx
==========================  ====================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from isl_rt.io.phantom._geometry import F32, Capsule, Ellipsoid, Grid, bump, hash01, make_grid

MATRIX = 512
SLICE_MM = 5.0

# ---------------------------------------------------------------------------------------------
# Tissue labels.  A slice is first a label map, then HU = table[label] + texture.
AIR, SKIN, FAT, MUSCLE, CORTICAL, DIPLOE, CSF, GM, WM, DEEP_GM, STEM, CB_GM, CB_WM, DURA = range(14)
PETROUS, SINUS_AIR, ORBIT_FAT, VITREOUS, LENS, CALC, HOLDER, FOAM, BASE_BONE, CORD, NERVE = range(14, 25)
N_LABELS = 25
BRAIN_LABELS = (GM, WM, DEEP_GM, STEM, CB_GM, CB_WM)
BONE_LABELS = (CORTICAL, DIPLOE, PETROUS, BASE_BONE)

# Template sizes the anatomical placements below are written for.
T_A, T_B, T_H = 67.0, 84.0, 140.0


@dataclass(frozen=True)
class Anatomy:
    """Everything drawn for one healthy head and its acquisition (mm, degrees, HU)."""

    # acquisition
    n_slices: int
    z_first: float
    pixel_spacing: float
    kernel: str  # "smooth" | "standard" | "sharp"
    blur_px: float
    noise_sd: float
    angle_deg: float
    offset_mm: tuple[float, float]
    pad_hu: int
    holder: bool
    # head shape
    age: float
    height: float  # foramen magnum to the outer vertex
    cav_a: float  # cranial cavity half width at its widest
    cav_b: float  # cranial cavity half length
    egg: float  # frontal narrowing
    harmonics: tuple[tuple[int, float, float], ...]
    z_widest: float
    vertex_power: float
    base_narrowing: float
    skull_mm: float
    scalp_mm: float
    fat_mm: float
    temporalis_mm: float
    face_mm: float
    # brain
    vent_scale: float
    sulcal_width: float
    sas_mm: float
    n_sulci: int
    sulcal_coeffs: tuple[tuple[float, float, float, float], ...]  # per k: amp_cos, amp_sin, omega, phase
    sulcal_salt: float
    cortex_mm: float
    # skull base variation
    sinus_scale: tuple[float, float, float, float]  # frontal, sphenoid, maxillary, mastoid
    # normal calcifications (radius / half length in mm) or None; HU is ``hu["calc"]``
    pineal_calc: float | None
    choroid_calc: float | None
    falx_calc: float | None
    # tissue HU table
    hu: dict[str, float] = field(default_factory=dict)

    @property
    def sx(self) -> float:
        return self.cav_a / T_A

    @property
    def sy(self) -> float:
        return self.cav_b / T_B

    @property
    def sz(self) -> float:
        return self.height / T_H

    @property
    def z_monro(self) -> float:
        """Height of the foramina of Monro / basal ganglia centre."""
        return 0.52 * self.height

    @property
    def z_inner_top(self) -> float:
        return self.height - self.skull_mm - self.scalp_mm

    def slice_z(self) -> np.ndarray:
        return self.z_first + SLICE_MM * np.arange(self.n_slices)

    def profile(self, z: float, offset: float) -> float:
        """Scale of the axial outline at height z for the surface ``offset`` mm outside the inner table.

        Below the widest level the head narrows gently towards the base; above it each surface
        closes over a super-elliptic dome that reaches its own vertex ``z_inner_top + offset``.
        """
        if z <= self.z_widest:
            return 1.0 - self.base_narrowing * ((self.z_widest - z) / self.z_widest) ** 2
        top = self.z_inner_top + offset
        t = (z - self.z_widest) / (top - self.z_widest)
        if t >= 1.0:
            return 0.0
        return float((1.0 - t**self.vertex_power) ** (1.0 / self.vertex_power))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one healthy head and its scan parameters."""
    age = float(np.clip(rng.normal(55, 18), 18, 92))
    aging = ((age - 18) / 74) ** 1.6  # 0 young .. 1 very old
    cav_a = float(rng.uniform(61, 71))
    cav_b = float(rng.uniform(77, 89))
    skull = float(rng.uniform(5.0, 8.0))
    scalp = float(rng.uniform(4.0, 7.0))
    height = float(rng.uniform(132, 152))
    z_first = float(-rng.uniform(4, 22))
    span = height + 2 - z_first
    n = int(np.clip(np.floor(span / SLICE_MM) + 1, 28, 36))
    z_first = float(height + 2 - SLICE_MM * (n - 1) + rng.uniform(-2, 2))

    half_len = cav_b + skull + scalp + 8  # occiput + nuchal soft tissue, face forward
    spacing = float(np.clip(rng.uniform(0.40, 0.50), (2 * half_len + 24) / MATRIX, 0.5))
    kernel = str(rng.choice(["smooth", "standard", "sharp"], p=[0.4, 0.45, 0.15]))
    blur = {"smooth": (0.9, 1.15), "standard": (0.65, 0.8), "sharp": (0.45, 0.55)}[kernel]
    noise = {"smooth": (2.5, 4.0), "standard": (3.5, 5.5), "sharp": (5.5, 8.0)}[kernel]

    gm = float(rng.uniform(35, 42))
    wm = float(np.clip(gm - rng.uniform(7, 12), 22, 30))
    hu = {
        "gm": gm,
        "wm": wm,
        "deep_gm": gm - float(rng.uniform(0, 3)),
        "stem": wm + float(rng.uniform(2, 5)),
        "csf": float(rng.uniform(3, 10)),
        "cortical": float(rng.uniform(1250, 1750)),
        "diploe": float(rng.uniform(450, 750)),
        "petrous": float(rng.uniform(1600, 2100)),
        "base_bone": float(rng.uniform(550, 850)),
        "skin": float(rng.uniform(30, 55)),
        "fat": float(rng.uniform(-110, -70)),
        "muscle": float(rng.uniform(40, 55)),
        "dura": float(rng.uniform(40, 52)),
        "vitreous": float(rng.uniform(5, 15)),
        "lens": float(rng.uniform(80, 110)),
        "orbit_fat": float(rng.uniform(-110, -80)),
        "holder": float(rng.uniform(60, 250)),
        "foam": float(rng.uniform(-960, -850)),
        "calc": float(rng.uniform(150, 400)),
    }
    n_k = 4
    coeffs = tuple(
        (
            float(rng.normal(0, 1.2 / k)),
            float(rng.normal(0, 1.2 / k)),
            float(2 * np.pi / rng.uniform(50, 140)),
            float(rng.uniform(0, 2 * np.pi)),
        )
        for k in range(1, n_k + 1)
    )
    harmonics = tuple((k, float(rng.normal(0, 0.018 / (k - 1))), float(rng.uniform(0, 2 * np.pi))) for k in range(2, 6))

    def maybe_calc(p: float, r: tuple[float, float]) -> float | None:
        """Radius of a normal calcification present with probability p (rises with age)."""
        return float(rng.uniform(*r)) if rng.random() < p else None

    return Anatomy(
        n_slices=n,
        z_first=z_first,
        pixel_spacing=spacing,
        kernel=kernel,
        blur_px=float(rng.uniform(*blur)),
        noise_sd=float(rng.uniform(*noise)),
        angle_deg=float(rng.normal(0, 5)),
        offset_mm=(float(rng.uniform(-8, 8)), float(rng.uniform(-8, 8))),
        pad_hu=int(rng.choice([-1024, -2000])),
        holder=bool(rng.random() < 0.85),
        age=age,
        height=height,
        cav_a=cav_a,
        cav_b=cav_b,
        egg=float(rng.uniform(0.04, 0.10)),
        harmonics=harmonics,
        z_widest=float(rng.uniform(0.45, 0.55) * height),
        vertex_power=float(rng.uniform(2.6, 3.4)),
        base_narrowing=float(rng.uniform(0.06, 0.14)),
        skull_mm=skull,
        scalp_mm=scalp,
        fat_mm=float(rng.uniform(0.5, 2.5)),
        temporalis_mm=float(rng.uniform(5, 10)),
        face_mm=float(rng.uniform(8, 16)),
        vent_scale=float((0.85 + 0.5 * aging) * rng.uniform(0.88, 1.12)),
        sulcal_width=float(0.5 + 1.6 * aging + rng.uniform(0, 0.3)),
        sas_mm=float(0.5 + 1.8 * aging + rng.uniform(0, 0.4)),
        n_sulci=int(rng.integers(26, 34)),
        sulcal_coeffs=coeffs,
        sulcal_salt=float(rng.uniform(0, 100)),
        cortex_mm=float(rng.uniform(2.4, 3.2)),
        sinus_scale=(
            float(rng.uniform(0.0, 1.3) if rng.random() > 0.06 else 0.0),
            float(rng.uniform(0.6, 1.3)),
            float(rng.uniform(0.7, 1.2)),
            float(rng.uniform(0.5, 1.3)),
        ),
        pineal_calc=maybe_calc(0.35 + 0.4 * aging, (1.5, 3.0)),
        choroid_calc=maybe_calc(0.3 + 0.5 * aging, (1.5, 2.8)),
        falx_calc=maybe_calc(0.35 * aging, (3.0, 8.0)),
        hu=hu,
    )


# ---------------------------------------------------------------------------------------------
# Per-study geometry: everything that does not depend on the slice height.


@dataclass(frozen=True)
class Geometry:
    """Fields on the crop grid computed once per head (angles, floors, textures)."""

    grid: Grid
    r: np.ndarray
    theta: np.ndarray  # from anterior towards +u (rad)
    cos_t: np.ndarray
    sin_t: np.ndarray
    harm_cos: tuple[np.ndarray, ...]  # cos(k theta), k = 1..4
    harm_sin: tuple[np.ndarray, ...]
    r0: np.ndarray  # inner-table radius at the widest level
    skull_th: np.ndarray  # skull thickness without the temporal thinning
    temporal_w: np.ndarray  # where the temporal squama and temporalis lie (0..1)
    scalp_th: np.ndarray
    occipital_w: np.ndarray
    face_w: np.ndarray
    floor: np.ndarray  # height of the skull-base floor under each pixel (mm)
    floor_grad: np.ndarray  # sqrt(1 + |grad floor|^2): turns heights above the floor into distances
    z_tent: np.ndarray  # height of the tentorium above each pixel
    behind_petrous: np.ndarray  # bool: posterior to the petrous ridge line (posterior fossa side)
    base_block: np.ndarray  # bool: central skull-base bone (clivus, sphenoid, maxilla)
    tex_fine: np.ndarray  # unit-sd textures, larger than the crop, sliced per slice
    tex_coarse: np.ndarray
    phase_a: np.ndarray  # two smooth fields (~8 mm) that bend the gyral pattern, blended along z
    phase_b: np.ndarray
    holder_ring: np.ndarray | None  # bool masks in image frame (gravity), same every slice
    holder_pad: np.ndarray | None


_TEX_MARGIN = 48


def build_geometry(anat: Anatomy, rng: np.random.Generator) -> Geometry:
    """Precompute the slice-independent fields of one head."""
    a, b, h = anat.cav_a, anat.cav_b, anat.height
    half_x = a + anat.skull_mm + anat.scalp_mm + anat.temporalis_mm + 14
    half_y = b + anat.skull_mm + anat.scalp_mm + anat.face_mm + 16
    ang = np.deg2rad(anat.angle_deg)
    ext_x = float(np.hypot(half_x * np.cos(ang), half_y * np.sin(ang)))
    ext_y = float(np.hypot(half_x * np.sin(ang), half_y * np.cos(ang)))
    grid = make_grid(MATRIX, anat.pixel_spacing, ang, anat.offset_mm[0], anat.offset_mm[1], (ext_x, ext_y + 12))
    u, v = grid.u, grid.v
    r = np.sqrt(u * u + v * v) + F32(1e-3)
    cos_t, sin_t = v / r, u / r
    theta = np.arctan2(u, v).astype(F32)
    e1 = (cos_t + 1j * sin_t).astype(np.complex64)
    powers = [e1]
    for _ in range(5):
        powers.append(powers[-1] * e1)
    harm_cos = tuple(p.real.astype(F32) for p in powers[:4])
    harm_sin = tuple(p.imag.astype(F32) for p in powers[:4])

    r0 = inner_radius0(anat, theta)

    lateral = sin_t**4
    occipital = np.clip(-cos_t, 0, None) ** 3
    frontal = np.clip(cos_t, 0, None) ** 2
    sk_var = F32(1) + F32(0.12) * (harm_cos[2] * F32(rng.normal()) + harm_sin[1] * F32(rng.normal()))
    skull_th = (F32(anat.skull_mm) * sk_var + F32(2.5) * occipital + F32(1.0) * frontal).astype(F32)
    scalp_th = (F32(anat.scalp_mm) * (F32(1) + F32(0.15) * harm_cos[1] * F32(rng.normal()))).astype(F32)
    face_w = (np.clip(cos_t, 0, None) ** 6).astype(F32)

    floor, floor_grad = _skull_base_floor(anat, u, v, grid.spacing)
    z_tent = (F32(0.37 * h) - F32(0.3) * np.abs(u) - F32(0.2) * np.clip(-F32(0.1 * b) - v, 0, None)).astype(F32)
    # Petrous ridge: from (0.2A, -0.05B) to (0.75A, -0.4B) on each side.
    behind = (np.abs(u) - F32(0.2 * a)) * F32(-0.35 * b) - (v + F32(0.05 * b)) * F32(0.55 * a) > 0
    # Central skull-base bone: sphenoid body + clivus, and the maxilla/hard palate in front.
    base_block = ((u / F32(0.22 * a)) ** 2 + ((v - F32(0.1 * b)) / F32(0.3 * b)) ** 2 < 1) | (
        (u / F32(0.45 * a)) ** 2 + ((v - F32(0.72 * b)) / F32(0.3 * b)) ** 2 < 1
    )

    shape = (u.shape[0] + _TEX_MARGIN, u.shape[1] + _TEX_MARGIN)
    tex_fine = _unit_texture(rng, shape, 1.2)
    tex_coarse = _unit_texture(rng, shape, 4.0)
    phase_a = _smooth_field(rng, u.shape, 8.0 / grid.spacing)
    phase_b = _smooth_field(rng, u.shape, 8.0 / grid.spacing)

    ring = pad = None
    if anat.holder:
        ring, pad = _head_holder(anat, grid, r0, skull_th, scalp_th)
    return Geometry(
        grid=grid,
        r=r,
        theta=theta,
        cos_t=cos_t,
        sin_t=sin_t,
        harm_cos=harm_cos,
        harm_sin=harm_sin,
        r0=r0,
        skull_th=skull_th,
        temporal_w=lateral.astype(F32),
        scalp_th=scalp_th,
        occipital_w=(np.clip(-cos_t, 0, None) ** 2).astype(F32),
        face_w=face_w,
        floor=floor,
        floor_grad=floor_grad,
        z_tent=z_tent,
        behind_petrous=behind,
        base_block=base_block,
        tex_fine=tex_fine,
        tex_coarse=tex_coarse,
        phase_a=phase_a,
        phase_b=phase_b,
        holder_ring=ring,
        holder_pad=pad,
    )


def inner_radius0(anat: Anatomy, theta: np.ndarray | float) -> np.ndarray:
    """Inner-table radius (mm) at the widest level in direction theta (from anterior towards +u).

    An egg-shaped ellipse (narrower in front by ``egg``) with small random harmonics k = 2..5.
    """
    th = np.asarray(theta, dtype=F32)
    c, s = np.cos(th), np.sin(th)
    a_eff = F32(anat.cav_a) * (F32(1) - F32(anat.egg) * c)
    r_ell = F32(1) / np.sqrt((s / a_eff) ** 2 + (c / F32(anat.cav_b)) ** 2)
    wob = np.ones_like(th)
    for k, amp, ph in anat.harmonics:
        wob = wob + F32(amp) * np.cos(F32(k) * th - F32(ph))
    return (r_ell * wob).astype(F32)


def cavity_depth_at(anat: Anatomy, u: float, v: float, z: float) -> float:
    """Depth (mm) of head-frame point (u, v, z) inside the cranial cavity; negative outside."""
    r = float(np.hypot(u, v))
    theta = float(np.arctan2(u, v))
    dc = float(inner_radius0(anat, theta)) * anat.profile(z, 0.0) - r
    uu, vv = np.array([[u]], dtype=F32), np.array([[v]], dtype=F32)
    floor = float(_floor_height(anat, uu, vv)[0, 0])
    return min(dc, z - floor)


def _unit_texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=F32), sigma)
    return (t / (t.std() + 1e-6)).astype(F32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-sd random field with correlation length ``sigma_px``, made at 1/4 resolution."""
    small = (shape[0] // 4 + 3, shape[1] // 4 + 3)
    t = ndimage.gaussian_filter(rng.standard_normal(small), sigma_px / 4.0, mode="wrap")
    big = ndimage.zoom(t, 4.0, order=1)[: shape[0], : shape[1]]
    return (big / (big.std() + 1e-9)).astype(F32)


def _skull_base_floor(anat: Anatomy, u: np.ndarray, v: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Height of the cranial-cavity floor under each pixel: the lower envelope of fossa bowls.

    Each bowl is ``z0 + c * ((u-cu)/a)^2 + ((v-cv)/b)^2)``.  Landmark heights follow a skull
    about 140 mm from foramen magnum to vertex: anterior fossa (orbital roofs) ~45 mm, middle
    fossae ~14 mm, posterior fossa bottoming out at the foramen magnum, the sella ~35 mm and the
    clivus sloping from the dorsum sellae down to the basion.
    """
    floor = _floor_height(anat, u, v)
    canal = floor < -1e3
    gy, gx = np.gradient(np.where(canal, F32(-20), floor), spacing)
    # Dividing a height difference by sqrt(1 + |grad|^2) gives the distance to a locally planar
    # floor: large over a gently sloping floor far below, small next to a steep fossa wall.
    return floor, np.sqrt(1.0 + gx * gx + gy * gy).astype(F32)


def _floor_height(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height of the skull-base floor at head-frame (u, v) (see :func:`_skull_base_floor`)."""
    a, b, h = anat.cav_a, anat.cav_b, anat.height
    bowls = [
        (0.0, 0.62 * b, 0.32 * h, 0.9 * a, 0.45 * b, 0.06 * h),  # anterior cranial fossa
        (0.5 * a, 0.05 * b, 0.07 * h, 0.5 * a, 0.40 * b, 0.12 * h),  # middle cranial fossa, left
        (-0.5 * a, 0.05 * b, 0.07 * h, 0.5 * a, 0.40 * b, 0.12 * h),  # right
        (0.0, -0.45 * b, -0.05 * h, 0.85 * a, 0.45 * b, 0.25 * h),  # posterior fossa
        (0.0, 0.08 * b, 0.24 * h, 0.12 * a, 0.10 * b, 0.08 * h),  # sella turcica
    ]
    floor = np.full(u.shape, np.inf, dtype=F32)
    for cu, cv, z0, ba, bb, c in bowls:
        np.minimum(
            floor, F32(z0) + F32(c) * (((u - F32(cu)) / F32(ba)) ** 2 + ((v - F32(cv)) / F32(bb)) ** 2), out=floor
        )
    # Clivus: a trough sloping up from the basion (v=-0.12B, z=0) to the dorsum (v=+0.1B, z=0.3H).
    ramp = (v + F32(0.12 * b)) / F32(0.22 * b)
    clivus = F32(0.3 * h) * ramp + F32(0.3 * h) * (u / F32(0.22 * a)) ** 2
    np.minimum(floor, np.where(ramp > 0, clivus, F32(np.inf)), out=floor)
    # Foramen magnum and spinal canal: open all the way down.
    canal = (u / F32(0.2 * a)) ** 2 + ((v + F32(0.3 * b)) / F32(0.2 * a)) ** 2 < 1
    floor[canal] = F32(-1e4)
    return floor


def _head_holder(
    anat: Anatomy, grid: Grid, r0: np.ndarray, skull: np.ndarray, scalp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Curved head rest behind the occiput (image frame: gravity points down the image).

    A carbon/plastic shell (60-250 HU, ~3.5 mm) with a foam pad (~-900 HU) inside it, spanning
    +-70 degrees around straight down, 4 mm behind the furthest point of the scalp.
    """
    y = grid.y_img - F32(grid.y0)  # image-frame offsets from the head centre
    w = -grid.v
    xr = F32(grid.cos_a) * grid.u - F32(grid.sin_a) * w
    out = r0 + skull + scalp
    reach = float(np.max(np.where(y > 0, out * (y / np.sqrt(xr * xr + y * y + 1e-3)), 0)))
    radius = reach + 4.0
    rho = np.sqrt(xr * xr + y * y)
    ang = np.arctan2(xr, y)  # 0 = straight down the image
    span = np.abs(ang) < np.deg2rad(70)
    ring = span & (np.abs(rho - F32(radius + 2.0)) < F32(1.8))
    pad = span & (rho < F32(radius)) & (rho > F32(radius - 10.0))
    return ring, pad


# ---------------------------------------------------------------------------------------------
# Modifiers: how a disorder bends the healthy rendering before any paint.


@dataclass(frozen=True)
class Warp:
    """Radial displacement of brain structures around a point (mass effect or volume loss).

    ``radius`` is the radius (mm) of the volume added (sign +1: a mass pushes tissue away,
    incompressibly, |q-c|^3 = |p-c|^3 - radius^3) or removed (sign -1: tissue pulled in).
    The displacement fades to zero within ``taper`` mm of the inner table.
    """

    u: float
    v: float
    z: float
    radius: float
    sign: int = 1
    taper: float = 12.0


@dataclass
class Modifiers:
    """Changes a disorder makes to the healthy head before painting (all default = healthy)."""

    vent_scale: float = 1.0
    vent_side: tuple[float, float] = (1.0, 1.0)  # extra scale of the (u<0, u>0) lateral ventricle
    temporal_horn: float = 1.0
    third_vent: float = 1.0
    sulcal_scale: float = 1.0
    sas_add: float = 0.0
    sylvian_scale: float = 1.0
    sulcal_fields: list[Callable[[SliceCtx], np.ndarray]] = field(default_factory=list)
    warps: list[Warp] = field(default_factory=list)
    extra_axial: list[Callable[[SliceCtx], np.ndarray]] = field(default_factory=list)
    skull_dents: list[Callable[[SliceCtx], np.ndarray]] = field(default_factory=list)
    skull_gaps: list[Callable[[SliceCtx], np.ndarray]] = field(default_factory=list)
    scalp_swelling: list[Callable[[SliceCtx], np.ndarray]] = field(default_factory=list)

    @property
    def is_healthy(self) -> bool:
        return self == Modifiers()


@dataclass
class SliceCtx:
    """One slice being rendered: crop fields in mm and the label/HU maps built so far."""

    z: float
    k: int
    geo: Geometry
    anat: Anatomy
    u: np.ndarray
    v: np.ndarray
    uw: np.ndarray  # warped brain-template coordinates (== u, v without mass effect)
    vw: np.ndarray
    warp_margin: float
    r_in: np.ndarray | None = None
    r_sk: np.ndarray | None = None
    r_out: np.ndarray | None = None
    dc: np.ndarray | None = None  # depth into the cavity from the inner table
    floor_depth: np.ndarray | None = None  # distance above the skull-base floor and petrous bone
    depth: np.ndarray | None = None  # depth into the cavity from any wall (inner table, floor, petrous)
    db: np.ndarray | None = None  # depth into the brain from its surface
    cavity: np.ndarray | None = None
    extra_axial: list[np.ndarray] = field(default_factory=list)
    lab: np.ndarray | None = None
    hu: np.ndarray | None = None
    sulcal_csf: np.ndarray | None = None  # bool: CSF in sulci, fissures and cisterns (not ventricles)
    ventricles: np.ndarray | None = None  # bool: ventricular CSF
    soft: list[tuple[tuple[slice, slice], np.ndarray, int]] = field(default_factory=list)  # soft-edged tissue blends

    @property
    def theta(self) -> np.ndarray:
        return self.geo.theta

    @property
    def r(self) -> np.ndarray:
        return self.geo.r

    def tex(self, which: str, k: int) -> np.ndarray:
        t = self.geo.tex_fine if which == "fine" else self.geo.tex_coarse
        h, w = self.u.shape
        o1, o2 = (k * 17) % _TEX_MARGIN, (k * 29) % _TEX_MARGIN
        return t[o1 : o1 + h, o2 : o2 + w]

    def brain(self) -> np.ndarray:
        assert self.lab is not None
        return (self.lab >= GM) & (self.lab <= CB_WM)

    def window(self, u: float, v: float, reach: float) -> tuple[slice, slice] | None:
        return self.geo.grid.window(u, v, reach + self.warp_margin)


def _apply_warps(
    u: np.ndarray, v: np.ndarray, z: float, warps: list[Warp], r_in: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Template coordinates each pixel's tissue came from, and the largest displacement."""
    uw, vw = u, v
    margin = 0.0
    dc = r_in - r
    for w in warps:
        du, dv = uw - F32(w.u), vw - F32(w.v)
        dz2 = F32((z - w.z) ** 2)
        d = np.sqrt(du * du + dv * dv + dz2) + F32(1e-3)
        cube = d**3 - F32(w.sign * w.radius**3)
        src = np.cbrt(np.clip(cube, 0, None))
        ratio = src / d
        fade = np.clip(dc / F32(w.taper), 0, 1)
        k = F32(1) + (ratio - F32(1)) * fade
        uw = F32(w.u) + du * k
        vw = F32(w.v) + dv * k
        margin += w.radius * 1.2
    return uw.astype(F32), vw.astype(F32), margin


# ---------------------------------------------------------------------------------------------
# Rendering one slice.


def render_slice(anat: Anatomy, geo: Geometry, mods: Modifiers, k: int, *, labels_only: bool = False) -> SliceCtx:
    """Label map and noise-free HU of slice ``k`` (crop), with the fields disorders paint on.

    ``labels_only`` skips the HU (for the healthy twin a diffuse disorder is compared with).
    """
    z = float(anat.slice_z()[k])
    g = geo.grid
    ctx = SliceCtx(z=z, k=k, geo=geo, anat=anat, u=g.u, v=g.v, uw=g.u, vw=g.v, warp_margin=0.0)
    lab = np.zeros(g.shape, dtype=np.uint8)
    ctx.lab = lab
    _outer_layers(ctx, mods)
    if mods.warps:
        assert ctx.r_in is not None
        ctx.uw, ctx.vw, ctx.warp_margin = _apply_warps(g.u, g.v, z, mods.warps, ctx.r_in, geo.r)
    _soft_tissue_and_bone(ctx, mods, k)
    if ctx.cavity is not None and ctx.cavity.any():
        _cerebrum(ctx, mods)
        _posterior_fossa(ctx)
        _deep_grey(ctx)
        _cisterns_and_fissures(ctx, mods)
        _ventricles(ctx, mods)
        _normal_calcifications(ctx)
    _skull_base(ctx, k)
    _orbits(ctx)
    if geo.holder_ring is not None and geo.holder_pad is not None:
        lab[geo.holder_pad & (lab == AIR)] = FOAM
        lab[geo.holder_ring & (lab == AIR)] = HOLDER
    if not labels_only:
        ctx.hu = _to_hu(ctx, k)
        _beam_hardening(ctx)
    ctx.sulcal_csf = (lab == CSF) & ~ctx.ventricles if ctx.ventricles is not None else lab == CSF
    if ctx.ventricles is None:
        ctx.ventricles = np.zeros(g.shape, dtype=bool)
    return ctx


def _temporal_bump(anat: Anatomy, z: float) -> float:
    return float(bump((z - 0.32 * anat.height) / (0.28 * anat.height), 1.0))


def _outer_layers(ctx: SliceCtx, mods: Modifiers) -> None:
    """Radii of the inner table, outer table and skin at this height."""
    anat, geo, z = ctx.anat, ctx.geo, ctx.z
    tb = _temporal_bump(anat, z)
    skull = geo.skull_th * (F32(1) - F32(0.45 * tb) * geo.temporal_w)
    muscle = F32(anat.temporalis_mm * tb) * geo.temporal_w
    low = float(bump((z - 0.02 * anat.height) / (0.22 * anat.height), 1.0))
    nuchal = F32(14.0 * low) * geo.occipital_w
    face = F32(anat.face_mm * float(bump((z - 0.18 * anat.height) / (0.28 * anat.height)))) * geo.face_w
    s_in = F32(anat.profile(z, 0.0))
    s_sk = F32(anat.profile(z, anat.skull_mm))
    s_out = F32(anat.profile(z, anat.skull_mm + anat.scalp_mm))
    dent: np.ndarray | float = 0.0
    for f in mods.skull_dents:
        dent = dent + f(ctx)
    r_in = geo.r0 * s_in - dent
    r_sk = (geo.r0 + skull) * s_sk - dent
    r_out = (geo.r0 + skull + geo.scalp_th + muscle + nuchal + face) * s_out
    for f in mods.scalp_swelling:
        r_out = r_out + f(ctx)
    ctx.r_in, ctx.r_sk, ctx.r_out = r_in.astype(F32), r_sk.astype(F32), r_out.astype(F32)
    ctx.dc = (ctx.r_in - geo.r).astype(F32)


def _soft_tissue_and_bone(ctx: SliceCtx, mods: Modifiers, k: int) -> None:
    """Scalp, muscle, skull (tables + diploe), skull-base bone, and the cavity mask."""
    anat, geo, z, lab = ctx.anat, ctx.geo, ctx.z, ctx.lab
    assert (
        lab is not None
        and ctx.dc is not None
        and ctx.r_sk is not None
        and ctx.r_out is not None
        and ctx.r_in is not None
    )
    r = geo.r
    floor_depth = _carve_petrous(ctx, (F32(z) - geo.floor) / geo.floor_grad)
    ctx.floor_depth = floor_depth
    depth = np.minimum(ctx.dc, floor_depth)
    ctx.depth = depth
    cavity = depth > 0
    ctx.cavity = cavity

    head = r < ctx.r_out
    lab[head] = MUSCLE
    skin_depth = ctx.r_out - r
    lab[head & (skin_depth < 1.5)] = SKIN
    fat_layer = head & (skin_depth >= 1.5) & (skin_depth < 1.5 + anat.fat_mm)
    lab[fat_layer] = FAT
    z_sq = 0.2 * anat.height
    if z < z_sq:  # fat planes between the neck and masticator muscles
        lab[head & (skin_depth > 6) & (geo.phase_b > 1.3)] = FAT

    bone = (r < ctx.r_sk) & ~cavity
    if z < z_sq:
        shell = depth > -(geo.skull_th + 3.0)
        bone &= shell | geo.base_block
    for f in mods.skull_gaps:
        bone &= ~f(ctx)
    e = -ctx.dc  # distance outward from the inner table
    thick = ctx.r_sk - ctx.r_in
    vault = bone & (e >= 0) & (e <= thick + 0.5) & (floor_depth > -3)
    lab[bone] = BASE_BONE
    lab[bone & ((depth > -1.5) | (r > ctx.r_sk - 1.5))] = CORTICAL
    dipl = vault & (thick > 3.5) & (e > 0.3 * thick) & (e < 0.72 * thick)
    lab[vault & ~dipl] = CORTICAL
    lab[dipl] = DIPLOE
    lab[cavity] = CSF


def _carve_petrous(ctx: SliceCtx, depth: np.ndarray) -> np.ndarray:
    """Petrous pyramids: dense bone ridges between the middle and posterior fossae."""
    a, b, h = ctx.anat.cav_a, ctx.anat.cav_b, ctx.anat.height
    for s in (-1.0, 1.0):
        cap = Capsule((s * 0.18 * a, -0.02 * b, 0.2 * h), (s * 0.78 * a, -0.42 * b, 0.15 * h), 0.08 * a, 0.14 * a)
        win = ctx.geo.grid.window(*cap.centre(), cap.reach())
        if win is None:
            continue
        ex = cap.distance_excess(ctx.u[win], ctx.v[win], ctx.z)
        if ex is None:
            continue
        depth[win] = np.minimum(depth[win], ex)
    return depth


def _cerebrum(ctx: SliceCtx, mods: Modifiers) -> None:
    """Cortex, white matter and CSF-filled sulci of the cerebral hemispheres.

    The gyral pattern is a phase field ``phi = n*theta + delta(theta, z) + A*P(x, y, z)`` where
    ``P`` is a smooth random field (~8 mm correlation) that bends and spaces the sulci
    irregularly; a sulcus is where phi is close to a multiple of 2*pi, down to a depth drawn per
    sulcus (6-20 mm) and with a width drawn per sulcus.  Shallower secondary sulci lie halfway
    between, for about half of them.  The cortical ribbon (2.4-3.2 mm) lines the brain surface
    and every sulcus.  Only the cortical band is computed.
    """
    anat, geo, z, lab = ctx.anat, ctx.geo, ctx.z, ctx.lab
    assert lab is not None and ctx.depth is not None and ctx.cavity is not None
    ea = np.zeros_like(ctx.depth)
    for f in mods.extra_axial:
        t = f(ctx).astype(F32)
        ctx.extra_axial.append(t)
        ea = ea + t
    sas = F32(max(anat.sas_mm + mods.sas_add, 0.15))
    # The convexity has the full subarachnoid space; the brain lies almost on the skull-base
    # floors (basal cisterns are drawn separately), so only a thin layer separates it there.
    assert ctx.dc is not None and ctx.floor_depth is not None
    db = np.minimum(ctx.dc - sas - ea, ctx.floor_depth - F32(0.4) - F32(0.2) * sas)
    ctx.db = db
    brain = ctx.cavity & (db > 0)
    lab[brain] = WM
    band = np.flatnonzero(brain & (db < F32(22)))
    if band.size == 0:
        return
    dbb = db.ravel()[band]
    # Sulci run in from the convexity: their depth is measured radially from the inner table,
    # so the tangential cuts over the skull-base floors show cortex, not spokes.
    assert ctx.dc is not None
    dbr = (ctx.dc - sas - ea).ravel()[band]
    delta = np.zeros(band.size, dtype=F32)
    for i, (ac, as_, om, ph) in enumerate(anat.sulcal_coeffs):
        c, s = F32(np.cos(om * z + ph)), F32(np.sin(om * z + ph))
        delta += F32(ac) * c * geo.harm_cos[i].ravel()[band] + F32(as_) * s * geo.harm_sin[i].ravel()[band]
    w1, w2 = F32(np.cos(z / 23.0)), F32(np.sin(z / 23.0))
    bend = (w1 * geo.phase_a.ravel()[band] + w2 * geo.phase_b.ravel()[band]) * F32(2.2)
    n = F32(anat.n_sulci)
    rb = geo.r.ravel()[band]
    phi = n * geo.theta.ravel()[band] + delta + bend
    two_pi = F32(2 * np.pi)
    salt = F32(anat.sulcal_salt)
    scale = np.full(band.size, F32(anat.sulcal_width * mods.sulcal_scale), dtype=F32)
    for f in mods.sulcal_fields:
        scale = scale * np.broadcast_to(f(ctx), db.shape).ravel()[band]
    cortex = F32(anat.cortex_mm)
    gm = dbb < cortex
    csf = np.zeros(band.size, dtype=bool)
    for shift, depth_rng, width_k, presence in ((0.0, (6.0, 14.0), 1.0, 1.0), (0.5, (3.0, 6.0), 0.7, 0.55)):
        kidx = np.round(phi / two_pi - F32(shift))
        off = np.abs(phi - two_pi * (kidx + F32(shift))) / n * rb  # arc distance to the sulcus (mm)
        h = hash01(kidx, salt + F32(11 * shift))
        deep = F32(depth_rng[0]) + F32(depth_rng[1]) * h
        width = (
            scale
            * F32(width_k)
            * (F32(0.5) + F32(1.8) * (h * F32(7.0) % F32(1.0)) ** 2)
            * (F32(1) - F32(0.5) * np.clip(dbr / deep, 0, 1))
        )
        on = (h * F32(3.0) % F32(1.0)) < F32(presence)
        half = width * F32(0.5)
        csf |= on & (off < half) & (dbr < deep)
        gm |= on & (off < half + cortex) & (dbr < deep + F32(0.7) * cortex)
    flat = lab.reshape(-1)
    flat[band[gm]] = GM
    flat[band[csf]] = CSF


def _brainstem_section(anat: Anatomy, z: float) -> tuple[float, float, float] | None:
    """(v centre, half width, half depth) of the cord/medulla/pons/midbrain at height z."""
    h, sx, sy = anat.height, anat.sx, anat.sy
    knots = [  # z/H, v (template mm), half width, half depth
        (-0.3, -25.0, 5.5, 5.0),
        (0.0, -22.0, 7.5, 7.0),
        (0.1, -18.0, 10.0, 9.0),
        (0.16, -16.0, 15.0, 12.0),
        (0.28, -14.0, 15.5, 12.5),
        (0.33, -11.0, 13.5, 11.0),
        (0.42, -10.0, 13.0, 10.0),
    ]
    zs = np.array([k[0] * h for k in knots])
    if z < zs[0] or z > zs[-1]:
        return None
    vc = float(np.interp(z, zs, [k[1] for k in knots])) * sy
    hw = float(np.interp(z, zs, [k[2] for k in knots])) * sx
    hd = float(np.interp(z, zs, [k[3] for k in knots])) * sy
    return vc, hw, hd


def _posterior_fossa(ctx: SliceCtx) -> None:
    """Cerebellum (cortex with folia around a white core), vermis, brainstem, cord, 4th ventricle."""
    anat, geo, z, lab = ctx.anat, ctx.geo, ctx.z, ctx.lab
    assert lab is not None and ctx.db is not None and ctx.cavity is not None
    h, sx, sy = anat.height, anat.sx, anat.sy
    brain = ctx.cavity & (ctx.db > 0)
    cereb = brain & geo.behind_petrous & (F32(z) < geo.z_tent)
    if cereb.any():
        cu, cv = ctx.u, ctx.v - F32(-0.35 * anat.cav_b)
        rr = np.sqrt(cu * cu + cv * cv)
        ang = np.arctan2(cu, cv)
        bend = F32(2.5) * (F32(np.cos(z / 17.0)) * geo.phase_a + F32(np.sin(z / 17.0)) * geo.phase_b)
        folia = rr * F32(2 * np.pi / 4.5) + F32(1.5) * np.cos(F32(3) * ang + F32(z * 0.07)) + bend
        line = np.cos(folia) > F32(0.94)
        lab[cereb] = CB_GM
        core = cereb & (ctx.db > 9 * sx) & (np.abs(ctx.u) > 5 * sx)
        lab[core] = CB_WM
        lab[cereb & line & (ctx.db < 9 * sx) & (ctx.db > 0.6)] = CSF
        # Cisterna magna: a CSF pocket behind and below the vermis (size varies a lot).
        _paint_ellipsoid(ctx, Ellipsoid(0.0, -0.78 * anat.cav_b, 0.06 * h, 7 * sx, 9 * sy, 0.09 * h), CSF)
        # Tentorium: dura along the tent surface (distance in plane ~ |z - z_tent| / |grad|).
        tent = (
            ctx.cavity
            & geo.behind_petrous
            & (np.abs(F32(z) - geo.z_tent) < F32(0.3))
            & (ctx.v < F32(-0.08 * anat.cav_b))
        )
        lab[tent] = DURA
    sec = _brainstem_section(anat, z)
    if sec is not None:
        vc, hw, hd = sec
        ell = Ellipsoid(0.0, vc, z, hw, hd, 1e9)
        win = ctx.window(0.0, vc, max(hw, hd) + 6)
        if win is not None:
            rho2 = ell.rho2(ctx.uw[win], ctx.vw[win], z)
            assert rho2 is not None
            sub = lab[win]
            cav = ctx.cavity[win]
            ang = np.arctan2(ctx.uw[win], ctx.vw[win] - F32(vc))
            ring = cav & (rho2 < F32(1.12) + F32(0.1) * np.cos(ang) ** 2) & (sub != AIR)
            sub[ring & (sub != DURA)] = CSF  # pre-pontine / perimesencephalic cistern
            sub[cav & (rho2 < 1.0)] = CORD if z < 0 else STEM
        # Fourth ventricle, behind the pons.
        if 0.12 * h < z < 0.3 * h:
            fourth = Ellipsoid(0.0, vc - hd - 3.5 * sy, 0.21 * h, 6.0 * sx, 3.0 * sy, 0.09 * h)
            _paint_ellipsoid(ctx, fourth, CSF, ventricle=True)


def _paint_ellipsoid(
    ctx: SliceCtx,
    ell: Ellipsoid,
    label: int,
    *,
    ventricle: bool = False,
    within: np.ndarray | None = None,
    limit: float = 1.0,
) -> np.ndarray | None:
    """Label the part of an ellipsoid (in warped template coordinates) inside the cavity."""
    assert ctx.lab is not None and ctx.cavity is not None
    if abs(ctx.z - ell.z) >= ell.c:
        return None
    win = ctx.window(ell.u, ell.v, ell.reach())
    if win is None:
        return None
    rho2 = ell.rho2(ctx.uw[win], ctx.vw[win], ctx.z)
    if rho2 is None:
        return None
    inside = (rho2 < F32(limit)) & ctx.cavity[win]
    if within is not None:
        inside &= within[win]
    ctx.lab[win][inside] = label
    if ventricle:
        _mark_ventricle(ctx, win, inside)
    return inside


def _mark_ventricle(ctx: SliceCtx, win: tuple[slice, slice], inside: np.ndarray) -> None:
    if ctx.ventricles is None:
        ctx.ventricles = np.zeros(ctx.u.shape, dtype=bool)
    ctx.ventricles[win] |= inside


def _deep_grey(ctx: SliceCtx) -> None:
    """Caudate heads, lentiform nuclei, thalami and insular cortex (template mm, scaled).

    Their HU fades in over the outer third of each radius: with 5 mm slices, a nucleus' edge is
    always partly averaged with the white matter around it.
    """
    anat = ctx.anat
    sx, sy, sz, zm = anat.sx, anat.sy, anat.sz, anat.z_monro
    brain = ctx.brain()
    for s in (-1.0, 1.0):
        for cu, cv, cz, ra, rb, rc, turn, label in (
            (11.5, 15.0, 7.0, 5.5, 8.5, 11.0, 0.0, DEEP_GM),  # caudate head
            (23.0, 1.0, 0.0, 6.0, 14.0, 10.0, s * 0.18, DEEP_GM),  # lentiform nucleus
            (9.5, -11.0, 2.0, 8.0, 11.0, 10.0, s * 0.2, DEEP_GM),  # thalamus
            (34.5, 2.0, -3.0, 3.0, 19.0, 13.0, s * 0.12, GM),  # insular cortex
        ):
            ell = Ellipsoid(s * cu * sx, cv * sy, zm + cz * sz, ra * sx, rb * sy, rc * sz, turn)
            _paint_soft(ctx, ell, label, brain)


def _paint_soft(ctx: SliceCtx, ell: Ellipsoid, label: int, within: np.ndarray) -> None:
    """Label the core of an ellipsoid and record a soft-edged HU blend towards its tissue."""
    assert ctx.lab is not None
    if abs(ctx.z - ell.z) >= ell.c:
        return
    win = ctx.window(ell.u, ell.v, ell.reach())
    if win is None:
        return
    rho2 = ell.rho2(ctx.uw[win], ctx.vw[win], ctx.z)
    if rho2 is None:
        return
    inside = (rho2 < 1) & within[win]
    if not inside.any():
        return
    weight = np.clip((F32(1) - rho2) / F32(0.45), 0, 1) * inside
    ctx.lab[win][inside & (rho2 < F32(0.7))] = label
    ctx.soft.append((win, weight.astype(F32), label))


def _cisterns_and_fissures(ctx: SliceCtx, mods: Modifiers) -> None:
    """Interhemispheric fissure with the falx, Sylvian fissures, suprasellar and quadrigeminal cisterns."""
    anat, z, lab = ctx.anat, ctx.z, ctx.lab
    assert lab is not None and ctx.db is not None and ctx.cavity is not None
    sx, sy, sz, zm, h = anat.sx, anat.sy, anat.sz, anat.z_monro, anat.height
    # Interhemispheric fissure: full length above the corpus callosum, only in front of and
    # behind it lower down; none in the posterior fossa.
    front: float | None
    back: float | None
    if z > zm + 32 * sz:
        front, back = -1e9, 1e9
    elif z > zm + 10 * sz:
        front, back = 30 * sy, -34 * sy
    elif z > 0.3 * h:
        front, back = 24 * sy, -40 * sy
    else:
        front = back = None
    if front is not None and back is not None:
        px = 0.55 * ctx.geo.grid.spacing  # keep thin lines at least a pixel wide (no dashes)
        width = F32(max(0.35 + 0.45 * anat.sulcal_width * mods.sulcal_scale, 2 * px))
        region = (
            ctx.cavity
            & ((ctx.vw > F32(front)) | (ctx.vw < F32(back)))
            & ~((lab == CB_GM) | (lab == CB_WM) | (lab == DURA))
        )
        au = np.abs(ctx.uw)
        lab[region & (au < width + F32(anat.cortex_mm)) & (ctx.db > 0)] = GM
        lab[region & (au < width)] = CSF
        lab[region & (au < F32(px))] = DURA
        if anat.falx_calc is not None and z > zm + 25 * sz:
            rad = anat.falx_calc
            plaque = region & (au < F32(0.8)) & (np.abs(ctx.vw - F32(20 * sy)) < F32(rad))
            lab[plaque] = CALC
    # Sylvian fissures: a transverse stem from the suprasellar cistern between frontal and
    # temporal lobes, then a sheet running front-to-back lateral to the insula, opening to the
    # convexity; cortex lines both sides.
    w = max(anat.sulcal_width, 0.7) * mods.sylvian_scale
    for s in (-1.0, 1.0):
        sheets = (
            Ellipsoid(s * 27 * sx, 11 * sy, 0.37 * h, 16 * sx, 1.2 * w + 0.4, 0.06 * h, s * 0.15),
            Ellipsoid(s * 38 * sx, 3 * sy, zm - 5 * sz, 1.1 * w + 0.4, 19 * sy, 13 * sz, s * -0.15),
            Ellipsoid(s * 47 * sx, -8 * sy, zm - 2 * sz, 8 * sx, 1.0 * w + 0.4, 8 * sz, s * -0.5),
        )
        for sheet in sheets:
            lining = Ellipsoid(
                sheet.u,
                sheet.v,
                sheet.z,
                sheet.a + (anat.cortex_mm if sheet.a < 5 else 0),
                sheet.b + (anat.cortex_mm if sheet.b < 5 else 0),
                sheet.c,
                sheet.turn,
            )
            _paint_ellipsoid(ctx, lining, GM, within=ctx.brain())
            _paint_ellipsoid(ctx, sheet, CSF)
    # Suprasellar (pentagon-ish) and quadrigeminal cisterns.
    _paint_ellipsoid(ctx, Ellipsoid(0.0, 7 * sy, 0.36 * h, 11 * sx, 8 * sy, 0.05 * h), CSF)
    _paint_ellipsoid(ctx, Ellipsoid(0.0, -25 * sy, 0.39 * h, 7 * sx, 5 * sy, 0.05 * h), CSF)


def _ventricle_shapes(anat: Anatomy, mods: Modifiers, inflate: float = 0.0) -> list[tuple[Ellipsoid | Capsule, int]]:
    """Lateral, third and temporal-horn shapes (template mm scaled), with the side they belong to.

    Normal adult lateral ventricles: frontal horns ~ 8-12 mm wide each, bodies ~ 8 mm, atria
    ~ 15 mm; temporal horns are slits <= 2-3 mm; the third ventricle is <= 5 mm wide
    (larger with age through ``vent_scale``).  ``inflate`` adds mm to every radius.
    """
    sx, sy, sz, zm = anat.sx, anat.sy, anat.sz, anat.z_monro
    shapes: list[tuple[Ellipsoid | Capsule, int]] = []
    for side, s in ((0, -1.0), (1, 1.0)):
        vs = anat.vent_scale * mods.vent_scale * mods.vent_side[side]
        wide = vs
        grow = 1.0 + 0.35 * (vs - 1.0)
        th = mods.temporal_horn * (1.0 + 0.5 * (vs - 1.0))
        i = inflate
        shapes += [
            (
                Ellipsoid(
                    s * (1.8 + 4.0 * wide) * sx,
                    19 * sy,
                    zm + 9 * sz,
                    4.2 * wide * sx + i,
                    12 * grow * sy + i,
                    8 * grow * sz + i,
                    s * -0.35,
                ),
                side,
            ),
            (
                Capsule(
                    (s * (3 + 4 * wide) * sx, 10 * sy, zm + 15 * sz),
                    (s * (6 + 5 * wide) * sx, -19 * sy, zm + 17 * sz),
                    3.6 * wide * sx + i,
                    4.2 * wide * sx + i,
                ),
                side,
            ),
            (
                Ellipsoid(
                    s * (15 + 4 * wide) * sx,
                    -25 * sy,
                    zm + 8 * sz,
                    5.5 * wide * sx + i,
                    8 * grow * sy + i,
                    9 * grow * sz + i,
                    s * 0.35,
                ),
                side,
            ),
            (
                Capsule(
                    (s * (16 + 3 * wide) * sx, -29 * sy, zm + 5 * sz),
                    (s * (12 + 2 * wide) * sx, -48 * grow * sy, zm + 3 * sz),
                    3.2 * wide * sx + i,
                    1.3 * wide * sx + i,
                ),
                side,
            ),
            (
                Capsule(
                    (s * (21 + 3 * wide) * sx, -26 * sy, zm + 1 * sz),
                    (s * 29 * sx, -6 * sy, zm - 14 * sz),
                    2.0 * th * sx + i,
                    1.4 * th * sx + i,
                ),
                side,
            ),
            (
                Capsule(
                    (s * 29 * sx, -6 * sy, zm - 14 * sz),
                    (s * 28 * sx, 12 * sy, zm - 20 * sz),
                    1.4 * th * sx + i,
                    1.0 * th * sx + i,
                ),
                side,
            ),
        ]
    t3 = anat.vent_scale * mods.vent_scale * mods.third_vent
    shapes.append(
        (Ellipsoid(0.0, -3 * sy, zm - 3 * sz, 1.7 * t3 * sx + inflate, 14 * sy + inflate, 9 * sz + inflate), -1)
    )
    return shapes


def ventricle_mask(ctx: SliceCtx, mods: Modifiers, inflate: float = 0.0) -> np.ndarray:
    """Bool crop mask of the ventricles (as rendered) inflated by ``inflate`` mm, inside the cavity."""
    assert ctx.cavity is not None
    out = np.zeros(ctx.u.shape, dtype=bool)
    for shape, _ in _ventricle_shapes(ctx.anat, mods, inflate):
        if isinstance(shape, Ellipsoid):
            if abs(ctx.z - shape.z) >= shape.c:
                continue
            win = ctx.window(shape.u, shape.v, shape.reach())
            if win is None:
                continue
            rho2 = shape.rho2(ctx.uw[win], ctx.vw[win], ctx.z)
            if rho2 is not None:
                out[win] |= rho2 < 1
        else:
            win = ctx.window(*shape.centre(), shape.reach())
            if win is None:
                continue
            ex = shape.distance_excess(ctx.uw[win], ctx.vw[win], ctx.z)
            if ex is not None:
                out[win] |= ex < 0
    return out & ctx.cavity


def _ventricles(ctx: SliceCtx, mods: Modifiers) -> None:
    """Lateral (frontal horns, bodies, atria, occipital and temporal horns) and third ventricles."""
    assert ctx.lab is not None
    vent = ventricle_mask(ctx, mods)
    septum = np.abs(ctx.uw) < F32(1.0)
    vent &= ~septum | (ctx.vw < F32(-8 * ctx.anat.sy))  # septum pellucidum between frontal horns/bodies
    third = np.abs(ctx.uw) < F32(1.0)
    vent |= (
        third
        & ventricle_mask(ctx, Modifiers(vent_scale=mods.vent_scale, third_vent=mods.third_vent))
        & (np.abs(ctx.vw) < F32(16 * ctx.anat.sy))
    )
    ctx.lab[vent] = CSF
    if ctx.ventricles is None:
        ctx.ventricles = vent
    else:
        ctx.ventricles |= vent


def _normal_calcifications(ctx: SliceCtx) -> None:
    """Pineal gland (midline, behind the third ventricle) and choroid plexus glomus in the atria."""
    anat = ctx.anat
    sx, sy, sz, zm = anat.sx, anat.sy, anat.sz, anat.z_monro
    if anat.pineal_calc is not None:
        rad = anat.pineal_calc
        _paint_ellipsoid(ctx, Ellipsoid(0.0, -21 * sy, zm + 1 * sz, rad, rad * 1.2, rad * 1.5), CALC)
    if anat.choroid_calc is not None:
        rad = anat.choroid_calc
        for s in (-1.0, 1.0):
            vs = anat.vent_scale
            _paint_ellipsoid(
                ctx, Ellipsoid(s * (15 + 4 * vs) * sx, -26 * sy, zm + 8 * sz, rad, rad * 1.3, rad * 1.6), CALC
            )


def _skull_base(ctx: SliceCtx, k: int) -> None:
    """Air in the paranasal sinuses, mastoid cells and ear canals; dense petrous bone."""
    anat, z, lab = ctx.anat, ctx.z, ctx.lab
    assert lab is not None and ctx.r_sk is not None and ctx.cavity is not None
    a, b, h = anat.cav_a, anat.cav_b, anat.height
    if z > 0.55 * h:
        return
    fs, ss, ms, mast = anat.sinus_scale
    bone = np.isin(lab, BONE_LABELS)
    fine = ctx.tex("fine", k)
    # Petrous pyramids (dense), with the inner ear as a small soft-tissue dot.
    for s in (-1.0, 1.0):
        cap = Capsule((s * 0.18 * a, -0.02 * b, 0.2 * h), (s * 0.78 * a, -0.42 * b, 0.15 * h), 0.08 * a, 0.14 * a)
        win = ctx.geo.grid.window(*cap.centre(), cap.reach())
        if win is not None:
            ex = cap.distance_excess(ctx.u[win], ctx.v[win], z)
            if ex is not None:
                sub = lab[win]
                sub[(ex < 0) & (sub != AIR) & ~ctx.cavity[win]] = PETROUS
    sinuses: list[tuple[Ellipsoid, float]] = []
    if fs > 0:
        sinuses.append(
            (Ellipsoid(0.0, b + 0.5 * anat.skull_mm, 0.42 * h, 15 * fs * anat.sx, 4.5, 9 * fs * anat.sz), 2.0)
        )
    sinuses += [
        (Ellipsoid(0.0, 0.72 * b, 0.24 * h, 0.17 * a, 0.24 * b, 0.1 * h), 0.25),  # ethmoid cells
        (Ellipsoid(0.0, 0.28 * b, 0.18 * h, 0.2 * a * ss, 0.16 * b * ss, 0.08 * h), 2.0),  # sphenoid
        (Ellipsoid(0.0, 0.82 * b, 0.02 * h, 0.12 * a, 0.26 * b, 0.14 * h), 0.6),  # nasal cavity
        (Ellipsoid(0.0, 0.46 * b, -0.06 * h, 0.16 * a, 0.12 * b, 0.08 * h), 2.0),  # nasopharynx
        (Ellipsoid(0.36 * a, 0.78 * b, -0.02 * h, 0.22 * a * ms, 0.2 * b * ms, 0.12 * h * ms), 2.0),  # maxillary
        (Ellipsoid(-0.36 * a, 0.78 * b, -0.02 * h, 0.22 * a * ms, 0.2 * b * ms, 0.12 * h * ms), 2.0),
        (Ellipsoid(0.8 * a, -0.3 * b, 0.08 * h, 0.2 * a * mast, 0.22 * b * mast, 0.11 * h), 0.1),  # mastoid cells
        (Ellipsoid(-0.8 * a, -0.3 * b, 0.08 * h, 0.2 * a * mast, 0.22 * b * mast, 0.11 * h), 0.1),
    ]
    for ell, cell in sinuses:
        if abs(z - ell.z) >= ell.c:
            continue
        win = ctx.geo.grid.window(ell.u, ell.v, ell.reach())
        if win is None:
            continue
        rho2 = ell.rho2(ctx.u[win], ctx.v[win], z)
        if rho2 is None:
            continue
        sub = lab[win]
        host = bone[win] | (sub == MUSCLE)
        air = (rho2 < 1) & host
        if cell < 1.0:  # cells separated by thin bony septa
            air &= fine[win] > F32(cell - 0.9)
        sub[air] = SINUS_AIR
    for s in (-1.0, 1.0):  # zygomatic arches and mandibular condyles (bone in the soft tissue)
        for cap in (
            Capsule((s * 0.62 * a, 0.72 * b, 0.07 * h), (s * 0.9 * a, 0.05 * b, 0.07 * h), 3.0, 2.5),
            Capsule((s * 0.78 * a, -0.05 * b, 0.07 * h), (s * 0.8 * a, 0.02 * b, -0.3 * h), 3.5, 3.0),
        ):
            win = ctx.geo.grid.window(*cap.centre(), cap.reach())
            if win is None:
                continue
            ex = cap.distance_excess(ctx.u[win], ctx.v[win], z)
            if ex is not None:
                sub = lab[win]
                sub[(ex < 0) & ((sub == MUSCLE) | (sub == FAT))] = BASE_BONE
                sub[(ex < 0) & (ex > -1.2) & (sub == BASE_BONE)] = CORTICAL
    for s in (-1.0, 1.0):  # external auditory canals
        cap = Capsule((s * 0.62 * a, -0.2 * b, 0.1 * h), (s * 1.2 * a, -0.18 * b, 0.1 * h), 3.5, 4.0)
        win = ctx.geo.grid.window(*cap.centre(), cap.reach())
        if win is not None:
            ex = cap.distance_excess(ctx.u[win], ctx.v[win], z)
            if ex is not None:
                sub = lab[win]
                sub[(ex < 0) & (sub != AIR) & ~ctx.cavity[win]] = SINUS_AIR


def _orbits(ctx: SliceCtx) -> None:
    """Orbits: fat cone, globe (vitreous + lens), optic nerve; the globes bulge past the bone."""
    anat, z, lab = ctx.anat, ctx.z, ctx.lab
    assert lab is not None
    a, b, h = anat.cav_a, anat.cav_b, anat.height
    zo = 0.24 * h
    if abs(z - zo) > 0.12 * h:
        return
    for s in (-1.0, 1.0):
        cone = Ellipsoid(s * 0.44 * a, 0.9 * b, zo, 0.27 * a, 0.3 * b, 0.1 * h, s * 0.25)
        _paint_region(ctx, cone, ORBIT_FAT, lambda sub: sub != AIR)
        nerve = Capsule((s * 0.44 * a, 1.0 * b, zo), (s * 0.15 * a, 0.62 * b, zo + 0.02 * h), 2.4, 2.0)
        win = ctx.geo.grid.window(*nerve.centre(), nerve.reach())
        if win is not None:
            ex = nerve.distance_excess(ctx.u[win], ctx.v[win], z)
            if ex is not None:
                sub = lab[win]
                sub[(ex < 0) & (sub == ORBIT_FAT)] = NERVE
        # Globe (~24 mm across) with its front just behind the lids at the face surface.
        cg = (s * 0.44 * a, 0.93 * b + 0.3 * anat.face_mm)
        _paint_region(ctx, Ellipsoid(cg[0], cg[1], zo, 13.5, 13.5, 12.5), SKIN, lambda sub: sub == AIR)  # lids
        _paint_region(
            ctx, Ellipsoid(cg[0], cg[1], zo, 11.5, 11.5, 11.5), VITREOUS, lambda sub: np.ones(sub.shape, bool)
        )
        _paint_region(ctx, Ellipsoid(cg[0], cg[1] + 9.0, zo, 4.5, 1.8, 4.0), LENS, lambda sub: np.ones(sub.shape, bool))


def _paint_region(ctx: SliceCtx, ell: Ellipsoid, label: int, where: Callable[[np.ndarray], np.ndarray]) -> None:
    assert ctx.lab is not None
    if abs(ctx.z - ell.z) >= ell.c:
        return
    win = ctx.geo.grid.window(ell.u, ell.v, ell.reach())
    if win is None:
        return
    rho2 = ell.rho2(ctx.u[win], ctx.v[win], ctx.z)
    if rho2 is None:
        return
    sub = ctx.lab[win]
    sub[(rho2 < 1) & where(sub)] = label


def hu_table(anat: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """(HU, texture amplitude) per label for this head."""
    t = anat.hu
    hu = np.zeros(N_LABELS, dtype=F32)
    amp = np.zeros(N_LABELS, dtype=F32)
    values = {
        AIR: (-1000, 0),
        SKIN: (t["skin"], 4),
        FAT: (t["fat"], 8),
        MUSCLE: (t["muscle"], 4),
        CORTICAL: (t["cortical"], 90),
        DIPLOE: (t["diploe"], 140),
        CSF: (t["csf"], 1),
        GM: (t["gm"], 1.2),
        WM: (t["wm"], 1.2),
        DEEP_GM: (t["deep_gm"], 1.2),
        STEM: (t["stem"], 1.2),
        CB_GM: (t["gm"] - 1.0, 1.2),
        CB_WM: (t["wm"] + 2.0, 1.2),
        DURA: (t["dura"], 2),
        PETROUS: (t["petrous"], 120),
        SINUS_AIR: (-995, 3),
        ORBIT_FAT: (t["orbit_fat"], 6),
        VITREOUS: (t["vitreous"], 1),
        LENS: (t["lens"], 3),
        CALC: (t["calc"], 30),
        HOLDER: (t["holder"], 10),
        FOAM: (t["foam"], 25),
        BASE_BONE: (t["base_bone"], 160),
        CORD: (t["stem"], 1),
        NERVE: (t["muscle"] - 8, 2),
    }
    for label, (value, a) in values.items():
        hu[label], amp[label] = value, a
    return hu, amp


def _to_hu(ctx: SliceCtx, k: int) -> np.ndarray:
    assert ctx.lab is not None
    table, amp = hu_table(ctx.anat)
    hu = table[ctx.lab] + amp[ctx.lab] * ctx.tex("fine", k)
    soft_ok = (ctx.lab == WM) | (ctx.lab == DEEP_GM) | (ctx.lab == GM)
    for win, weight, label in ctx.soft:
        w = weight * soft_ok[win]
        sub = hu[win]
        sub += w * (table[label] - sub)
    return hu.astype(F32)


def _beam_hardening(ctx: SliceCtx) -> None:
    """Dark streaks between the petrous bones (the Hounsfield bar) at the skull-base slices.

    Typical depth of the artefact in unenhanced head CT: 10-30 HU below the surrounding brain,
    a few mm wide, running between the dense petrous pyramids across the pons/cerebellum.
    """
    anat, z = ctx.anat, ctx.z
    h = anat.height
    strength = float(bump((z - 0.17 * h) / (0.09 * h)))
    if strength <= 0 or ctx.hu is None or ctx.lab is None:
        return
    a, b = anat.cav_a, anat.cav_b
    depth = F32(strength * (12 + 10 * ((anat.kernel == "sharp") + 0.5 * (anat.kernel == "standard"))))
    soft = (ctx.lab != AIR) & ~np.isin(ctx.lab, BONE_LABELS)
    for dv, width in ((-0.2 * b, 3.5), (-0.12 * b, 2.0), (-0.3 * b, 2.5)):
        dist = np.abs(ctx.v - F32(dv) + F32(0.08) * ctx.u * F32(np.sign(dv + 0.2 * b)))
        fall = np.exp(-((dist / F32(width)) ** 2)) * np.clip(F32(1) - np.abs(ctx.u) / F32(0.85 * a), 0, 1)
        ctx.hu -= depth * fall * soft
