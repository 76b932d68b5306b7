"""How a pre-windowed image series is presented, and its mapping onto a bundle's presentation.

One job: :func:`normalise_images` estimates, from the content of one series of pre-windowed head
CT images, where its air, brain and skull lie on the gray scale, and maps the series onto the
presentation of the real bundle's training data (a 40/120 HU brain window: air black 0, brain
about the bundle's brain level ≈ 0.40, skull saturated white 1), square and without burned-in
text, so the cavity rule of a bundle (a fixed bone gray, 0.975 of full scale) finds the cranial
cavity. Another site's export differs in ways this undoes where it can:

- a wider window (or a contrast-compressed export): the skull is not white and air not black;
  a linear map (air → 0, skull → 1) undoes it;
- a gamma: brain tissue lies far from the bundle's level with air and skull in place; a power
  law (brain → level) undoes it;
- a non-square image (cropped tight to the skull): padded to square with air, so resizing to the
  model's size keeps the head's aspect;
- burned-in text and marks in the corners: blanked to air where they can be told from the
  patient (brighter than a skull that is not white).

Rules (all explicit, nothing learnt; the constants below say why each value):

1. air ``a`` = the median gray of the series' outer frame (a band :data:`FRAME` of the image's
   size along the four edges): exports show air there, also when cropped tight to the skull (an
   ellipse leaves its box's corners empty);
2. the head: per slice the largest 8-connected patch of the body (pixels above
   ``a + FOREGROUND·(top − a)``, ``top`` the series' 99th percentile), its holes filled;
3. skull ``b``: of the head pixels above that level (all slices), those at least halfway from
   their median to their 99.5th percentile are the bright population (skull, with the partial
   volume of its edges); ``b`` is that population's :data:`BONE_QUANTILE` quantile, so most
   skull pixels map to white (at or above the bundle's bone level) even with noise or JPEG
   ringing. Burned-in marks: when the skull is at least :data:`MARK_ROOM` below white, the
   pixels outside the head brighter than halfway from ``b`` to white (text is drawn white over
   the exported image, above anything the window shows), grown by one pixel (a JPEG halo),
   become air ``a``. With a white skull text cannot be told from bone or a head holder (this
   data set's holders are white too) by gray alone, and is left (outside the head it does not
   change the cavity);
4. a window within one 8-bit gray step of the full range (``a <= 1/255``, ``b >= 254/255``)
   is the full range: 8 bits cannot tell them apart (the in-distribution guarantee: the data
   set's own slices are returned unchanged);
5. linear map ``u = clip((g − a)/(b − a), 0, 1)``;
6. brain ``m``: the median of ``u`` strictly between black and white inside the skull rings
   (the mapped pixels at or above the bone level, closed by a 5×5 square, holes filled, less
   the ring; slices whose enclosed area is at least :data:`MIN_RING_AREA` of the slice); without
   any ring, the median of the body pixels strictly between black and the bone level;
7. gamma: when ``level`` is given, ``|m − level| > GAMMA_DEADBAND`` and ``m`` was measured on
   at least :data:`GAMMA_MIN_RINGS` slices with a skull ring, ``u' = u^γ`` with
   ``γ = log(level)/log(m)`` (brain → level; black and white stay); within the dead band the
   bundle's own brain-level match (an additive shift) is left to do the rest;
8. contrast: a wider brain window that still shows the skull white and air black (an export
   through 40/400 HU, say) leaves rules 4-7 with nothing to undo, but shows the brain's tissues
   packed into a few gray steps, where blood lies too close to brain for the slice score. When the
   bundle knows the spread of its own data (``spread``: the interquartile range of the gray inside
   the cranial cavity, ``isl-rt calibrate --match-level``) and the series' spread inside its
   skull rings is below :data:`CONTRAST_FLOOR` of it, the gray strictly between black and white
   is stretched about the brain gray by ``spread / own spread`` (clipped to [0, 1]); above the
   floor nothing changes;
9. padding to square (``S' = max(H, W)``), centred, with black (air after the map).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: the band along the image's edges whose median is the air gray (share of the image's size)
FRAME = 0.02
#: the body: above this share of the way from air to the series' 99th percentile
FOREGROUND = 0.1
#: burned-in marks are looked for only when the skull's gray is at least this far below white
#: (8 gray steps): only then can a mark be told from the patient by being brighter than the skull
MARK_ROOM = 8.0 / 255.0
#: the skull gray: this quantile of the bright population (below its mode, so noisy skull maps white)
BONE_QUANTILE = 0.25
#: the bundle's bone level (head-ct-real-tiny: pseudo-HU 3900 of 4000, 0.975 of full scale)
BONE_LEVEL = 0.975
#: a skull ring encloses at least this share of the slice to count for the brain gray
MIN_RING_AREA = 0.005
#: a brain gray this far from the bundle's level (gray units) is corrected by a gamma: the 40
#: validation and test patients of head-ct-real-tiny lie within 0.07 of its level
#: (``pipeline.LEVEL_SHIFT_WARNING`` is the same 0.1)
GAMMA_DEADBAND = 0.1
#: ... and measured on at least this many slices with a skull ring (one slice's brain gray moves
#: with its anatomy: at the skull base or the vertex it lies far from the series' median)
GAMMA_MIN_RINGS = 3
#: one 8-bit gray step
STEP = 1.0 / 255.0
#: a series whose gray spread inside the skull is below this share of the bundle's is stretched
#: (rule 8): :func:`brain_spread` of the real data set's 99 series as they are lies at 0.63-2.84 of
#: the median of its 20 validation series, the same series through a window 3.3× wider (the gray
#: inside the window compressed about its centre, black and white kept) at 0.16-0.89
CONTRAST_FLOOR = 0.6


def _frame(images: np.ndarray) -> np.ndarray:
    """The pixels of the outer band (:data:`FRAME` of each side's length, at least one pixel)."""
    h, w = images.shape[-2:]
    bh, bw = max(1, int(round(h * FRAME))), max(1, int(round(w * FRAME)))
    return np.concatenate([images[..., :bh, :].ravel(), images[..., h - bh:, :].ravel(),
                           images[..., bh:h - bh, :bw].ravel(), images[..., bh:h - bh, w - bw:].ravel()])


def head_masks(gray: np.ndarray, air: float, top: float) -> np.ndarray:
    """bool [N,H,W]: per slice the head, the largest 8-connected patch of the body (pixels above
    ``air + FOREGROUND·(top − air)``) with its holes filled."""
    from scipy import ndimage

    body = gray > air + FOREGROUND * (top - air)
    eight = np.ones((3, 3), dtype=bool)
    head = np.zeros_like(body)
    for i in range(gray.shape[0]):
        labels, count = ndimage.label(body[i], structure=eight)
        if count:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            head[i] = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
    return head


def blank_marks(gray: np.ndarray, head: np.ndarray, air: float, bone: float) -> tuple[np.ndarray, int, int]:
    """(gray with burned-in marks set to ``air``, pixels blanked, slices touched) of one series
    [N,H,W] (rule 3 of the module): outside the head, pixels brighter than halfway from the
    skull's gray ``bone`` to white, grown by one pixel (a JPEG halo); none when the skull is
    within :data:`MARK_ROOM` of white."""
    from scipy import ndimage

    if bone > 1.0 - MARK_ROOM:
        return gray, 0, 0
    marks = (gray > (bone + 1.0) / 2.0) & ~head
    if not marks.any():
        return gray, 0, 0
    eight = np.ones((1, 3, 3), dtype=bool)
    marks = ndimage.binary_dilation(marks, structure=eight) & ~head
    out = np.where(marks, np.float32(air), gray).astype(gray.dtype, copy=False)
    changed = out != gray
    return out, int(changed.sum()), int(changed.any(axis=(1, 2)).sum())


def brain_gray(u: np.ndarray, bone_level: float = BONE_LEVEL) -> tuple[float | None, int]:
    """(the brain gray, slices with a skull ring) of mapped slices ``u`` [N,H,W] (rule 6 of the
    module); None when no pixel qualifies."""
    values, rings = _brain_values(u, bone_level)
    return (float(np.median(values)) if values.size else None), rings


def brain_spread(u: np.ndarray, bone_level: float = BONE_LEVEL) -> float | None:
    """The interquartile range of the gray strictly between black and white inside the skull
    rings of mapped slices ``u`` [N,H,W] (rule 8); None without a ring."""
    return _spread(*_brain_values(u, bone_level))


def _spread(values: np.ndarray, rings: int) -> float | None:
    """The interquartile range of the gray ``values`` found inside ``rings`` skull rings; None
    without a ring or with too few values to tell."""
    if not rings or values.size < 16:
        return None
    low, high = np.quantile(values, [0.25, 0.75])
    return float(high - low)


def _brain_values(u: np.ndarray, bone_level: float) -> tuple[np.ndarray, int]:
    """(the gray values rule 6 takes the brain gray from, slices with a skull ring)."""
    from scipy import ndimage

    bone = u >= bone_level
    square = np.ones((5, 5), dtype=bool)
    limit = MIN_RING_AREA * u.shape[1] * u.shape[2]
    values = []
    rings = 0
    for i in range(u.shape[0]):
        if not bone[i].any():
            continue
        closed = ndimage.binary_closing(bone[i], structure=square)
        inside = ndimage.binary_fill_holes(closed) & ~closed
        if inside.sum() >= limit:
            v = u[i][inside]
            values.append(v[(v > 0.0) & (v < 1.0)])
            rings += 1
    if rings:
        v = np.concatenate(values)
        if v.size:
            return v, rings
    return u[(u > FOREGROUND) & (u < bone_level)], 0


def pad_square(images: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """([N,C,S,S] centred on a black square canvas, S = max(H, W), [top, bottom, left, right])."""
    n, c, h, w = images.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    pad = [top, s - h - top, left, s - w - left]
    if s == h == w:
        return images, pad
    out = np.zeros((n, c, s, s), dtype=images.dtype)
    out[:, :, top:top + h, left:left + w] = images
    return out, pad


def normalise_images(images: np.ndarray, level: float | None,
                     spread: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(float32 [N,1,S',S'] square images in the bundle's presentation, a JSON-able record of what
    was estimated) of one series' pre-windowed gray images ``images`` float [N,1,H,W] in [0, 1]
    (slices in order, any H, W); ``level``: the bundle's brain level (its cavity median gray), or
    None (no gamma); ``spread``: the bundle's gray spread inside the cavity, or None (no contrast
    stretch). The rules are the module's; on the real data set's own slices the result is the
    input (padded to square) for 97 of its 99 series (two get a gamma, rule 7)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] == 0:
        raise ValueError(f"normalise_images wants one gray series [N,1,H,W], got shape {x.shape}.")
    gray = x[:, 0]
    air = float(np.median(_frame(gray)))
    top = float(np.quantile(gray, 0.99))
    record: dict[str, Any] = {"shape_in": [int(v) for v in x.shape[-2:]], "air": air, "top": top}
    if top - air < 8 * STEP:  # no contrast to read a presentation from: pad only
        out, pad = pad_square(x)
        record.update(skipped="no contrast between air and the brightest pixels", pad=pad, size_out=int(out.shape[-1]),
                      identity=True)
        return out, record
    head = head_masks(gray, air, top)
    body = gray[head & (gray > air + FOREGROUND * (top - air))]
    bone = 1.0
    if body.size:
        mid, high = float(np.median(body)), float(np.quantile(body, 0.995))
        bright = body[body >= (mid + high) / 2.0]
        bone = float(np.quantile(bright, BONE_QUANTILE)) if bright.size else high
    gray, blanked, touched = blank_marks(gray, head, air, bone)
    record.update(bone=bone, blanked_pixels=blanked, blanked_slices=touched)
    lo, hi = air, bone
    if air <= STEP and bone >= 1.0 - STEP:  # rule 4: the full range
        lo, hi = 0.0, 1.0
    if hi - lo < 8 * STEP:
        lo, hi = 0.0, 1.0
        record["window_refused"] = "skull and air less than 8 gray steps apart"
    u = gray if (lo, hi) == (0.0, 1.0) else np.clip((gray - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    values, rings = _brain_values(u, BONE_LEVEL)  # rule 6, once per mapped series (the rings are costly)
    brain = float(np.median(values)) if values.size else None
    gamma = 1.0
    if level is not None and brain is not None and 0.0 < brain < 1.0 and 0.0 < level < 1.0 \
            and abs(brain - level) > GAMMA_DEADBAND and rings >= GAMMA_MIN_RINGS:
        gamma = math.log(level) / math.log(brain)
        u = np.power(u, np.float32(gamma))
        values, rings = _brain_values(u, BONE_LEVEL)
    contrast, own = 1.0, None
    if spread is not None:  # rule 8: a brain packed into too few gray steps is stretched back
        own = _spread(values, rings)
        if own is not None and own < CONTRAST_FLOOR * spread:
            centre = float(np.median(values))
            contrast = spread / max(own, STEP)
            inside = (u > 0.0) & (u < 1.0)
            u = np.where(inside, np.clip(np.float32(centre) + (u - np.float32(centre)) * np.float32(contrast), 0.0, 1.0),
                         u).astype(np.float32, copy=False)
    record.update(window=[lo, hi], gain=1.0 / (hi - lo), offset=-lo / (hi - lo), brain=brain, skull_ring_slices=rings,
                  gamma=gamma, level=level, spread=own, contrast=contrast,
                  identity=bool((lo, hi) == (0.0, 1.0) and gamma == 1.0 and contrast == 1.0 and blanked == 0))
    out, pad = pad_square(u[:, None].astype(np.float32, copy=False))
    record.update(pad=pad, size_out=int(out.shape[-1]))
    return np.ascontiguousarray(out), record
