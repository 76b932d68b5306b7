"""The input gate: is this series a usable head CT (or a head-CT image series)? Else a reason.

A detector trained on healthy heads gives *some* score to anything it is fed; on a chest CT, an
MR relabelled as CT, a blank test series or a slice of NaNs that score can look normal. The gate
runs before scoring and turns such a series into a ``rejected`` row with one sentence, never a
score. It has two stages, both cheap next to the networks:

1. **Headers** (:func:`check_ct_header`, :func:`check_image_header`), before anything is
   decoded, so an oversized or absurd series costs no memory;
2. **Pixels** (:func:`ct_slice_stats` / :func:`image_slice_stats` per chunk of slices, then
   :func:`check_ct_pixels` / :func:`check_image_pixels` on the series), on a copy of each slice
   reduced by block maximum to about 128 pixels a side.

Every threshold is below with where it comes from. They are deliberately loose: the gate must
never reject a real head (measured on the phantom and on 2,920 real head-CT slices, see
benchmarks/RESULTS.md), so it catches what is clearly not a head, not every oddity.

Sources: DICOM PS3.3 C.7.6.2 (Image Plane), C.8.2.1 (CT Image: RescaleSlope/Intercept map stored
values to Hounsfield units) and C.8.3.1 (MR Image); DICOM PS3.16 Annex L (Body Part Examined
defined terms); the Hounsfield scale (air -1000 HU, water 0, brain 20-45, CSF 0-15, acute blood
50-90, bone 700-3000; any radiology text); adult head measurements (maximum head breadth about
15-16 cm, glabella-opisthocranion length about 19-20 cm, head height chin to vertex about
23 cm; anthropometric surveys such as ANSUR II); routine head CT is reconstructed on 512×512 at
0.5-5 mm slices (ACR-ASNR-SPR practice parameter for CT of the head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from isl_rt import kernels
from isl_rt.io.dicom import SeriesRef
from isl_rt.io.limits import MAX_MATRIX, MAX_SERIES_BYTES, series_bytes

# ---- headers --------------------------------------------------------------------------------

#: Fewest slices of a whole head-CT series: a head CT covers the brain (about 120 mm) at 10 mm or
#: finer slices, so at least 12; 10 leaves a margin for a partial series. Fewer slices (a single
#: key image, a few slices sent from a PACS) are not refused: they are judged by what they show
#: (the pixel checks below) and scored with a warning (:func:`few_slices_warning`).
MIN_SLICES = 10
#: Smallest Rows or Columns: clinical CT reconstructs 256-1024; 64 still holds a head at 4 mm
#: pixels, below that there is nothing left to score (16×16 test patterns, icons).
MIN_MATRIX = 64
#: Smallest field of view (Columns × column spacing, mm): a newborn's head is about 95 mm wide.
MIN_FIELD_OF_VIEW_MM = 100.0
#: Widest slice spacing or SliceThickness (mm): head CT is reconstructed at 0.5-5 mm; older
#: sequential protocols used up to 10 mm.
MAX_SLICE_MM = 10.0
#: Narrowest slice spacing (mm): thinner than any CT detector row (0.5 mm) by 5×.
MIN_SLICE_SPACING_MM = 0.1
#: Longest series along the slice normal (mm): an adult head is about 230 mm chin to vertex;
#: 400 mm reaches well into the chest, so a longer series is a body or whole-body CT.
MAX_EXTENT_MM = 400.0
#: RescaleSlope range: with 16-bit stored values a slope below 1/64 cannot span air to bone
#: (65,536 values × 1/64 = 1024 HU), and above 64 one stored step is coarser than the
#: difference between brain and blood.
SLOPE_RANGE = (1.0 / 64.0, 64.0)
#: |RescaleIntercept| limit: beyond it every 16-bit stored value maps outside the CT scale.
MAX_ABS_INTERCEPT = 65536.0
#: BodyPartExamined values (PS3.16 Annex L defined terms and common vendor spellings) of a head.
HEAD_BODY_PARTS = frozenset({"HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD_NECK", "HEAD NECK", "CEREBRUM", "CRANIUM"})
#: BodyPartExamined values that are clearly not a head (Annex L terms for the trunk and limbs).
NOT_HEAD_BODY_PARTS = frozenset({
    "CHEST", "THORAX", "LUNG", "HEART", "BREAST", "ABDOMEN", "ABDOMENPELVIS", "CHESTABDOMEN",
    "CHESTABDPELVIS", "PELVIS", "LIVER", "KIDNEY", "PANCREAS", "SPLEEN", "COLON", "BLADDER",
    "PROSTATE", "LSPINE", "TSPINE", "SSPINE", "COCCYX", "SACRUM", "HIP", "KNEE", "ANKLE", "FOOT",
    "HAND", "WRIST", "ELBOW", "SHOULDER", "ARM", "LEG", "FEMUR", "TIBIA", "HUMERUS", "EXTREMITY",
    "UPPEREXTREMITY", "LOWEREXTREMITY", "WHOLEBODY",
})

# ---- pixels ---------------------------------------------------------------------------------

#: Slices are reduced by block maximum to about this many pixels a side before the checks.
GATE_SIDE = 128
#: A slice whose values spread (standard deviation) less than this is uniform: CT noise alone
#: is 2-10 HU; a pre-windowed 8-bit image of tissue is never within one grey level.
UNIFORM_STD_HU = 1.0
UNIFORM_STD_IMAGE = 1.0 / 255.0
#: Air: every head CT holds air around the head and in the sinuses (-1000 HU); a series with
#: less than this share of voxels at or below AIR_HU has no air, so its numbers are not HU.
AIR_HU = -900.0
MIN_AIR_FRACTION = 1e-3
#: Above the 12-bit CT scale (3071 HU) lie only metal and its streaks; a series with more than
#: this share there is not a CT of a head.
CT_SCALE_MAX_HU = 3071.0
MAX_ABOVE_SCALE_FRACTION = 0.05
#: Bone that encloses the cranial cavity: the skull is 700-3000 HU, partial volume at the vertex
#: lowers it; 300 HU is the cavity kernel's level in the shipped bundle.
BONE_HU = 300.0
#: A pre-windowed image shows bone saturated (white); 250/255 and above counts as bone.
BONE_IMAGE = 250.0 / 255.0
#: A slice shows the cranial cavity when bone encloses (along rows and columns, the cavity
#: kernel's rule) at least this area: 5 cm²; the spinal canal is 2-3 cm².
MIN_CAVITY_MM2 = 500.0
#: For images (no pixel size): at least this share of the slice.
MIN_CAVITY_FRACTION = 0.005
#: A slice shows a head when bone encloses a cavity of that area, no larger than a skull's
#: inside, holding what a brain holds (the limits below). A head series shows one on at least
#: this share of its slices, and on 3 or more: the skull base and the vertex may not, and a
#: series may reach down into the neck and chest. Measured lowest on real head CT: 0.232 (patient
#: 0163 of PHE-SICH-CT-IDS, 16 of 69 slices, its series running from the upper chest to the
#: vertex); 0.5 for every other real series; 0.87 on the phantom. A series of fewer than 3 slices
#: (key images) must show a head on every one: min(MIN_HEAD_SLICES, n) and the share.
MIN_HEAD_SLICE_SHARE = 0.15
MIN_HEAD_SLICES = 3
#: Largest width (left-right) and length (front-back) of the region bone encloses (mm): the
#: inside of the widest adult skulls is about 150 × 190 mm; a chest or abdomen is 250-400 mm.
MAX_CAVITY_WIDTH_MM = 200.0
MAX_CAVITY_LENGTH_MM = 240.0
#: The median HU inside the cavity of a head slice: brain 20-45, CSF 0-15, blood 50-90. A lung
#: field enclosed by ribs is -900 to -500; air between a head holder and the head is -1000.
CAVITY_HU_RANGE = (-100.0, 150.0)


@dataclass(frozen=True)
class Verdict:
    """What the gate says of one series: usable, or rejected with a reason."""

    #: One sentence saying why the series is not a usable head CT; None when it is usable.
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    #: What was measured (JSON-ready), for the per-series JSON.
    facts: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.reason is None


def _reject(reason: str, facts: dict[str, float | int | str] | None = None) -> Verdict:
    return Verdict(reason=reason, facts=facts or {})


def _matrix_problem(rows: int, columns: int) -> str | None:
    if max(rows, columns) > MAX_MATRIX:
        return (f"its slices declare {rows}×{columns} pixels, more than isl-rt decodes ({MAX_MATRIX}×{MAX_MATRIX}; "
                "a head CT is 512×512), so nothing was decoded")
    if min(rows, columns) < MIN_MATRIX:
        return f"its slices are {rows}×{columns} pixels, too small for a head CT (at least {MIN_MATRIX}×{MIN_MATRIX})"
    return None


def _size_problem(rows: int, columns: int, slices: int, *, channels: int = 1, itemsize: int = 2,
                  noun: str = "slices") -> str | None:
    size = series_bytes(rows, columns, slices, channels=channels, itemsize=itemsize)
    if size > MAX_SERIES_BYTES:
        return (f"its {slices} {noun} of {rows}×{columns} pixels would take {size / 2**30:.2f} GiB decoded, more than "
                f"isl-rt decodes for one series ({MAX_SERIES_BYTES / 2**30:g} GiB), so nothing was decoded")
    return None


def check_ct_header(ref: SeriesRef) -> Verdict:
    """Judge a discovered CT series from its headers alone (nothing decoded)."""
    problem = _matrix_problem(ref.rows, ref.columns)
    if problem:
        return _reject(problem)
    if ref.n_slices < 1:
        return _reject("it has no slices")
    problem = _size_problem(ref.rows, ref.columns, ref.n_slices)
    if problem:
        return _reject(problem)
    rescale = np.asarray(ref.rescale, dtype=np.float64).reshape(-1, 2)
    if rescale.size:
        slope, intercept = rescale[:, 0], rescale[:, 1]
        bad = ~np.isfinite(slope) | ~np.isfinite(intercept)
        if bad.any():
            i = int(np.argmax(bad))
            return _reject(f"{int(bad.sum())} slice(s) have a RescaleSlope/RescaleIntercept that is not a finite number "
                           f"({slope[i]:g}, {intercept[i]:g} in {ref.files[i].name}), so there are no CT numbers")
        low, high = SLOPE_RANGE
        bad = (slope < low) | (slope > high)
        if bad.any():
            i = int(np.argmax(bad))
            return _reject(f"{int(bad.sum())} slice(s) have RescaleSlope {slope[i]:g} ({ref.files[i].name}); CT numbers "
                           f"need a slope between {low:g} and {high:g}")
        bad = np.abs(intercept) > MAX_ABS_INTERCEPT
        if bad.any():
            i = int(np.argmax(bad))
            return _reject(f"{int(bad.sum())} slice(s) have RescaleIntercept {intercept[i]:g} ({ref.files[i].name}), "
                           "which puts every stored value outside the CT scale")
    if ref.mr_attributes:
        return _reject(f"it is labelled CT but carries MR acquisition attributes ({', '.join(ref.mr_attributes)}): "
                       "an MR series relabelled as CT")
    not_head = [p for p in ref.body_parts if p.replace(" ", "") in NOT_HEAD_BODY_PARTS]
    if not_head:
        return _reject(f"its BodyPartExamined is {', '.join(not_head)}, not a head")
    warnings = [f"BodyPartExamined {p} is not a head term the gate knows; judged from the images"
                for p in ref.body_parts if p not in HEAD_BODY_PARTS and p.replace(" ", "") not in NOT_HEAD_BODY_PARTS]
    fov = ref.columns * ref.pixel_spacing[1]
    if fov < MIN_FIELD_OF_VIEW_MM:
        return _reject(f"its field of view is {fov:.0f} mm ({ref.columns} × {ref.pixel_spacing[1]:g} mm), too small "
                       f"to hold a head (at least {MIN_FIELD_OF_VIEW_MM:.0f} mm)")
    spacing = ref.slice_spacing  # of one slice: its SliceThickness (or 1 mm), not a distance between slices
    if ref.n_slices >= 2 and not MIN_SLICE_SPACING_MM <= spacing <= MAX_SLICE_MM:
        return _reject(f"its slices are {spacing:g} mm apart; a head CT has {MIN_SLICE_SPACING_MM:g} to "
                       f"{MAX_SLICE_MM:g} mm")
    if math.isfinite(ref.slice_thickness) and ref.slice_thickness > MAX_SLICE_MM:
        return _reject(f"its slices are {ref.slice_thickness:g} mm thick; a head CT has at most {MAX_SLICE_MM:g} mm")
    extent = spacing * (ref.n_slices - 1)
    if extent > MAX_EXTENT_MM:
        return _reject(f"it covers {extent:.0f} mm along the body, more than a head ({MAX_EXTENT_MM:.0f} mm at most): "
                       "a body or whole-body CT")
    return Verdict(warnings=tuple(warnings), facts={"extent_mm": round(extent, 1), "field_of_view_mm": round(fov, 1)})


def check_image_header(n_images: int, rows: int, columns: int, channels: int = 1) -> Verdict:
    """Judge an image series (a folder of pre-windowed slices) from its size alone; any number of
    images from 1 up (key images), a few with a warning."""
    problem = _matrix_problem(rows, columns)
    if problem:
        return _reject(problem.replace("slices declare", "images are").replace("slices are", "images are"))
    if n_images < 1:
        return _reject("it holds no images")
    return check_image_size(n_images, rows, columns, channels)


def few_slices_warning(n: int, noun: str = "slice") -> list[str]:
    """The series warning of a series shorter than a whole head CT (key images), scored as it is
    (:func:`isl_rt.io.series.load_series` adds it)."""
    if n >= MIN_SLICES:
        return []
    s = "s" if n != 1 else ""
    return [f"{n} {noun}{s}, fewer than a whole head CT ({MIN_SLICES} or more): scored as key images, the scan score "
            f"covers {'this' if n == 1 else 'these'} {noun}{s} only; rules that look at the neighbouring slice see "
            f"{'none' if n == 1 else 'only these'}"]


def check_image_size(n_images: int, rows: int, columns: int, channels: int = 1) -> Verdict:
    """Refuse an image series whose float volume would exceed ``MAX_SERIES_BYTES`` (what
    ``scan`` asks of a folder of images before decoding it; it may hold any number of slices)."""
    problem = _size_problem(rows, columns, n_images, channels=channels, itemsize=4, noun="images")
    return _reject(problem) if problem else Verdict()


# ---- per-slice statistics -------------------------------------------------------------------


@dataclass
class SliceStats:
    """What the pixel checks need of each slice; chunks concatenate with :meth:`extend`."""

    #: Standard deviation of each slice's values (HU, or [0, 1] for images).
    std: list[float] = field(default_factory=list)
    #: Share of pixels at or below AIR_HU, and above CT_SCALE_MAX_HU (CT only).
    air: list[float] = field(default_factory=list)
    above_scale: list[float] = field(default_factory=list)
    #: Cavity: area (mm², or share of the slice for images), width and length (mm; 0 for
    #: images), median value inside (HU or [0, 1]; NaN when there is no cavity).
    cavity_area: list[float] = field(default_factory=list)
    cavity_width: list[float] = field(default_factory=list)
    cavity_length: list[float] = field(default_factory=list)
    cavity_median: list[float] = field(default_factory=list)

    def extend(self, other: "SliceStats") -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    @property
    def n_slices(self) -> int:
        return len(self.std)


def _reduce(values: np.ndarray) -> tuple[np.ndarray, int]:
    """[n, H, W] -> [n, h, w] by block maximum with factor f (h = H // f), and f."""
    n, h, w = values.shape
    f = max(1, min(h, w) // GATE_SIDE)
    hh, ww = h // f, w // f
    if f == 1:
        return values, 1
    return values[:, : hh * f, : ww * f].reshape(n, hh, f, ww, f).max(axis=(2, 4)), f


def _cavity(bone: np.ndarray) -> np.ndarray:
    """bool [n, h, w]: pixels bone encloses along their row and column (the cavity kernel)."""
    x = np.ascontiguousarray(bone[:, None], dtype=np.float32)
    return kernels.cavity(x, 0, 0.5, 0) > 0


def _stats(values: np.ndarray, bone: np.ndarray, cavity_values: np.ndarray, pixel_mm: tuple[float, float] | None,
           air: np.ndarray | None, above: np.ndarray | None) -> SliceStats:
    out = SliceStats()
    reduced_bone, f = _reduce(bone)
    cavity = _cavity(reduced_bone)
    n = values.shape[0]
    for i in range(n):
        out.std.append(float(values[i].std(dtype=np.float64)))
        if air is not None and above is not None:
            out.air.append(float(air[i].mean()))
            out.above_scale.append(float(above[i].mean()))
        inside = cavity[i]
        count = int(inside.sum())
        rows_in, cols_in = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        length_px = float(rows_in[-1] - rows_in[0] + 1) * f if count else 0.0
        width_px = float(cols_in[-1] - cols_in[0] + 1) * f if count else 0.0
        if pixel_mm is None:
            out.cavity_area.append(count / inside.size)
            out.cavity_width.append(0.0)
            out.cavity_length.append(0.0)
        else:
            out.cavity_area.append(count * f * f * pixel_mm[0] * pixel_mm[1])
            out.cavity_width.append(width_px * pixel_mm[1])
            out.cavity_length.append(length_px * pixel_mm[0])
        out.cavity_median.append(float(np.median(cavity_values[i][inside])) if count else math.nan)
    return out


def _block_sample(values: np.ndarray) -> np.ndarray:
    """[n, H, W] -> the value at the centre of each gate block, aligned with :func:`_reduce`."""
    n, h, w = values.shape
    f = max(1, min(h, w) // GATE_SIDE)
    return values[:, f // 2 : (h // f) * f : f, f // 2 : (w // f) * f : f]


def ct_slice_stats(hu: np.ndarray, pixel_spacing: tuple[float, float]) -> SliceStats:
    """Per-slice statistics of an int16 HU chunk [n, H, W] with (row, column) spacing in mm."""
    hu = np.asarray(hu)
    return _stats(hu, hu >= BONE_HU, _block_sample(hu), pixel_spacing, hu <= AIR_HU, hu > CT_SCALE_MAX_HU)


def image_slice_stats(images: np.ndarray) -> SliceStats:
    """Per-slice statistics of pre-windowed images [n, C, H, W] in [0, 1] (the channel mean)."""
    gray = np.asarray(images, dtype=np.float32).mean(axis=1)
    return _stats(gray, gray >= BONE_IMAGE, _block_sample(gray), None, None, None)


# ---- series verdicts from the slice statistics ----------------------------------------------


def _uniform_problem(stats: SliceStats, level: float, unit: str) -> str | None:
    std = np.asarray(stats.std)
    uniform = std < level
    if uniform.size and uniform.mean() > 0.5:
        return (f"{int(uniform.sum())} of its {uniform.size} slices are uniform (standard deviation below {level:g}{unit}): "
                "blank or test images, not a head")
    return None


def _needed(n_slices: int) -> int:
    """Slices that must show a head: min(MIN_HEAD_SLICES, n) and the share MIN_HEAD_SLICE_SHARE,
    so one or two key images must each show one."""
    return max(min(MIN_HEAD_SLICES, max(n_slices, 1)), math.ceil(MIN_HEAD_SLICE_SHARE * n_slices))


def _uniform_warning(stats: SliceStats, level: float) -> list[str]:
    n = int((np.asarray(stats.std) < level).sum())
    return [f"{n} uniform slice(s) (blank) in the series"] if n else []


def check_ct_pixels(stats: SliceStats) -> Verdict:
    """Judge a CT series from the statistics of all its slices."""
    problem = _uniform_problem(stats, UNIFORM_STD_HU, " HU")
    if problem:
        return _reject(problem)
    air = float(np.mean(stats.air)) if stats.air else 0.0
    facts: dict[str, float | int | str] = {"air_fraction": round(air, 4)}
    if air < MIN_AIR_FRACTION:
        return _reject(f"no air anywhere (only {air:.2%} of its pixels at or below {AIR_HU:g} HU; a head CT holds air "
                       "around the head): its values are not CT numbers of a head, e.g. an MR series relabelled as CT",
                       facts)
    above = float(np.mean(stats.above_scale)) if stats.above_scale else 0.0
    if above > MAX_ABOVE_SCALE_FRACTION:
        return _reject(f"{above:.0%} of its pixels lie above {CT_SCALE_MAX_HU:g} HU, where only metal is: not CT numbers "
                       "of a head", facts)
    area = np.asarray(stats.cavity_area)
    width, length = np.asarray(stats.cavity_width), np.asarray(stats.cavity_length)
    median = np.asarray(stats.cavity_median)
    has = area >= MIN_CAVITY_MM2
    fits = has & (width <= MAX_CAVITY_WIDTH_MM) & (length <= MAX_CAVITY_LENGTH_MM)
    low, high = CAVITY_HU_RANGE
    brain = has & (median >= low) & (median <= high)
    head = fits & brain
    needed = _needed(area.size)
    facts.update(cavity_slices=int(has.sum()), head_slices=int(head.sum()))
    if int(head.sum()) >= needed:
        facts["cavity_median_hu"] = round(float(np.median(median[head])), 1)
        return Verdict(warnings=tuple(_uniform_warning(stats, UNIFORM_STD_HU)), facts=facts)
    shown = f"a head shows on {int(head.sum())} of its {area.size} slices, at least {needed} needed"
    if int(has.sum()) < needed:
        return _reject(f"no cranial cavity was found: bone encloses soft tissue on {int(has.sum())} of its "
                       f"{area.size} slices ({shown})", facts)
    if int((has & ~fits).sum()) >= int((has & ~brain).sum()):
        w, n = float(np.median(width[has])), float(np.median(length[has]))
        return _reject(f"the region bone encloses is {w:.0f} mm wide and {n:.0f} mm long (median over its slices), "
                       f"larger than the inside of any skull ({MAX_CAVITY_WIDTH_MM:.0f} × {MAX_CAVITY_LENGTH_MM:.0f} mm "
                       f"at most): not a head ({shown})", facts)
    m = float(np.median(median[has]))
    what = ("air-filled (lungs inside ribs, or an empty skull such as a skull phantom)" if m < low
            else "denser than any brain tissue")
    return _reject(f"the region bone encloses has a median of {m:.0f} HU, {what}; brain is 20-45 HU: not a head "
                   f"({shown})", facts)


def check_image_pixels(stats: SliceStats) -> Verdict:
    """Judge an image series (pre-windowed head CT) from the statistics of all its images."""
    problem = _uniform_problem(stats, UNIFORM_STD_IMAGE, "")
    if problem:
        return _reject(problem)
    area, median = np.asarray(stats.cavity_area), np.asarray(stats.cavity_median)
    has = area >= MIN_CAVITY_FRACTION
    head = has & (median > UNIFORM_STD_IMAGE) & (median < BONE_IMAGE)
    needed = _needed(area.size)
    facts: dict[str, float | int | str] = {"cavity_slices": int(has.sum()), "head_slices": int(head.sum())}
    if int(head.sum()) >= needed:
        facts["cavity_median"] = round(float(np.median(median[head])), 3)
        return Verdict(warnings=tuple(_uniform_warning(stats, UNIFORM_STD_IMAGE)), facts=facts)
    shown = f"a head shows on {int(head.sum())} of its {area.size} images, at least {needed} needed"
    if int(has.sum()) < needed:
        return _reject(f"no cranial cavity was found: white (bone) encloses grey on {int(has.sum())} of its "
                       f"{area.size} images ({shown})", facts)
    return _reject(f"the region white (bone) encloses is black or white, not grey brain: not a head in a brain window "
                   f"({shown})", facts)
