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
- another field of view (cropped tight to the skull, or a small head on a wide canvas): framed so
  the cranial cavity shows at the size it has in the bundle's data;
- burned-in text and marks in the corners: blanked to air where they can be told from the
  patient (brighter than a skull that is not white).

Rules (all explicit, nothing learnt; the constants below say why each value):

0. smoothing: with ``smooth`` > 0 every slice is first smoothed by a Gaussian of that σ (in the
   image's own pixels; the bundle's manifest says which) and kept in [0, 1], before anything is
   read off it (so the skull's gray of rule 3 is the smoothed skull's): a JPEG history leaves block
   edges 8 pixels apart and ringing at the skull;
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
9. padding to square (``S' = max(H, W)``), centred, with black (air after the map), and the
   field of view: the series' cavity size ``c`` is the :data:`SIZE_QUANTILE` quantile, over its
    slices with a skull ring, of the side of the box around the slice's largest enclosed patch,
    as a share of ``S'``. When the bundle knows the size of its own data (``size``, ``isl-rt
    calibrate --match-level``) and ``c`` lies more than :data:`SIZE_DEADBAND` from it (a series
    cropped tight to the skull, or a small head on a wide canvas), the square is replaced by one
    of side ``c·S'/size`` around the cavity, air where the image does not reach, so that resizing
    to the model's size shows the cavity at the bundle's size (the scale capped at
    :data:`MAX_SCALE` either way, and never cutting into the head of rule 2). A series with a
    skull ring on fewer than :data:`GAMMA_MIN_RINGS` slices (a key image: one slice cannot tell
    a small head from a slice near the vertex) is only shrunk, and only when its cavity is larger
    than any slice of the bundle's data shows (:data:`SIZE_ROOM` times ``size``).
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
#: (rule 8): :meth:`SkullRings.spread` of the real data set's 99 series as they are lies at 0.63-2.84 of
#: the median of its 20 validation series, the same series through a window 3.3× wider (the gray
#: inside the window compressed about its centre, black and white kept) at 0.16-0.89
CONTRAST_FLOOR = 0.6
#: a series' cavity size is this quantile of its slices' (its larger slices, not its one largest)
SIZE_QUANTILE = 0.9
#: a series whose cavity size is within this share of the bundle's keeps its field of view (rule 9)
SIZE_DEADBAND = 0.15
#: a key image is shrunk only when its cavity is this many times the bundle's size: the largest
#: slice of the 79 training and validation series of head-ct-real-tiny shows a cavity of 0.78 of
#: the image, their median series 0.625 (1.25 times)
SIZE_ROOM = 1.25
#: the field of view is scaled at most this many times, up or down
MAX_SCALE = 2.0


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


def _spread(values: np.ndarray, rings: int) -> float | None:
    """The interquartile range of the gray ``values`` found inside ``rings`` skull rings; None
    without a ring or with too few values to tell."""
    if not rings or values.size < 16:
        return None
    low, high = np.quantile(values, [0.25, 0.75])
    return float(high - low)


class SkullRings:
    """What the skull rings of one mapped series enclose (rules 6, 8 and 9): per slice with a
    ring, the gray strictly between black and white inside it and the box (y0, y1, x0, x1, end
    exclusive) of its largest enclosed patch; without any ring, the body's gray (rule 6)."""

    def __init__(self, u: np.ndarray, bone_level: float, values: list[np.ndarray],
                 boxes: list[tuple[int, int, int, int]]) -> None:
        self.shape = u.shape[-2:]
        self.count = len(boxes)
        self.boxes = boxes
        self._values = np.concatenate(values) if values else np.zeros(0, np.float32)
        self._fallback = u
        self._bone_level = bone_level

    def values(self) -> np.ndarray:
        """The gray rule 6 takes the brain gray from: inside the rings, or the body's without one."""
        if self.count and self._values.size:
            return self._values
        u = self._fallback
        return u[(u > FOREGROUND) & (u < self._bone_level)]

    def spread(self) -> float | None:
        """The interquartile range of the gray inside the rings (rule 8), None without a ring."""
        return _spread(self.values(), self.count)

    def size(self) -> float | None:
        """The cavity size (rule 9), None without a ring."""
        if not self.count:
            return None
        sides = [max(y1 - y0, x1 - x0) for y0, y1, x0, x1 in self.boxes]
        return float(np.quantile(sides, SIZE_QUANTILE)) / max(self.shape)

    def centre(self) -> tuple[float, float]:
        """(row, column) of the median centre of the rings' cavity boxes."""
        return (float(np.median([(y0 + y1) / 2.0 for y0, y1, _, _ in self.boxes])),
                float(np.median([(x0 + x1) / 2.0 for _, _, x0, x1 in self.boxes])))


def skull_rings(u: np.ndarray, bone_level: float = BONE_LEVEL) -> SkullRings:
    """The skull rings of mapped slices ``u`` [N,H,W]: the pixels at or above ``bone_level``,
    closed by a 5×5 square, holes filled, less the ring; a slice counts when what its ring
    encloses covers at least :data:`MIN_RING_AREA` of it."""
    from scipy import ndimage

    bone = u >= bone_level
    square = np.ones((5, 5), dtype=bool)
    limit = MIN_RING_AREA * u.shape[1] * u.shape[2]
    values, boxes = [], []
    for i in range(u.shape[0]):
        if not bone[i].any():
            continue
        closed = ndimage.binary_closing(bone[i], structure=square)
        inside = ndimage.binary_fill_holes(closed) & ~closed
        if inside.sum() >= limit:
            v = u[i][inside]
            values.append(v[(v > 0.0) & (v < 1.0)])
            labels, count = ndimage.label(inside)
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            ys, xs = np.nonzero(labels == int(np.argmax(sizes)))
            boxes.append((int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))
    return SkullRings(u, bone_level, values, boxes)


def place(images: np.ndarray, pad: list[int] | tuple[int, ...]) -> np.ndarray:
    """``images`` [..., H, W] with ``pad`` = [top, bottom, left, right] rows and columns of black
    added on each side (a negative number cuts that many away)."""
    top, bottom, left, right = (int(v) for v in pad)
    h, w = images.shape[-2:]
    out_h, out_w = h + top + bottom, w + left + right
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"padding {list(pad)} leaves nothing of a {h}x{w} image.")
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return images
    out = np.zeros(images.shape[:-2] + (out_h, out_w), dtype=images.dtype)
    sy0, sy1, sx0, sx1 = max(0, -top), h - max(0, -bottom), max(0, -left), w - max(0, -right)
    if sy1 > sy0 and sx1 > sx0:
        dy0, dx0 = max(0, top), max(0, left)
        out[..., dy0:dy0 + sy1 - sy0, dx0:dx0 + sx1 - sx0] = images[..., sy0:sy1, sx0:sx1]
    return out


def field_of_view(rings: SkullRings, head: np.ndarray, size: float | None) -> tuple[list[int], float, float | None]:
    """(pad [top, bottom, left, right] that frames the series square, the scale it shows the head
    at, the series' cavity size) of rule 9: centred padding to square unless the cavity's size is
    far from the bundle's ``size``; ``head`` bool [N,H,W] (rule 2)."""
    h, w = rings.shape
    s = max(h, w)
    square = square_pad(h, w)
    own = rings.size()
    if size is None or own is None:
        return square, 1.0, own
    ratio = own / size
    if rings.count >= GAMMA_MIN_RINGS:
        if abs(math.log(ratio)) <= math.log(1.0 + SIZE_DEADBAND):
            return square, 1.0, own
    elif ratio <= SIZE_ROOM:
        return square, 1.0, own
    ratio = min(max(ratio, 1.0 / MAX_SCALE), MAX_SCALE)
    side = int(round(s * ratio))
    if head.any():  # never cut into the head
        ys, xs = np.nonzero(head.any(axis=0))
        hy0, hy1, hx0, hx1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        side = max(side, hy1 - hy0, hx1 - hx0)
    else:
        hy0, hy1, hx0, hx1 = 0, h, 0, w
    cy, cx = rings.centre()
    y0 = min(max(int(round(cy - side / 2.0)), hy1 - side), hy0)
    x0 = min(max(int(round(cx - side / 2.0)), hx1 - side), hx0)
    return [-y0, y0 + side - h, -x0, x0 + side - w], s / side, own


def square_pad(h: int, w: int) -> list[int]:
    """[top, bottom, left, right] that centre an H×W image on a square canvas of side max(H, W)."""
    s = max(h, w)
    return [(s - h) // 2, s - h - (s - h) // 2, (s - w) // 2, s - w - (s - w) // 2]


def pad_square(images: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """([N,C,S,S] centred on a black square canvas, S = max(H, W), [top, bottom, left, right])."""
    pad = square_pad(*images.shape[-2:])
    return place(images, pad), pad


def normalise_images(images: np.ndarray, level: float | None, spread: float | None = None,
                     size: float | None = None, *, smooth: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
    """(float32 [N,1,S',S'] square images in the bundle's presentation, a JSON-able record of what
    was estimated) of one series' pre-windowed gray images ``images`` float [N,1,H,W] in [0, 1]
    (slices in order, any H, W); ``level``: the bundle's brain level (its cavity median gray), or
    None (no gamma); ``spread``: the bundle's gray spread inside the cavity, or None (no contrast
    stretch); ``size``: the bundle's cavity size, or None (the field of view kept); ``smooth``:
    the σ of rule 0 in pixels, or 0 (none). The rules are
    the module's; benchmarks/RESULTS.md ("Another site's images") counts the real data set's own
    series it changes."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] == 0:
        raise ValueError(f"normalise_images wants one gray series [N,1,H,W], got shape {x.shape}.")
    gray = x[:, 0]
    if smooth > 0:  # rule 0, before anything is read off the image
        from scipy import ndimage

        gray = np.clip(ndimage.gaussian_filter(gray, (0.0, smooth, smooth)), 0.0, 1.0).astype(np.float32)
    air = float(np.median(_frame(gray)))
    top = float(np.quantile(gray, 0.99))
    record: dict[str, Any] = {"shape_in": [int(v) for v in x.shape[-2:]], "air": air, "top": top, "smooth": smooth}
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
    found = skull_rings(u, BONE_LEVEL)  # rules 6, 8 and 9 (the rings are costly: again only after a gamma)
    values, rings = found.values(), found.count
    brain = float(np.median(values)) if values.size else None
    gamma = 1.0
    if level is not None and brain is not None and 0.0 < brain < 1.0 and 0.0 < level < 1.0 \
            and abs(brain - level) > GAMMA_DEADBAND and rings >= GAMMA_MIN_RINGS:
        gamma = math.log(level) / math.log(brain)
        u = np.power(u, np.float32(gamma))
        found = skull_rings(u, BONE_LEVEL)
        values, rings = found.values(), found.count
    contrast, own = 1.0, None
    if spread is not None:  # rule 8: a brain packed into too few gray steps is stretched back
        own = found.spread()
        if own is not None and own < CONTRAST_FLOOR * spread:
            centre = float(np.median(values))
            contrast = spread / max(own, STEP)
            inside = (u > 0.0) & (u < 1.0)
            u = np.where(inside, np.clip(np.float32(centre) + (u - np.float32(centre)) * np.float32(contrast), 0.0, 1.0),
                         u).astype(np.float32, copy=False)
    pad, scale, cavity = field_of_view(found, head, size)  # rule 9 (the rings of rules 6-8: white stays white)
    record.update(window=[lo, hi], gain=1.0 / (hi - lo), offset=-lo / (hi - lo), brain=brain, skull_ring_slices=rings,
                  gamma=gamma, level=level, spread=own, contrast=contrast, cavity_size=cavity, scale=scale,
                  # identity: nothing estimated differs from the bundle's own data (rule 0 smooths every series)
                  identity=bool((lo, hi) == (0.0, 1.0) and gamma == 1.0 and contrast == 1.0 and blanked == 0
                                and scale == 1.0))
    out = place(u[:, None].astype(np.float32, copy=False), pad)
    record.update(pad=pad, size_out=int(out.shape[-1]))
    return np.ascontiguousarray(out), record
