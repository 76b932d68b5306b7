"""Disorders the phantom can put into a healthy head: registry, sizes, urgency, and rendering.

Each disorder is a function ``(anatomy, size_class, rng) -> LesionPlan``.  A plan changes the
healthy rendering (``Modifiers``: mass effect, bigger ventricles, an extra-axial collection
pushing the brain in, a dent or gap in the skull) and paints HU onto the rendered slice; every
paint returns the voxels it made abnormal.  For diffuse disorders the mask is what differs
from the same head rendered healthy (see each plan's ``compare``).

Urgency follows the clinical meaning (what a radiologist would phone about now):

* high: needs treatment within hours (EDH; acute SDH, IPH, contusion or tumour large enough
  for mass effect; SAH; IVH; acute infarct within the treatment window; acute hydrocephalus;
  depressed skull fracture; pneumocephalus with a fracture);
* medium: needs attention soon but not an emergency (small acute SDH/IPH/contusion, small
  and medium tumours, linear skull fracture, few bubbles of air, chronic SDH without marked
  mass effect);
* low: no acute action (chronic infarct, lacunes, atrophy, white-matter disease, arachnoid
  cyst, pathological calcification).

Size classes (``small`` / ``medium`` / ``large``) are stated in mm per disorder; even small
lesions are >= ~8 mm across so that they still cover >= 4 pixels at 128 x 128.  Disorders
for which size makes no sense (diffuse: hydrocephalus, atrophy) have the one class ``large``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isl_rt.io.phantom._anatomy import (
    BONE_LABELS,
    CSF,
    DEEP_GM,
    GM,
    MUSCLE,
    WM,
    Anatomy,
    Modifiers,
    SliceCtx,
    Warp,
    cavity_depth_at,
    inner_radius0,
    ventricle_mask,
)
from isl_rt.io.phantom._geometry import F32, bump, wrap_pi

SIZE_CLASSES = ("small", "medium", "large")
SLAB_REACH = 2.0  # mm of a 5 mm slab on each side of the slice plane that partial volume shows
URGENCIES = ("high", "medium", "low")

Paint = Callable[[SliceCtx], np.ndarray]
Compare = Callable[[SliceCtx, SliceCtx], np.ndarray]


@dataclass(frozen=True)
class DisorderSpec:
    """One disorder type the phantom can generate.

    ``urgency`` is the urgency of the type in general; ``urgency_by_size`` overrides it per size
    class (use :meth:`urgency_for`).  ``sizes`` are the size classes it comes in, ``size_mm``
    what they mean.  ``hu_range`` bounds the median HU over the lesion mask in the written
    image (after partial volume, blur and noise); ``description`` cites the typical HU.
    """

    name: str
    urgency: str
    sizes: tuple[str, ...]
    description: str
    hu_range: tuple[float, float]
    size_mm: Mapping[str, str] = field(default_factory=dict)
    urgency_by_size: Mapping[str, str] = field(default_factory=dict)

    def urgency_for(self, size_class: str) -> str:
        return self.urgency_by_size.get(size_class, self.urgency)


@dataclass
class LesionPlan:
    """How one disorder changes one head: modifiers before rendering, paints after."""

    size_class: str
    urgency: str
    modifiers: Modifiers
    paints: list[Paint]
    params: dict[str, Any]
    compare: Compare | None = None


# ---------------------------------------------------------------------------------------------
# Helpers shared by the disorders.


def _hu_of(anat: Anatomy, tissue: str) -> float:
    return float(anat.hu[tissue])


def _empty(ctx: SliceCtx) -> np.ndarray:
    return np.zeros(ctx.u.shape, dtype=bool)


def _surface_point(anat: Anatomy, theta: float, depth: float, z: float) -> tuple[float, float]:
    """Head-frame (u, v) at ``depth`` mm inside the inner table in direction theta at height z."""
    r = float(inner_radius0(anat, theta)) * anat.profile(z, 0.0) - depth
    return r * float(np.sin(theta)), r * float(np.cos(theta))


def _lateral_theta(rng: np.random.Generator, spread: tuple[float, float] = (50.0, 130.0)) -> float:
    """A direction towards the left or right convexity (rad from anterior)."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    return side * float(np.deg2rad(rng.uniform(*spread)))


def _shift_warp_radius(distance: float, shift: float) -> float:
    """Radius of added volume that moves tissue ``distance`` mm away by ``shift`` mm."""
    shift = min(shift, 0.9 * distance)
    return float(np.cbrt(distance**3 - (distance - shift) ** 3))


@dataclass(frozen=True)
class Blob:
    """An irregular ellipsoid in the head frame: radii modulated by a few angular harmonics."""

    u: float
    v: float
    z: float
    a: float
    b: float
    c: float
    wobble: tuple[tuple[int, float, float], ...] = ()
    turn: float = 0.0

    @staticmethod
    def draw(
        rng: np.random.Generator,
        centre: tuple[float, float, float],
        radius: float,
        *,
        elong: float = 0.25,
        irregular: float = 0.12,
        zscale: float = 1.0,
    ) -> Blob:
        e = 1.0 + rng.uniform(-elong, elong)
        wob = tuple((k, float(rng.uniform(0, irregular)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 5))
        return Blob(
            centre[0],
            centre[1],
            centre[2],
            radius * e,
            radius / e,
            radius * zscale * rng.uniform(0.8, 1.1),
            wob,
            float(rng.uniform(0, np.pi)),
        )

    def rho(self, ctx: SliceCtx, grow: float = 1.0) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """(window, normalised radius) on this slice; rho < 1 inside.  None if not cut.

        A 5 mm slice averages its whole slab: a lesion within ~2 mm of the slice plane still
        shows on it (smaller), so z distances are shortened by ``SLAB_REACH`` mm.
        """
        dz_mm = max(abs(ctx.z - self.z) - SLAB_REACH, 0.0)
        dz = dz_mm / (self.c * grow)
        if abs(dz) >= 1.0:
            return None
        reach = max(self.a, self.b) * grow * (1 + sum(w[1] for w in self.wobble)) + 1
        win = ctx.geo.grid.window(self.u, self.v, reach)
        if win is None:
            return None
        du, dv = ctx.u[win] - F32(self.u), ctx.v[win] - F32(self.v)
        ct, st = F32(np.cos(self.turn)), F32(np.sin(self.turn))
        pu, pv = ct * du + st * dv, -st * du + ct * dv
        ang = np.arctan2(pv, pu)
        mod = np.ones_like(ang)
        for k, amp, ph in self.wobble:
            mod = mod + F32(amp) * np.cos(F32(k) * ang + F32(ph + 0.9 * dz))
        rho = np.sqrt((pu / F32(self.a * grow)) ** 2 + (pv / F32(self.b * grow)) ** 2 + F32(dz * dz)) / mod
        return win, rho.astype(F32)

    def as_dict(self) -> dict[str, float]:
        return {"u": self.u, "v": self.v, "z": self.z, "radii": (self.a, self.b, self.c)}  # type: ignore[dict-item]


def _set_hu(
    ctx: SliceCtx, win: tuple[slice, slice], where: np.ndarray, value: float | np.ndarray, texture: float = 2.0
) -> np.ndarray:
    """Write HU (plus a little texture) on ``where`` inside ``win``; return the crop mask."""
    assert ctx.hu is not None
    sub = ctx.hu[win]
    val = np.broadcast_to(np.asarray(value, dtype=F32), where.shape)
    tex = ctx.tex("coarse", ctx.k)[win]
    sub[where] = val[where] + F32(texture) * tex[where]
    out = _empty(ctx)
    out[win] = where
    return out


def _blend_hu(
    ctx: SliceCtx, win: tuple[slice, slice], weight: np.ndarray, value: float, allowed: np.ndarray
) -> np.ndarray:
    """Soft-edged change: HU moves towards ``value`` by ``weight`` (0..1) on allowed voxels."""
    assert ctx.hu is not None
    w = weight * allowed
    sub = ctx.hu[win]
    sub += w * (F32(value) - sub)
    out = _empty(ctx)
    out[win] = w > 0.5
    return out


def _brain_labels(ctx: SliceCtx, win: tuple[slice, slice] | None = None) -> np.ndarray:
    assert ctx.lab is not None
    lab = ctx.lab if win is None else ctx.lab[win]
    return (lab >= GM) & (lab <= 12)


def _deep_point(
    anat: Anatomy, rng: np.random.Generator, radius: float, *, zlo: float = -8, zhi: float = 35, depth_lo: float = 12.0
) -> tuple[float, float, float]:
    """A point in the cerebral white matter at least ``radius + depth_lo`` mm from the inner table."""
    for _ in range(200):
        theta = float(rng.uniform(-np.pi, np.pi))
        z = anat.z_monro + float(rng.uniform(zlo, zhi)) * anat.sz
        depth = radius + depth_lo + float(rng.uniform(0, 15))
        u, v = _surface_point(anat, theta, depth, z)
        if abs(u) > radius + 4 and cavity_depth_at(anat, u, v, z) > radius + 6:
            return u, v, z
    return 30.0 * anat.sx, 10.0 * anat.sy, anat.z_monro + 10.0 * anat.sz


def _convexity_thickness(
    anat: Anatomy,
    theta0: float,
    z0: float,
    thick: float,
    half_angle: float,
    half_height: float,
    power: float,
    side: float | None,
) -> Callable[[SliceCtx], np.ndarray]:
    """Thickness field (mm) of an extra-axial collection over the convexity.

    ``power`` shapes the profile: ~1 tapers to thin edges (a crescent, subdural), ~0.4 keeps it
    thick to steep margins (a lens, epidural).
    """

    def field_(ctx: SliceCtx) -> np.ndarray:
        dz = (ctx.z - z0) / half_height
        if abs(dz) >= 1:
            return np.zeros(ctx.u.shape, dtype=F32)
        dth = wrap_pi(ctx.theta - F32(theta0)) / F32(half_angle)
        t = F32(thick) * np.asarray(bump(dth, power), dtype=F32) * F32(bump(dz, power))
        if side is not None:
            t = t * (ctx.u * F32(side) > 0)
        return t.astype(F32)

    return field_


def _collection_paint(field_index: int, value: Callable[[SliceCtx], float], texture: float = 2.0) -> Paint:
    """Paint the extra-axial collection of ``field_index`` (between inner table and pushed brain)."""

    def paint(ctx: SliceCtx) -> np.ndarray:
        if field_index >= len(ctx.extra_axial) or ctx.dc is None or ctx.cavity is None:
            return _empty(ctx)
        t = ctx.extra_axial[field_index]
        where = ctx.cavity & (ctx.dc > 0) & (ctx.dc < t) & (t > 0.3)
        if not where.any():
            return where
        win = (slice(None), slice(None))
        return _set_hu(ctx, win, where, value(ctx), texture)

    return paint


def _fracture_gap(
    anat: Anatomy, theta0: float, z0: float, length: float, width: float, slope: float, wiggle: float, phase: float
) -> Callable[[SliceCtx], np.ndarray]:
    """Bool mask of a linear fracture: a thin radial gap through the skull along a curve.

    At height z the fracture crosses the skull at angle ``theta0 + slope*(z-z0)/R + wiggle``;
    it spans ``length`` mm in z.  Gap width 1-3 mm (fracture lines are thin lucencies).
    """

    def gap(ctx: SliceCtx) -> np.ndarray:
        dz = ctx.z - z0
        if abs(dz) > length / 2 or ctx.r_in is None:
            return np.zeros(ctx.u.shape, dtype=bool)
        r_mean = float(inner_radius0(anat, theta0)) + anat.skull_mm
        th = theta0 + slope * dz / r_mean + wiggle * np.sin(dz / 7.0 + phase) / r_mean
        dist = np.abs(wrap_pi(ctx.theta - F32(th))) * ctx.r
        half = max(width / 2, 0.6 * ctx.geo.grid.spacing)
        return dist < F32(half)

    return gap


def _bone_changes(ctx: SliceCtx, healthy: SliceCtx) -> np.ndarray:
    """Voxels whose label changed where either rendering has bone or scalp tissue (fractures)."""
    assert ctx.lab is not None and healthy.lab is not None
    changed = ctx.lab != healthy.lab
    bony = np.isin(ctx.lab, BONE_LABELS) | np.isin(healthy.lab, BONE_LABELS)
    scalp = (ctx.lab <= MUSCLE) | (healthy.lab <= MUSCLE)
    return changed & (bony | scalp)


def _new_csf(ctx: SliceCtx, healthy: SliceCtx) -> np.ndarray:
    """Voxels that are CSF now but were brain in the healthy head (extra CSF volume)."""
    assert ctx.lab is not None and healthy.lab is not None
    return (ctx.lab == CSF) & (healthy.lab != CSF) & (healthy.lab >= GM) & (healthy.lab <= 12)


# ---------------------------------------------------------------------------------------------
# Haemorrhage


def _iph(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Intraparenchymal haematoma: irregular ovoid clot 50-90 HU with a thin oedema rim."""
    diam = {"small": (8, 15), "medium": (15, 30), "large": (30, 50)}[size]
    radius = float(rng.uniform(*diam)) / 2
    site = str(rng.choice(["putamen", "thalamus", "lobar"], p=[0.4, 0.2, 0.4]))
    s = 1.0 if rng.random() < 0.5 else -1.0
    if site == "putamen":
        centre = (s * 23 * anat.sx, 1 * anat.sy, anat.z_monro)
    elif site == "thalamus":
        centre = (s * 10 * anat.sx, -11 * anat.sy, anat.z_monro + 2 * anat.sz)
    else:
        centre = _deep_point(anat, rng, radius * 0.6, zhi=40)
    blob = Blob.draw(rng, centre, radius, irregular=0.15)
    blood = float(rng.uniform(55, 85))
    oedema = 0.12 + 0.08 * rng.random()
    mods = Modifiers()
    if size != "small":
        d = abs(centre[0]) + 1e-3
        shift = {"medium": 0.08, "large": 0.2}[size] * radius * 2
        mods.warps.append(Warp(centre[0], centre[1], centre[2], _shift_warp_radius(d, shift)))

    def paint(ctx: SliceCtx) -> np.ndarray:
        got = blob.rho(ctx, 1.0 + oedema)
        if got is None:
            return _empty(ctx)
        win, rho = got
        brain = _brain_labels(ctx, win)
        rim = brain & (rho < 1 + oedema)
        core = brain & (rho * (1 + oedema) < 1 + oedema) & (rho < 1)
        m1 = _set_hu(ctx, win, rim & ~core, _hu_of(anat, "wm") - 7, 1.5)
        m2 = _set_hu(ctx, win, core, blood, 3.0)
        return m1 | m2

    return LesionPlan(size, "", mods, [paint], {"site": site, "blob": blob.as_dict(), "blood_hu": blood})


def _subdural(anat: Anatomy, size: str, rng: np.random.Generator, chronic: bool = False) -> LesionPlan:
    """Subdural haematoma: a crescent along the convexity under the inner table.

    Acute 50-80 HU; chronic 5-28 HU (hypodense, sometimes with a denser dependent layer).
    Max thickness small 5-8 mm, medium 8-14 mm, large 14-22 mm (with midline shift).
    """
    thick = float(rng.uniform(*{"small": (5, 8), "medium": (8, 14), "large": (14, 22)}[size]))
    theta0 = _lateral_theta(rng, (55, 125))
    side = float(np.sign(theta0))
    z0 = anat.z_monro + float(rng.uniform(0, 30)) * anat.sz
    half_angle = float(np.deg2rad(rng.uniform(55, 80)))
    half_height = float(rng.uniform(30, 48)) * anat.sz
    field_ = _convexity_thickness(anat, theta0, z0, thick, half_angle, half_height, 0.8, side)
    mods = Modifiers(extra_axial=[field_])
    shift = {"small": 0.0, "medium": 0.3, "large": 0.6}[size] * thick
    if shift > 0:
        u, v = _surface_point(anat, theta0, thick / 2, z0)
        mods.warps.append(Warp(u, v, z0, _shift_warp_radius(abs(u), shift)))
    lo, hi = (5, 28) if chronic else (50, 80)
    value = float(rng.uniform(lo, hi))
    return LesionPlan(
        size,
        "",
        mods,
        [_collection_paint(0, lambda ctx: value, 2.5)],
        {
            "theta_deg": float(np.rad2deg(theta0)),
            "z": z0,
            "thickness_mm": thick,
            "hu": value,
            "midline_shift_mm": shift,
        },
    )


def _epidural(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Epidural haematoma: biconvex lens 60-90 HU limited by sutures, often under a fracture."""
    thick = float(rng.uniform(*{"small": (6, 10), "medium": (10, 20), "large": (20, 32)}[size]))
    theta0 = _lateral_theta(rng, (50, 130))
    z0 = anat.z_monro + float(rng.uniform(-12, 22)) * anat.sz
    half_angle = float(np.deg2rad(rng.uniform(*{"small": (14, 20), "medium": (18, 28), "large": (24, 34)}[size])))
    half_height = float(rng.uniform(*{"small": (10, 16), "medium": (15, 24), "large": (22, 32)}[size])) * anat.sz
    field_ = _convexity_thickness(anat, theta0, z0, thick, half_angle, half_height, 0.45, float(np.sign(theta0)))
    mods = Modifiers(extra_axial=[field_])
    shift = {"small": 0.0, "medium": 0.3, "large": 0.55}[size] * thick
    if shift > 0:
        u, v = _surface_point(anat, theta0, thick / 2, z0)
        mods.warps.append(Warp(u, v, z0, _shift_warp_radius(abs(u), shift)))
    value = float(rng.uniform(60, 90))
    paints = [_collection_paint(0, lambda ctx: value, 3.0)]
    fracture = rng.random() < {"small": 0.4, "medium": 0.7, "large": 0.8}[size]
    if fracture:
        gap = _fracture_gap(
            anat,
            theta0 + float(rng.normal(0, 0.1)),
            z0,
            2 * half_height,
            float(rng.uniform(1.0, 2.0)),
            float(rng.normal(0, 0.6)),
            2.0,
            float(rng.uniform(0, 6)),
        )
        mods.skull_gaps.append(gap)
        paints.append(_gap_paint(gap))
    return LesionPlan(
        size,
        "",
        mods,
        paints,
        {"theta_deg": float(np.rad2deg(theta0)), "z": z0, "thickness_mm": thick, "hu": value, "fracture": fracture},
    )


def _gap_paint(gap: Callable[[SliceCtx], np.ndarray]) -> Paint:
    """Mask of a fracture gap (the renderer already removed the bone there)."""

    def paint(ctx: SliceCtx) -> np.ndarray:
        if ctx.r_in is None or ctx.r_sk is None or ctx.cavity is None:
            return _empty(ctx)
        m = gap(ctx)
        return m & (ctx.r >= ctx.r_in - 0.5) & (ctx.r <= ctx.r_sk + 0.5) & ~ctx.cavity

    return paint


def _sah(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Subarachnoid haemorrhage: blood 50-70 HU filling sulci, fissures and basal cisterns.

    small: convexity SAH over a few sulci (region 25-35 mm); medium: one Sylvian fissure and the
    suprasellar cistern (region 50-65 mm); large: diffuse basal cisterns, both Sylvian fissures
    and the interhemispheric fissure (region 80-110 mm).
    """
    s = 1.0 if rng.random() < 0.5 else -1.0
    if size == "small":
        theta = s * float(np.deg2rad(rng.uniform(40, 140)))
        z = anat.z_monro + float(rng.uniform(15, 45)) * anat.sz
        u, v = _surface_point(anat, theta, 4.0, z)
        radius = float(rng.uniform(13, 18))
    elif size == "medium":
        u, v, z = s * 30 * anat.sx, 8 * anat.sy, 0.42 * anat.height
        radius = float(rng.uniform(25, 32))
    else:
        u, v, z = 0.0, 4 * anat.sy, 0.42 * anat.height
        radius = float(rng.uniform(40, 55))
    value = float(rng.uniform(52, 70))
    zr = radius * (1.0 if size != "large" else 0.8)

    def region(ctx: SliceCtx) -> np.ndarray:
        d2 = ((ctx.u - F32(u)) ** 2 + (ctx.v - F32(v)) ** 2) / F32(radius**2) + F32(((ctx.z - z) / zr) ** 2)
        return d2 < 1

    def widen(ctx: SliceCtx) -> np.ndarray:
        return np.where(region(ctx), F32(2.2), F32(1.0))

    mods = Modifiers(sulcal_fields=[widen])

    def paint(ctx: SliceCtx) -> np.ndarray:
        if abs(ctx.z - z) >= zr or ctx.sulcal_csf is None:
            return _empty(ctx)
        # Blood fills sulci and cisterns; the sub-millimetre layer against the inner table is
        # left out (partial volume with bone would make it read as bone, not blood).
        where = ctx.sulcal_csf & region(ctx) & ctx.cavity & (ctx.dc > F32(1.2))  # type: ignore[operator]
        return _set_hu(ctx, (slice(None), slice(None)), where, value, 2.0)

    return LesionPlan(size, "", mods, [paint], {"centre": (u, v, z), "radius_mm": radius, "hu": value})


def _ivh(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Intraventricular haemorrhage: blood 55-80 HU layering in the dependent (posterior) horns.

    The patient lies supine, so the blood-CSF level is horizontal in the image whatever the head
    rotation.  small: one atrium/occipital horn; medium: both; large: a cast of the lateral and
    third ventricles with early hydrocephalus.
    """
    value = float(rng.uniform(58, 80))
    s = 1.0 if rng.random() < 0.5 else -1.0
    mods = Modifiers()
    if size == "large":
        mods.vent_scale = float(rng.uniform(1.25, 1.45))
        mods.temporal_horn = 1.8
    level = float(rng.uniform(-0.3, 0.3))

    def paint(ctx: SliceCtx) -> np.ndarray:
        if ctx.ventricles is None or not ctx.ventricles.any():
            return _empty(ctx)
        where = ctx.ventricles.copy()
        if size != "large":
            g = ctx.geo.grid
            atr_u, atr_v = (15 + 4 * anat.vent_scale) * anat.sx, -25 * anat.sy
            ys = []
            for side in (-1.0, 1.0):
                row, _ = g.to_crop_pixel(side * atr_u, atr_v)
                ys.append((row + g.rows.start - (g.matrix - 1) / 2.0) * g.spacing)
            y_level = float(np.mean(ys)) + level * 8.0 * anat.sy
            where &= ctx.geo.grid.y_img > F32(y_level)
            if size == "small":
                where &= ctx.uw * F32(s) > 0
        return _set_hu(ctx, (slice(None), slice(None)), where, value, 2.0)

    return LesionPlan(size, "", mods, [paint], {"hu": value, "side": s})


def _contusion(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Haemorrhagic contusions: clustered hyperdense foci (55-80 HU) with oedema, frontal/temporal poles."""
    s = 1.0 if rng.random() < 0.5 else -1.0
    site = str(rng.choice(["frontal", "temporal"]))
    if site == "frontal":
        centre = (s * 16 * anat.sx, 55 * anat.sy, 0.4 * anat.height)
    else:
        centre = (s * 42 * anat.sx, 18 * anat.sy, 0.25 * anat.height)
    span = float(rng.uniform(*{"small": (9, 14), "medium": (18, 28), "large": (30, 40)}[size]))
    n = {"small": 2, "medium": 4, "large": 7}[size]
    foci = [
        Blob.draw(
            rng,
            (
                centre[0] + rng.normal(0, span / 4),
                centre[1] + rng.normal(0, span / 4),
                centre[2] + rng.normal(0, span / 5),
            ),
            float(rng.uniform(3, 5.5)),
            irregular=0.2,
        )
        for _ in range(n)
    ]
    cloud = Blob.draw(rng, centre, span / 2 + 4, irregular=0.2)
    if size == "large":
        cloud2 = Blob(
            -cloud.u, cloud.v, cloud.z, cloud.a * 0.7, cloud.b * 0.7, cloud.c * 0.7, cloud.wobble, -cloud.turn
        )
        foci += [Blob(-f.u, f.v, f.z, f.a, f.b, f.c, f.wobble) for f in foci[:3]]
    else:
        cloud2 = None
    value = float(rng.uniform(55, 80))

    def paint(ctx: SliceCtx) -> np.ndarray:
        out = _empty(ctx)
        for c in (cloud, cloud2):
            got = c.rho(ctx) if c is not None else None
            if got is not None:
                win, rho = got
                out |= _set_hu(ctx, win, _brain_labels(ctx, win) & (rho < 1), _hu_of(anat, "wm") - 6, 1.5)
        for f in foci:
            got = f.rho(ctx)
            if got is not None:
                win, rho = got
                out |= _set_hu(ctx, win, _brain_labels(ctx, win) & (rho < 1), value, 3.0)
        return out

    return LesionPlan(size, "", Modifiers(), [paint], {"site": site, "centre": centre, "foci": n, "hu": value})


# ---------------------------------------------------------------------------------------------
# Ischaemia


def _territory(anat: Anatomy, size: str, rng: np.random.Generator) -> dict[str, Any]:
    """A vascular-territory wedge: direction, arc, depth and height (MCA, ACA or PCA)."""
    s = 1.0 if rng.random() < 0.5 else -1.0
    terr = str(rng.choice(["MCA", "ACA", "PCA"], p=[0.6, 0.15, 0.25]))
    frac = {"small": (0.12, 0.2), "medium": (0.35, 0.55), "large": (0.8, 1.0)}[size]
    f = float(rng.uniform(*frac))
    if terr == "MCA":
        theta = s * np.deg2rad(rng.uniform(75, 105))
        arc, depth, z0, hz = np.deg2rad(55) * f, 15 + 40 * f, anat.z_monro + (5 + 5 * f) * anat.sz, 12 + 30 * f
    elif terr == "ACA":
        theta = s * np.deg2rad(rng.uniform(10, 25))
        arc, depth, z0, hz = np.deg2rad(18) * f + 0.12, 12 + 18 * f, anat.z_monro + 35 * anat.sz, 10 + 22 * f
    else:
        theta = s * np.deg2rad(rng.uniform(150, 170))
        arc, depth, z0, hz = np.deg2rad(25) * f + 0.1, 12 + 22 * f, anat.z_monro - 5 * anat.sz, 10 + 18 * f
    if size == "small":
        z0 = z0 + float(rng.uniform(-8, 8))
    return {
        "territory": terr,
        "side": s,
        "theta": float(theta),
        "arc": float(arc),
        "depth": float(depth),
        "z0": float(z0),
        "hz": float(hz) * anat.sz,
        "f": f,
    }


def _wedge_weight(ctx: SliceCtx, t: dict[str, Any]) -> np.ndarray | None:
    """0..1 membership of a wedge that narrows with depth, with soft (ill-defined) margins."""
    dz = (ctx.z - t["z0"]) / t["hz"]
    if abs(dz) >= 1 or ctx.db is None:
        return None
    dth = wrap_pi(ctx.theta - F32(t["theta"])) / F32(t["arc"])
    wobble = F32(0.12) * np.cos(F32(5) * ctx.theta + F32(t["z0"]))
    lateral = np.asarray(bump(dth, 0.5), dtype=F32) * F32(bump(dz, 0.5))
    reach = lateral * F32(t["depth"]) * (F32(1) + wobble) - np.clip(ctx.db, 0, None)
    return np.clip(reach / F32(4.0), 0, 1) * (ctx.u * F32(t["side"]) > 0)


def _acute_infarct(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Acute ischaemic infarct: territory wedge, hypodense by 4-8 HU, grey-white blurred.

    Cortex drops to below white matter (loss of grey-white differentiation, insular ribbon
    sign), white matter by 4-8 HU; sulci in the territory are effaced.  Large (whole MCA)
    infarcts add mild mass effect.
    """
    t = _territory(anat, size, rng)
    drop = float(rng.uniform(4, 8))
    target = _hu_of(anat, "wm") - drop
    mods = Modifiers()

    def efface(ctx: SliceCtx) -> np.ndarray:
        w = _wedge_weight_from_depth(ctx, t)
        return F32(1) - F32(0.8) * w

    mods.sulcal_fields.append(efface)
    if size == "large":
        u, v = _surface_point(anat, t["theta"], t["depth"] / 2, t["z0"])
        mods.warps.append(Warp(u, v, t["z0"], _shift_warp_radius(abs(u), 3.0)))

    def paint(ctx: SliceCtx) -> np.ndarray:
        w = _wedge_weight(ctx, t)
        if w is None:
            return _empty(ctx)
        assert ctx.lab is not None
        allowed = _brain_labels(ctx) | ((ctx.lab == CSF) & ctx.sulcal_csf)  # type: ignore[operator]
        return _blend_hu(ctx, (slice(None), slice(None)), w, target, allowed)

    return LesionPlan(size, "", mods, [paint], {**t, "hu": target})


def _wedge_weight_from_depth(ctx: SliceCtx, t: dict[str, Any]) -> np.ndarray:
    """Wedge weight usable before ``db`` exists (sulcal effacement): uses the cavity depth."""
    if ctx.depth is None:
        return np.zeros(ctx.u.shape, dtype=F32)
    dz = (ctx.z - t["z0"]) / t["hz"]
    if abs(dz) >= 1:
        return np.zeros(ctx.u.shape, dtype=F32)
    dth = wrap_pi(ctx.theta - F32(t["theta"])) / F32(t["arc"] * 1.1)
    lateral = np.asarray(bump(dth, 0.5), dtype=F32) * F32(bump(dz, 0.5))
    reach = lateral * F32(t["depth"]) - np.clip(ctx.depth, 0, None)
    return np.clip(reach / F32(4.0), 0, 1) * (ctx.u * F32(t["side"]) > 0)


def _chronic_infarct(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Chronic infarct: CSF-like encephalomalacia (0-15 HU), gliotic rim, ex-vacuo dilatation.

    The mask is the malacic tissue plus the extra CSF that volume loss brings (widened sulci
    and the enlarged ipsilateral ventricle), compared with the same head rendered healthy.
    """
    t = _territory(anat, size, rng)
    value = float(rng.uniform(3, 14))
    mods = Modifiers()
    side_scale = {"small": 1.05, "medium": 1.25, "large": 1.45}[size]
    mods.vent_side = (side_scale, 1.0) if t["side"] < 0 else (1.0, side_scale)

    def widen(ctx: SliceCtx) -> np.ndarray:
        return F32(1) + F32(1.2) * _wedge_weight_from_depth(ctx, {**t, "arc": t["arc"] * 1.6, "depth": t["depth"] + 10})

    mods.sulcal_fields.append(widen)

    def paint(ctx: SliceCtx) -> np.ndarray:
        w = _wedge_weight(ctx, t)
        if w is None:
            return _empty(ctx)
        brain = _brain_labels(ctx)
        rim = _blend_hu(ctx, (slice(None), slice(None)), np.clip(w * 3, 0, 1), _hu_of(anat, "wm") - 9, brain)
        core = _blend_hu(ctx, (slice(None), slice(None)), np.clip(w * 1.4 - 0.4, 0, 1), value, brain)
        return rim | core

    return LesionPlan(size, "", mods, [paint], {**t, "hu": value}, compare=_new_csf)


def _lacunes(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Lacunes: 8-15 mm CSF-density (5-15 HU) foci in basal ganglia, thalamus, capsule, corona."""
    sites = [(23, 2, 0), (12, 15, 6), (10, -10, 2), (17, -2, 2), (22, 0, 22), (20, 10, 18)]
    n = 1 if size == "small" else int(rng.integers(2, 5))
    diam = (8, 11) if size == "small" else (8, 15)
    blobs = []
    for i in rng.choice(len(sites), size=n, replace=False):
        cu, cv, cz = sites[int(i)]
        s = 1.0 if rng.random() < 0.5 else -1.0
        centre = (
            s * (cu + rng.normal(0, 2)) * anat.sx,
            (cv + rng.normal(0, 2)) * anat.sy,
            anat.z_monro + (cz + rng.normal(0, 2)) * anat.sz,
        )
        r = float(rng.uniform(*diam)) / 2
        blobs.append(Blob.draw(rng, centre, r, elong=0.3, irregular=0.08, zscale=1.2))
    value = _hu_of(anat, "csf") + float(rng.uniform(0, 5))

    def paint(ctx: SliceCtx) -> np.ndarray:
        out = _empty(ctx)
        for b in blobs:
            got = b.rho(ctx)
            if got is not None:
                win, rho = got
                out |= _set_hu(ctx, win, _brain_labels(ctx, win) & (rho < 1), value, 1.0)
        return out

    return LesionPlan(size, "", Modifiers(), [paint], {"n": n, "blobs": [b.as_dict() for b in blobs], "hu": value})


def _white_matter_disease(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Small-vessel white-matter disease (leukoaraiosis): periventricular/deep WM hypodensity.

    White matter drops 5-9 HU (to ~17-23 HU).  small: caps at the frontal horns and atria
    (Fazekas 1); medium: a periventricular band with early confluence (Fazekas 2); large:
    confluent deep white matter (Fazekas 3).
    """
    drop = float(rng.uniform(5, 9))
    inflate = {"small": 4.0, "medium": 7.0, "large": 12.0}[size]
    target = _hu_of(anat, "wm") - drop
    patchy = float(rng.uniform(0.2, 0.6))

    def paint(ctx: SliceCtx) -> np.ndarray:
        if abs(ctx.z - anat.z_monro - 15 * anat.sz) > 28 * anat.sz or ctx.lab is None:
            return _empty(ctx)
        halo = ventricle_mask(ctx, Modifiers(), inflate)
        if size == "small":
            halo &= np.abs(ctx.vw) > F32(12 * anat.sy)
        wm = ctx.lab == WM
        where = halo & wm
        if size == "large":
            where |= wm & (ctx.db > F32(12)) & (ctx.tex("coarse", ctx.k) > F32(patchy - 0.6))  # type: ignore[operator]
        return _set_hu(ctx, (slice(None), slice(None)), where, target, 1.5)

    return LesionPlan(size, "", Modifiers(), [paint], {"hu": target, "halo_mm": inflate})


# ---------------------------------------------------------------------------------------------
# Masses, cysts, calcification


def _tumour(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Tumour: 30-45 HU mass, vasogenic oedema (15-25 HU) along the white matter, mass effect.

    small 10-18 mm, medium 20-35 mm, large 35-55 mm (may have central necrosis 12-20 HU).
    The mass pushes the ventricles and midline away (incompressible displacement, midline shift
    up to ~12 mm) and effaces nearby sulci.
    """
    radius = float(rng.uniform(*{"small": (10, 18), "medium": (20, 35), "large": (35, 55)}[size])) / 2
    centre = _deep_point(anat, rng, radius, zlo=-5, zhi=35, depth_lo=4)
    mass = Blob.draw(rng, centre, radius, irregular=0.15)
    halo = float(rng.uniform(*{"small": (1.4, 1.8), "medium": (1.6, 2.2), "large": (1.6, 2.3)}[size]))
    oedema = Blob.draw(rng, centre, radius * halo, irregular=0.25)
    mass_hu = float(rng.uniform(30, 45))
    necrosis = size == "large" and rng.random() < 0.5
    shift = {"small": 0.5, "medium": 3.0, "large": 8.0}[size] * float(rng.uniform(0.7, 1.3))
    mods = Modifiers(warps=[Warp(*centre, _shift_warp_radius(abs(centre[0]) + 1e-3, shift))])

    def efface(ctx: SliceCtx) -> np.ndarray:
        d2 = ((ctx.u - F32(centre[0])) ** 2 + (ctx.v - F32(centre[1])) ** 2 + F32((ctx.z - centre[2]) ** 2)) / F32(
            (radius * halo * 1.4) ** 2
        )
        return np.clip(d2, 0.15, 1).astype(F32)

    mods.sulcal_fields.append(efface)
    oed_hu = _hu_of(anat, "wm") - float(rng.uniform(7, 12))

    def paint(ctx: SliceCtx) -> np.ndarray:
        out = _empty(ctx)
        assert ctx.lab is not None
        got = oedema.rho(ctx)
        if got is not None:
            win, rho = got
            wm = (ctx.lab[win] == WM) | (ctx.lab[win] == DEEP_GM)
            out |= _set_hu(ctx, win, wm & (rho < 1), oed_hu, 1.5)
        got = mass.rho(ctx)
        if got is not None:
            win, rho = got
            inside = (rho < 1) & (ctx.lab[win] != 0) & ctx.cavity[win]  # type: ignore[index]
            hu = np.where(necrosis & (rho < 0.45), F32(16), F32(mass_hu))
            out |= _set_hu(ctx, win, inside, hu, 4.0)
        return out

    return LesionPlan(
        size,
        "",
        mods,
        [paint],
        {"mass": mass.as_dict(), "oedema_factor": halo, "hu": mass_hu, "necrosis": necrosis, "midline_shift_mm": shift},
    )


def _calcification(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Pathological calcification (>100 HU): nodule, clustered nodules, or bilateral basal ganglia.

    small: one 8-11 mm calcified nodule (e.g. granuloma, cavernoma); medium: 2-4 clumped
    nodules within ~25 mm (e.g. oligodendroglioma); large: bilateral symmetric basal-ganglia
    calcification 15-25 mm (Fahr type).  Peak 200-900 HU.
    """
    blobs: list[Blob] = []
    if size == "small":
        blobs.append(Blob.draw(rng, _deep_point(anat, rng, 5, depth_lo=6), float(rng.uniform(4, 5.5)), irregular=0.1))
    elif size == "medium":
        c = _deep_point(anat, rng, 12, depth_lo=6)
        for _ in range(int(rng.integers(2, 5))):
            blobs.append(
                Blob.draw(
                    rng,
                    (c[0] + rng.normal(0, 6), c[1] + rng.normal(0, 6), c[2] + rng.normal(0, 4)),
                    float(rng.uniform(3.5, 5.5)),
                    irregular=0.2,
                )
            )
    else:
        r = float(rng.uniform(7.5, 12.5))
        for s in (-1.0, 1.0):
            blobs.append(
                Blob(
                    s * 21 * anat.sx,
                    1 * anat.sy,
                    anat.z_monro,
                    r * 0.6,
                    r,
                    r * 0.9,
                    ((3, 0.15, float(rng.uniform(0, 6))),),
                    s * 0.2,
                )
            )
    peak = float(rng.uniform(200, 900))

    def paint(ctx: SliceCtx) -> np.ndarray:
        out = _empty(ctx)
        for b in blobs:
            got = b.rho(ctx)
            if got is None:
                continue
            win, rho = got
            tex = ctx.tex("coarse", ctx.k)[win]
            dense = F32(110) + F32(peak - 110) * np.clip(F32(1) - rho * rho + F32(0.25) * tex, 0, 1)
            inside = _brain_labels(ctx, win) & (rho < 1)
            out |= _set_hu(ctx, win, inside, dense, 0.0)
        return out

    return LesionPlan(
        size, "", Modifiers(), [paint], {"n": len(blobs), "peak_hu": peak, "blobs": [b.as_dict() for b in blobs]}
    )


def _arachnoid_cyst(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Arachnoid cyst: CSF-density (0-15 HU) extra-axial pocket displacing brain.

    Most often in the middle cranial fossa (anterior temporal), else retrocerebellar or over
    the convexity.  small 10-20 mm, medium 25-40 mm, large 45-65 mm.
    """
    diam = float(rng.uniform(*{"small": (12, 20), "medium": (25, 40), "large": (45, 62)}[size]))
    r = diam / 2
    site = str(rng.choice(["middle_fossa", "retrocerebellar", "convexity"], p=[0.6, 0.2, 0.2]))
    s = 1.0 if rng.random() < 0.5 else -1.0
    h = anat.height
    if site == "middle_fossa":
        centre = (s * 0.5 * anat.cav_a, 0.3 * anat.cav_b - 0.3 * r, 0.2 * h + 0.3 * r)
    elif site == "retrocerebellar":
        centre = (float(rng.normal(0, 4)), -0.75 * anat.cav_b + 0.3 * r, 0.12 * h + 0.2 * r)
    else:
        theta = _lateral_theta(rng, (30, 150))
        z = anat.z_monro + float(rng.uniform(5, 35)) * anat.sz
        u, v = _surface_point(anat, theta, r * 0.75, z)
        centre = (u, v, z)
    blob = Blob.draw(rng, centre, r, elong=0.2, irregular=0.05, zscale=0.8)
    value = _hu_of(anat, "csf") + float(rng.uniform(-1, 3))
    mods = Modifiers(warps=[Warp(*centre, r * 0.75, taper=6.0)])

    def paint(ctx: SliceCtx) -> np.ndarray:
        got = blob.rho(ctx)
        if got is None or ctx.cavity is None:
            return _empty(ctx)
        win, rho = got
        return _set_hu(ctx, win, (rho < 1) & ctx.cavity[win], value, 0.8)

    return LesionPlan(size, "", mods, [paint], {"site": site, "blob": blob.as_dict(), "hu": value})


# ---------------------------------------------------------------------------------------------
# CSF spaces


def _hydrocephalus(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Acute (obstructive) hydrocephalus: ventricles x1.7-2.3, rounded temporal horns, third
    ventricle ballooned, sulci and Sylvian fissures effaced, periventricular lucency (WM -6 HU).

    Mask: the extra ventricular CSF (CSF now, brain in the same head rendered healthy) plus the
    transependymal oedema halo.
    """
    mods = Modifiers(
        vent_scale=float(rng.uniform(1.7, 2.3)),
        temporal_horn=float(rng.uniform(2.5, 3.5)),
        third_vent=float(rng.uniform(2.2, 3.2)),
        sulcal_scale=0.35,
        sas_add=-0.6 * anat.sas_mm,
        sylvian_scale=0.6,
    )
    lucency = rng.random() < 0.7
    target = _hu_of(anat, "wm") - 6

    def paint(ctx: SliceCtx) -> np.ndarray:
        if not lucency or ctx.lab is None:
            return _empty(ctx)
        halo = ventricle_mask(ctx, mods, 3.5) & (ctx.lab == WM)
        return _set_hu(ctx, (slice(None), slice(None)), halo, target, 1.0)

    return LesionPlan(
        size,
        "",
        mods,
        [paint],
        {"vent_scale": mods.vent_scale, "temporal_horn": mods.temporal_horn, "lucency": lucency},
        compare=_new_csf,
    )


def _atrophy(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Cerebral atrophy beyond age: sulci x2-3 wider, subarachnoid space +1.5-3 mm, ventricles
    x1.3-1.6, Sylvian fissures x1.8-2.5.  Mask: the extra CSF versus the same head healthy."""
    mods = Modifiers(
        sulcal_scale=float(rng.uniform(2.0, 3.0)),
        sas_add=float(rng.uniform(1.5, 3.0)),
        vent_scale=float(rng.uniform(1.3, 1.6)),
        sylvian_scale=float(rng.uniform(1.8, 2.5)),
        temporal_horn=1.5,
    )
    return LesionPlan(
        size,
        "",
        mods,
        [],
        {"sulcal_scale": mods.sulcal_scale, "sas_add": mods.sas_add, "vent_scale": mods.vent_scale},
        compare=_new_csf,
    )


# ---------------------------------------------------------------------------------------------
# Skull and air


def _skull_fracture(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Skull fracture: a lucent line through the vault (gap 1-3 mm), depressed when large.

    small: linear, 15-25 mm long, thin scalp haematoma; medium: linear, 30-60 mm, scalp haematoma; large:
    depressed fragment (20-35 mm) pushed 4-9 mm inward between two fracture lines, scalp
    haematoma.  Mask: voxels whose tissue changed in bone or scalp (gap, fragment, swelling).
    """
    theta0 = float(rng.uniform(-np.pi, np.pi))
    z0 = float(rng.uniform(0.5, 0.82)) * anat.height
    mods = Modifiers()
    params: dict[str, Any] = {"theta_deg": float(np.rad2deg(theta0)), "z": z0}
    if size in ("small", "medium"):
        length = float(rng.uniform(*{"small": (15, 25), "medium": (30, 60)}[size]))
        width = float(rng.uniform(1.0, 1.6) if size == "small" else rng.uniform(1.5, 2.5))
        gap = _fracture_gap(anat, theta0, z0, length, width, float(rng.normal(0, 0.5)), 2.0, float(rng.uniform(0, 6)))
        mods.skull_gaps.append(gap)
        params.update(length_mm=length, gap_mm=width)
        thick, half_angle = ((2.5, 4.0), 0.22) if size == "small" else ((4.0, 8.0), 0.35)
        mods.scalp_swelling.append(_swelling(theta0, z0, float(rng.uniform(*thick)), half_angle, length / 2))
    else:
        span = float(rng.uniform(20, 35))
        depth = float(rng.uniform(4, 9))
        r_mean = float(inner_radius0(anat, theta0))
        half = span / 2 / r_mean
        hz = span / 2
        for edge in (-1.0, 1.0):
            mods.skull_gaps.append(
                _fracture_gap(anat, theta0 + edge * half, z0, 2 * hz, float(rng.uniform(1.2, 2.0)), 0.0, 0.5, 0.0)
            )

        def dent(ctx: SliceCtx) -> np.ndarray:
            dz = (ctx.z - z0) / hz
            if abs(dz) >= 1:
                return np.zeros(ctx.u.shape, dtype=F32)
            dth = np.abs(wrap_pi(ctx.theta - F32(theta0))) / F32(half)
            tilt = F32(1) + F32(0.3) * wrap_pi(ctx.theta - F32(theta0)) / F32(half)
            return (F32(depth) * (dth < 1) * tilt * F32(bump(dz, 0.15))).astype(F32)

        mods.skull_dents.append(dent)
        mods.scalp_swelling.append(_swelling(theta0, z0, float(rng.uniform(5, 10)), 0.45, span))
        params.update(span_mm=span, depression_mm=depth)
    return LesionPlan(size, "", mods, [], params, compare=_bone_changes)


def _swelling(
    theta0: float, z0: float, thick: float, half_angle: float, half_height: float
) -> Callable[[SliceCtx], np.ndarray]:
    """Subgaleal/scalp haematoma: extra soft-tissue thickness (mm) over the injury."""

    def f(ctx: SliceCtx) -> np.ndarray:
        dz = (ctx.z - z0) / half_height
        if abs(dz) >= 1:
            return np.zeros(ctx.u.shape, dtype=F32)
        dth = wrap_pi(ctx.theta - F32(theta0)) / F32(half_angle)
        return (F32(thick) * np.asarray(bump(dth, 1.0), dtype=F32) * F32(bump(dz, 1.0))).astype(F32)

    return f


def _pneumocephalus(anat: Anatomy, size: str, rng: np.random.Generator) -> LesionPlan:
    """Pneumocephalus: intracranial air (-1000 HU) rising to the non-dependent frontal region.

    small: 2-4 extra-axial bubbles 8-12 mm; medium: a frontal air layer 5-10 mm thick with a
    frontal bone fracture; large: bifrontal air 10-18 mm compressing and separating the frontal
    lobes ("Mount Fuji"), with a fracture.
    """
    mods = Modifiers()
    paints: list[Paint] = []
    zc = anat.z_monro + float(rng.uniform(5, 25)) * anat.sz
    params: dict[str, Any] = {"z": zc}
    if size == "small":
        bubbles = []
        for _ in range(int(rng.integers(2, 5))):
            theta = float(rng.normal(0, 0.45))
            r = float(rng.uniform(4, 6))
            z = zc + float(rng.normal(0, 8))
            u, v = _surface_point(anat, theta, r * 0.8, z)
            bubbles.append(Blob(u, v, z, r, r * 0.7, r, (), theta))

        def paint(ctx: SliceCtx) -> np.ndarray:
            out = _empty(ctx)
            for b in bubbles:
                got = b.rho(ctx)
                if got is not None and ctx.cavity is not None:
                    win, rho = got
                    out |= _set_hu(ctx, win, (rho < 1) & ctx.cavity[win], -1000.0, 0.0)
            return out

        paints.append(paint)
        params["bubbles"] = len(bubbles)
    else:
        thick = float(rng.uniform(*{"medium": (5, 10), "large": (10, 18)}[size]))
        side = None if size == "large" else (1.0 if rng.random() < 0.5 else -1.0)
        theta0 = 0.0 if side is None else side * 0.35
        field_ = _convexity_thickness(
            anat, theta0, zc, thick, float(np.deg2rad(45 if size == "large" else 35)), 28 * anat.sz, 0.6, side
        )
        mods.extra_axial.append(field_)
        paints.append(_collection_paint(0, lambda ctx: -1000.0, 0.0))
        theta_f = float(rng.normal(0, 0.25))
        gap = _fracture_gap(
            anat, theta_f, zc - 10 * anat.sz, 30.0, float(rng.uniform(1.2, 2.2)), float(rng.normal(0, 0.5)), 2.0, 0.0
        )
        mods.skull_gaps.append(gap)
        paints.append(_gap_paint(gap))
        params.update(thickness_mm=thick, fracture_theta_deg=float(np.rad2deg(theta_f)))
    return LesionPlan(size, "", mods, paints, params)


# ---------------------------------------------------------------------------------------------
# Registry

_S3 = ("small", "medium", "large")

DISORDERS: dict[str, DisorderSpec] = {
    spec.name: spec
    for spec in (
        DisorderSpec(
            "intraparenchymal_haemorrhage",
            "high",
            _S3,
            "Acute intraparenchymal haematoma, 50-90 HU (clot), with a thin oedema rim ~WM-7 HU; putaminal, thalamic or lobar.",
            (35, 90),
            {"small": "8-15 mm", "medium": "15-30 mm", "large": "30-50 mm"},
            {"small": "medium"},
        ),
        DisorderSpec(
            "subdural_haematoma",
            "high",
            _S3,
            "Acute subdural haematoma: crescent along the convexity, 50-80 HU, crossing sutures; midline shift when large.",
            (35, 85),
            {"small": "5-8 mm thick", "medium": "8-14 mm thick", "large": "14-22 mm thick"},
            {"small": "medium"},
        ),
        DisorderSpec(
            "chronic_subdural_haematoma",
            "medium",
            _S3,
            "Chronic subdural haematoma: hypodense crescent 5-28 HU along the convexity.",
            (0, 35),
            {"small": "5-8 mm thick", "medium": "8-14 mm thick", "large": "14-22 mm thick"},
            {"large": "high"},
        ),
        DisorderSpec(
            "epidural_haematoma",
            "high",
            _S3,
            "Epidural haematoma: biconvex lens 60-90 HU under the inner table, often with a fracture.",
            (40, 95),
            {"small": "6-10 mm thick", "medium": "10-20 mm thick", "large": "20-32 mm thick"},
        ),
        DisorderSpec(
            "subarachnoid_haemorrhage",
            "high",
            _S3,
            "Subarachnoid haemorrhage: blood 50-70 HU in sulci, Sylvian fissures and basal cisterns instead of CSF (0-15 HU).",
            (28, 75),
            {
                "small": "convexity, 25-35 mm region",
                "medium": "one Sylvian fissure + suprasellar cistern",
                "large": "diffuse basal cisterns",
            },
        ),
        DisorderSpec(
            "intraventricular_haemorrhage",
            "high",
            _S3,
            "Intraventricular haemorrhage: blood 55-80 HU layering in the occipital horns (horizontal level), or a ventricular cast.",
            (35, 85),
            {"small": "one occipital horn", "medium": "both occipital horns", "large": "cast + early hydrocephalus"},
        ),
        DisorderSpec(
            "haemorrhagic_contusion",
            "high",
            _S3,
            "Haemorrhagic contusions: clustered 55-80 HU foci with oedema (WM-6 HU) at the frontal or temporal poles.",
            (15, 80),
            {"small": "9-14 mm cluster", "medium": "18-28 mm cluster", "large": "30-40 mm, bilateral"},
            {"small": "medium"},
        ),
        DisorderSpec(
            "acute_infarct",
            "high",
            _S3,
            "Acute ischaemic infarct: vascular-territory wedge hypodense by 4-8 HU (to ~15-26 HU), grey-white differentiation lost, sulci effaced.",
            (12, 30),
            {"small": "cortical branch, 10-20 mm", "medium": "division, 30-50 mm", "large": "whole territory"},
        ),
        DisorderSpec(
            "chronic_infarct",
            "low",
            _S3,
            "Chronic infarct: CSF-like encephalomalacia 0-15 HU with gliotic rim, widened sulci and ex-vacuo ventricular dilatation.",
            (-2, 28),
            {"small": "cortical branch", "medium": "division", "large": "whole territory"},
        ),
        DisorderSpec(
            "lacunes",
            "low",
            ("small", "medium"),
            "Lacunar infarcts: 8-15 mm CSF-density (5-15 HU) foci in basal ganglia, thalamus, internal capsule or corona radiata.",
            (0, 28),
            {"small": "one lacune 8-11 mm", "medium": "2-4 lacunes 8-15 mm"},
        ),
        DisorderSpec(
            "white_matter_disease",
            "low",
            _S3,
            "Small-vessel white-matter disease: periventricular/deep white matter 5-9 HU below normal (~17-23 HU).",
            (10, 28),
            {"small": "caps (Fazekas 1)", "medium": "band (Fazekas 2)", "large": "confluent (Fazekas 3)"},
        ),
        DisorderSpec(
            "tumour",
            "medium",
            _S3,
            "Intra-axial tumour: 30-45 HU mass (necrosis 12-20 HU) with vasogenic oedema 15-25 HU in white matter and mass effect / midline shift.",
            (10, 45),
            {"small": "10-18 mm", "medium": "20-35 mm", "large": "35-55 mm"},
            {"large": "high"},
        ),
        DisorderSpec(
            "calcification",
            "low",
            _S3,
            "Pathological intracranial calcification, >100 HU (peak 200-900), not the normal pineal/choroid/falx.",
            (100, 900),
            {
                "small": "one nodule 8-11 mm",
                "medium": "2-4 nodules within 25 mm",
                "large": "bilateral basal ganglia 15-25 mm",
            },
        ),
        DisorderSpec(
            "hydrocephalus",
            "high",
            ("large",),
            "Acute hydrocephalus: lateral ventricles x1.7-2.3 with rounded temporal horns, effaced sulci, periventricular lucency; CSF 0-15 HU.",
            (-2, 30),
            {"large": "diffuse"},
        ),
        DisorderSpec(
            "atrophy",
            "low",
            ("large",),
            "Cerebral atrophy beyond age: widened sulci and Sylvian fissures, enlarged ventricles; extra CSF 0-15 HU.",
            (-5, 32),
            {"large": "diffuse"},
        ),
        DisorderSpec(
            "skull_fracture",
            "medium",
            _S3,
            "Skull fracture: lucent line (soft tissue ~40 HU) through 1000-1800 HU bone, depressed when large, with scalp haematoma.",
            (-100, 1000),
            {"small": "linear 15-25 mm", "medium": "linear 30-60 mm", "large": "depressed 20-35 mm, 4-9 mm"},
            {"large": "high"},
        ),
        DisorderSpec(
            "pneumocephalus",
            "high",
            _S3,
            "Pneumocephalus: intracranial air -1000 HU, frontal (non-dependent); with a frontal fracture when medium/large.",
            (-1000, -250),
            {"small": "2-4 bubbles 8-12 mm", "medium": "air layer 5-10 mm", "large": "bifrontal 10-18 mm"},
            {"small": "medium"},
        ),
        DisorderSpec(
            "arachnoid_cyst",
            "low",
            _S3,
            "Arachnoid cyst: CSF-density (0-15 HU) extra-axial cyst, middle cranial fossa most often, displacing brain.",
            (-5, 20),
            {"small": "12-20 mm", "medium": "25-40 mm", "large": "45-62 mm"},
        ),
    )
}

_PLANNERS: dict[str, Callable[[Anatomy, str, np.random.Generator], LesionPlan]] = {
    "intraparenchymal_haemorrhage": _iph,
    "subdural_haematoma": _subdural,
    "chronic_subdural_haematoma": lambda a, s, r: _subdural(a, s, r, chronic=True),
    "epidural_haematoma": _epidural,
    "subarachnoid_haemorrhage": _sah,
    "intraventricular_haemorrhage": _ivh,
    "haemorrhagic_contusion": _contusion,
    "acute_infarct": _acute_infarct,
    "chronic_infarct": _chronic_infarct,
    "lacunes": _lacunes,
    "white_matter_disease": _white_matter_disease,
    "tumour": _tumour,
    "calcification": _calcification,
    "hydrocephalus": _hydrocephalus,
    "atrophy": _atrophy,
    "skull_fracture": _skull_fracture,
    "pneumocephalus": _pneumocephalus,
    "arachnoid_cyst": _arachnoid_cyst,
}


def plan_lesion(name: str, size_class: str, anat: Anatomy, rng: np.random.Generator) -> LesionPlan:
    """The plan for disorder ``name`` of ``size_class`` in this head."""
    plan = _PLANNERS[name](anat, size_class, rng)
    plan.urgency = DISORDERS[name].urgency_for(size_class)
    return plan
