"""One phantom study in memory: healthy head + optional disorder, blurred, noisy, quantised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from isl_rt.errors import InputError
from isl_rt.io.phantom._anatomy import (
    MATRIX,
    SLICE_MM,
    Anatomy,
    Geometry,
    Modifiers,
    build_geometry,
    draw_anatomy,
    render_slice,
)
from isl_rt.io.phantom._disorders import DISORDERS, LesionPlan, plan_lesion
from isl_rt.io.phantom._geometry import F32


@dataclass(frozen=True)
class PhantomStudy:
    """A synthetic head-CT study with its ground truth.

    ``hu`` int16 [N, 512, 512], inferior -> superior, air at -1000 (clipped at -1024), the
    region outside the reconstruction circle at the padding value (``anatomy["pad_hu"]``:
    -1024 or -2000).  ``lesion_mask`` uint8, 1 on lesion voxels.
    """

    seed: int
    hu: np.ndarray
    lesion_mask: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    disorder: str
    size_class: str
    urgency: str
    anatomy: dict[str, Any]
    lesion: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])

    @property
    def label(self) -> int:
        return 0 if self.disorder == "healthy" else 1


def _streams(seed: int, disorder: str | None) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for the head, the lesion and the noise.

    The head and the noise depend on the seed only, so ``generate_study(s)`` and
    ``generate_study(s, "subdural_haematoma")`` show the same head with the same noise, differing
    by the lesion alone.
    """
    name_key = sum((i + 1) * ord(c) for i, c in enumerate(disorder or "healthy"))
    head = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    lesion = np.random.default_rng(np.random.SeedSequence([seed, 1, name_key]))
    noise = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    return head, lesion, noise


def _validate(seed: int, disorder: str | None, size_class: str | None) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The phantom seed must be a non-negative integer, got {seed!r}.")
    if disorder is None or disorder == "healthy":
        if size_class:
            raise InputError(
                f"A size class ({size_class!r}) was given for a healthy phantom; give a disorder too or drop the size."
            )
        return
    if disorder not in DISORDERS:
        raise InputError(f"Unknown phantom disorder {disorder!r}; choose one of: {', '.join(sorted(DISORDERS))}.")
    spec = DISORDERS[disorder]
    if size_class is not None and size_class not in spec.sizes:
        raise InputError(f"Disorder {disorder!r} comes in sizes {', '.join(spec.sizes)}, not {size_class!r}.")


_TRUNCATE = 3.5  # Gaussian kernel radius in sigmas (scipy's ``truncate``)


def _gauss_kernel_power(sigma: float) -> float:
    """Sum of squared weights of scipy's 1D Gaussian kernel: the fraction of noise variance kept."""
    radius = int(_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return float((k**2).sum())


def generate_study(seed: int, disorder: str | None = None, size_class: str | None = None) -> PhantomStudy:
    """Synthesize one head-CT study (pure, in memory, deterministic for its arguments).

    ``disorder`` is a key of :data:`DISORDERS` or None/"healthy"; ``size_class`` one of that
    disorder's sizes (drawn from the seed when None).
    """
    _validate(seed, disorder, size_class)
    seed = int(seed)
    name = None if disorder in (None, "healthy") else disorder
    rng_head, rng_lesion, rng_noise = _streams(seed, name)
    anat = draw_anatomy(rng_head)
    geo = build_geometry(anat, rng_head)
    plan: LesionPlan | None = None
    if name is not None:
        spec = DISORDERS[name]
        size = size_class or str(rng_lesion.choice(spec.sizes))
        plan = plan_lesion(name, size, anat, rng_lesion)
    hu = np.empty((anat.n_slices, MATRIX, MATRIX), dtype=np.int16)
    mask = np.zeros((anat.n_slices, MATRIX, MATRIX), dtype=np.uint8)
    fov = _fov_circle()
    power = _gauss_kernel_power(anat.blur_px) ** 2
    for k in range(anat.n_slices):
        ideal, lesion = _ideal_slice(anat, geo, plan, k)
        hu[k] = _acquire(ideal, anat, rng_noise, fov, power, k)
        if lesion is not None:
            mask[k] = lesion
    return PhantomStudy(
        seed=seed,
        hu=hu,
        lesion_mask=mask,
        pixel_spacing=(anat.pixel_spacing, anat.pixel_spacing),
        slice_thickness=SLICE_MM,
        disorder=name or "healthy",
        size_class=plan.size_class if plan else "",
        urgency=plan.urgency if plan else "",
        anatomy=anat.to_dict(),
        lesion=dict(plan.params) if plan else {},
    )


def _ideal_slice(anat: Anatomy, geo: Geometry, plan: LesionPlan | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Noise-free full-matrix HU of slice k and its lesion mask (None when healthy)."""
    g = geo.grid
    full = np.full((MATRIX, MATRIX), -1000.0, dtype=F32)
    if plan is None:
        ctx = render_slice(anat, geo, Modifiers(), k)
        assert ctx.hu is not None
        full[g.rows, g.cols] = ctx.hu
        return full, None
    ctx = render_slice(anat, geo, plan.modifiers, k)
    assert ctx.hu is not None
    crop_mask = np.zeros(g.shape, dtype=bool)
    for paint in plan.paints:
        crop_mask |= paint(ctx)
    if plan.compare is not None:
        crop_mask |= plan.compare(ctx, render_slice(anat, geo, Modifiers(), k, labels_only=True))
    full[g.rows, g.cols] = ctx.hu
    lesion = np.zeros((MATRIX, MATRIX), dtype=np.uint8)
    lesion[g.rows, g.cols] = crop_mask
    return full, lesion


def _fov_circle() -> np.ndarray:
    c = (MATRIX - 1) / 2.0
    yy, xx = np.ogrid[:MATRIX, :MATRIX]
    return (xx - c) ** 2 + (yy - c) ** 2 <= (MATRIX / 2.0) ** 2


def _acquire(
    ideal: np.ndarray, anat: Anatomy, rng: np.random.Generator, fov: np.ndarray, power: float, k: int
) -> np.ndarray:
    """Blur by the reconstruction kernel, add noise correlated by the same kernel, quantise.

    White noise is added before the blur with its sd raised so that, once blurred, the image
    noise has the drawn sd (3-8 HU; smooth kernels: more correlated and lower, sharp kernels:
    finer and higher).  Noise is ~1.4x higher at the skull base, where more bone attenuates.
    """
    z = anat.z_first + SLICE_MM * k
    base = 1.0 + 0.4 * float(np.clip(1.0 - (z - 0.05 * anat.height) / (0.3 * anat.height), 0.0, 1.0))
    sd_white = anat.noise_sd * base / np.sqrt(power)
    noisy = rng.standard_normal(ideal.shape, dtype=F32)
    noisy *= F32(sd_white)
    noisy += ideal
    out = ndimage.gaussian_filter(noisy, anat.blur_px, truncate=_TRUNCATE)
    np.clip(out, -1024, 3071, out=out)
    np.rint(out, out=out)
    out[~fov] = anat.pad_hu
    return out.astype(np.int16)
