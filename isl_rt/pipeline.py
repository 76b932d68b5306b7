"""The ISL data flow of DESIGN.md, batched and streamed.

For one volume (:class:`Scorer`):

    HU int16 [N,H,W] -window+resize-> x [N,C,S,S] -canny-> e [N,C,S,S]
    (an image series: float [N,C,H,W] in [0,1] -window_images-> x, see :func:`model_input`)
    -fanout-> [n·G, 2C+1, S, S] per chunk of n slices -DeDN-> x̂ [n·G, C, S, S]
    -compose_diff-> x_dd, x_dif [N,C,S,S] -cavity-> x_dif zeroed outside the skull
    -DRN-> h [N,D]; slice score ‖h − c‖₂
    -heatmap-> heat [N,S,S], APDS [N];  scan score = mean of slice scores

The fan-out buffer is allocated once per scorer (sized for the DeDN batch) and written in place
by the native kernel, so the hot loop allocates only what the backend returns.

:func:`scan_directory` scores every series of the kind the bundle reads (DICOM CT or image
folders, :mod:`isl_rt.io.series`) under a folder: a row per series in the scores CSV, a row per
slice in ``<stem>.slices.csv``, per-series JSON and, on request, heat maps.
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from isl_rt import kernels
from isl_rt.backends.base import DEDN_BATCH, DRN_BATCH, Backend
from isl_rt.errors import InputError, IslError
from isl_rt.kernels.partition import Partition
from isl_rt.outputs import (
    SLICE_COLUMNS,
    ScoreTable,
    reconcile_slices,
    row_key,
    safe_name,
    slices_csv_path,
    write_atomic,
    write_json_atomic,
)

if TYPE_CHECKING:
    from isl_rt.bundle import Bundle, CavityArgs, ImageLevelSpec, ResidualArgs, ScanFusionSpec
    from isl_rt.io.series import LoadedSeries, SeriesItem, SetAside


@dataclass(frozen=True)
class ScanParams:
    """Everything the data flow needs from a model bundle, in runtime types."""

    size: int
    windows: np.ndarray  # float32 [C, 2] (level, width)
    partition: Partition
    canny_sigma: float
    canny_low: float
    canny_high: float
    heat_threshold: float
    heat_box: int
    heat_gamma: float
    centre: np.ndarray  # float32 [D]
    dedn_input: str = "masked"
    dedn_output: str = "inpainted"
    drn_input: str = "difference"
    drn_output: str = "embedding"
    #: the ``kernels.cavity`` arguments of the cranial cavity (bone channel, bone level in its [0,1]
    #: units, margin, sides, largest); None = whole slice
    cavity: CavityArgs | None = None
    #: what the networks read: "hu" (DICOM CT through the windows) or "image" (pre-windowed images)
    input_kind: str = "hu"
    #: the :func:`residual_scores` arguments when the signed residual scores slices; None = the
    #: DRN (the paper)
    residual: ResidualArgs | None = None
    #: the parts of a fused scan score (:func:`fusion_part_scores`); None = the mean slice score
    fusion: tuple[FusionArgs, ...] | None = None
    #: the median cavity gray image series are shifted to (:func:`match_level`); None = no shift
    image_level: float | None = None
    #: (level, width) in HU of the brain window a gray image bundle shows DICOM CT through
    #: (:func:`hu_to_gray`); None = an image bundle reads image series only
    hu_window: tuple[float, float] | None = None
    #: the interquartile range of the gray inside the cavity of an image bundle's own data
    #: (manifest image_level.spread); None = not measured (no contrast stretch)
    image_spread: float | None = None
    #: the cavity size of an image bundle's own data (manifest image_level.size: a share of the
    #: image's side); None = not measured (the field of view kept)
    image_size: float | None = None
    #: σ in the image's pixels of the Gaussian image series are smoothed with (manifest
    #: image_level.smooth); 0 = none
    image_smooth: float = 0.0
    #: whether gray image series are first mapped onto the bundle's presentation
    #: (:func:`present_series`: another site's window, gamma, padding, burned-in marks)
    present: bool = True

    def reads(self, kind: str) -> bool:
        """Whether a series of ``kind`` (``hu`` or ``image``) can be scored with these parameters."""
        return kind == self.input_kind or (kind == "hu" and self.hu_window is not None)

    @property
    def channels(self) -> int:
        return int(self.windows.shape[0])


@dataclass(frozen=True)
class FusionArgs:
    """One part of a fused scan score in runtime types (:class:`isl_rt.bundle.FusionPart`):
    ``kind`` slice, bright or dark; ``residual`` the :func:`residual_scores` arguments of a bright
    or dark part; the healthy ``median`` and ``spread`` (None: not fitted)."""

    kind: str
    residual: ResidualArgs | None
    median: float | None
    spread: float | None


def fusion_part_scores(x: np.ndarray, x_dd: np.ndarray, region: np.ndarray | None, slice_scores: np.ndarray,
                       fusion: Sequence[FusionArgs]) -> np.ndarray:
    """float64 [P]: the raw scan score of each part of a fused scan score for one series, over its
    scored slices only (a NaN slice score is a slice not scored, :func:`unscored_reasons`): the mean
    slice score (``slice``), or the mean over slices of the largest patch brighter (``bright``) or
    darker (``dark``: the slice and its dedisorder image swapped) than the dedisorder image. NaN
    parts when no slice was scored."""
    scored = ~np.isnan(slice_scores)
    out = np.full(len(fusion), np.nan, dtype=np.float64)
    if not scored.any():
        return out
    for i, part in enumerate(fusion):
        if part.kind == "slice":
            out[i] = float(np.mean(slice_scores[scored], dtype=np.float64))
        else:
            a, b = (x, x_dd) if part.kind == "bright" else (x_dd, x)
            out[i] = float(np.mean(residual_scores(a, b, region, part.residual)[0][scored], dtype=np.float64))
    return out


def on_healthy_scale(score: float, part: FusionArgs) -> float | None:
    """A part's raw score on its healthy scale, (score − median) / spread; None while not fitted."""
    if part.median is None or part.spread is None:
        return None
    return float((score - part.median) / part.spread)


def scan_parts_detail(part_scores: np.ndarray, fusion: Sequence[FusionArgs] | None) -> list[dict[str, Any]]:
    """The per-series JSON's account of a fused scan score: each part's kind, raw score and, once
    fitted, its score on the healthy scale."""
    return [{"kind": p.kind, "score": float(s), "healthy_scale": on_healthy_scale(s, p)}
            for s, p in zip(part_scores, fusion or ())]


def fused_scan_score(part_scores: np.ndarray, fusion: Sequence[FusionArgs]) -> float | None:
    """The largest part score on its healthy scale; None while the scales are not fitted."""
    scaled = [on_healthy_scale(s, p) for s, p in zip(part_scores, fusion)]
    return None if any(z is None for z in scaled) else max(scaled)  # type: ignore[type-var]


#: A slice is scored only when the region it is scored in (the cranial cavity) covers at least
#: this share of the slice (the input gate's smallest cavity for images, 0.5%): a slice without a
#: cavity has nothing the method can judge, and its residual would be an empty 0 that looks normal.
#: On the 2,920 slices of the real data set 396 fall below it (skull base and vertex), none of its
#: 603 haemorrhage slices.
MIN_REGION_FRACTION = 0.005

#: A series is scored only when at least this share of its slices (and at least one) is scored:
#: every series of the real data set (lowest 0.35) and of the phantom (about 0.87) lies above it. A
#: series below it is ``rejected`` with the reason: the cavity rule does not find this head, so a
#: scan score of its few slices would not judge it.
MIN_SCORED_SHARE = 0.2


def unscored_reasons(region: np.ndarray | None, n_slices: int) -> list[str]:
    """Per slice, why it is not scored ("" when it is): its cranial cavity ``region`` [N,S,S]
    (nonzero = inside; None = the whole slice is scored) was not found or is smaller than
    :data:`MIN_REGION_FRACTION` of the slice."""
    if region is None:
        return [""] * n_slices
    shares = (np.asarray(region) > 0).mean(axis=(1, 2))
    return ["" if share >= MIN_REGION_FRACTION else
            "not scored: no cranial cavity found (no skull enclosing brain on this slice)" if share == 0 else
            f"not scored: cranial cavity too small to judge ({100 * share:.2g}% of the slice, at least "
            f"{100 * MIN_REGION_FRACTION:g}% needed)" for share in shares]


def series_unscored_reason(scores: "VolumeScores") -> str | None:
    """Why a scored volume cannot be judged as a series (too few slices scored,
    :data:`MIN_SCORED_SHARE`), or None when it can."""
    n = int(scores.slice_scores.size)
    needed = max(1, int(np.ceil(MIN_SCORED_SHARE * n)))
    if scores.n_scored >= needed:
        return None
    return (f"only {scores.n_scored} of its {n} slice{'s' if n != 1 else ''} show a cranial cavity the bundle can find "
            f"(at least {needed} needed): the skull is not found around the brain (another window, or not a head), "
            "so no score would judge this series")


@dataclass
class VolumeScores:
    """Scores of one volume; arrays are per slice in the volume's slice order. A slice the method
    cannot judge (no cranial cavity) has a NaN slice score and APDS, a zero heat map and its reason
    in ``slice_reasons``; the scan score is over the scored slices."""

    slice_scores: np.ndarray  # float32 [N], NaN where not scored
    apds: np.ndarray  # float32 [N], NaN where not scored
    heat: np.ndarray  # float32 [N,S,S]
    x: np.ndarray  # float32 [N,C,S,S], the windowed input
    difference: np.ndarray  # float32 [N,C,S,S], x_dif as the DRN saw it
    seconds: dict[str, float] = field(default_factory=dict)
    #: float32 [N,S,S], 1 inside the scored region (the cranial cavity); None = the whole slice
    region: np.ndarray | None = None
    #: float32 [N,C,S,S], the dedisorder image x_dd (None where a caller built scores without it)
    inpainted: np.ndarray | None = None
    #: float64 [P], the raw scan scores of a fused scan score's parts (None: no fusion)
    part_scores: np.ndarray | None = None
    #: the fused scan score (None: the mean slice score is the scan score)
    fused: float | None = None
    #: how far an image series was shifted to the bundle's brain level (:func:`match_level`);
    #: None: not shifted (no level, or HU)
    level_shift: float | None = None
    #: per slice, why it was not scored ("" for a scored slice; empty tuple: every slice scored)
    slice_reasons: tuple[str, ...] = ()
    #: how an image series was mapped onto the bundle's presentation (:func:`present_series`);
    #: None: it was not (HU, or a bundle that does not)
    presentation: dict[str, Any] | None = None

    @property
    def scored(self) -> np.ndarray:
        """bool [N]: the slices that have a score."""
        return ~np.isnan(self.slice_scores)

    @property
    def n_scored(self) -> int:
        return int(np.count_nonzero(self.scored))

    @property
    def scan_score(self) -> float:
        """The fused scan score, else the mean of the scored slices' scores; NaN when none is scored."""
        if self.fused is not None:
            return self.fused
        return float(np.mean(self.slice_scores[self.scored], dtype=np.float64)) if self.n_scored else float("nan")

    @property
    def top_slice(self) -> int | None:
        """The index of the highest-scoring scored slice; None when no slice is scored."""
        return int(np.nanargmax(self.slice_scores)) if self.n_scored else None

    @property
    def max_slice_score(self) -> float:
        return float(np.nanmax(self.slice_scores)) if self.n_scored else float("nan")

    def reason(self, index: int) -> str:
        """Why slice ``index`` was not scored ("" when it was)."""
        return self.slice_reasons[index] if self.slice_reasons else ""


class Scorer:
    """Scores HU volumes with a DeDN and a DRN backend (both already active)."""

    def __init__(self, params: ScanParams, dedn: Backend, drn: Backend, *, dedn_batch: int = DEDN_BATCH,
                 drn_batch: int = DRN_BATCH) -> None:
        if dedn_batch < 1 or drn_batch < 1:
            raise InputError(f"Batch sizes must be at least 1, got DeDN {dedn_batch} and DRN {drn_batch}.")
        self.params = params
        self.dedn = dedn
        self.drn = drn
        self.groups = params.partition.groups
        self.group_map = params.partition.group_map(params.size)
        # slices per DeDN call: as many whole slices (G images each) as fit the batch, at least one
        self.slices_per_call = max(1, dedn_batch // self.groups)
        self.drn_batch = drn_batch
        c, s = params.channels, params.size
        self._fan = np.empty((self.slices_per_call * self.groups, 2 * c + 1, s, s), dtype=np.float32)

    def score(self, hu: np.ndarray) -> VolumeScores:
        """Scores of an HU volume int16 [N,H,W] (:func:`hu_input` says which bundles read HU)."""
        p = self.params
        if hu.ndim != 3 or hu.shape[0] == 0:
            raise InputError(f"A volume must be [slices, rows, columns] with at least one slice, got shape {hu.shape}.")
        timer = _Timer()
        with timer("kernels"):
            x = hu_input(hu, p)
        return self._score_input(x, timer)

    def score_series(self, series: "LoadedSeries") -> VolumeScores:
        """Scores of a loaded series of either kind (:func:`model_input` says which it accepts); a
        gray image series is first mapped onto the bundle's presentation (:func:`present_series`,
        unless it already was), and the scores say how (``presentation``)."""
        timer = _Timer()
        with timer("kernels"):
            series = present_series(series, self.params)
            x = model_input(series, self.params)
        scores = self._score_input(x, timer)
        scores.presentation = series.presentation
        return scores

    def _level_matched(self, x: np.ndarray) -> tuple[np.ndarray, float | None]:
        """x shifted to an image bundle's brain level (:func:`match_level`) and the shift; x as it is
        and None for a bundle without one."""
        p = self.params
        if p.image_level is None or p.cavity is None:  # an image bundle has both (the manifest says so)
            return x, None
        return match_level(x, p.cavity, p.image_level)

    def _score_input(self, x: np.ndarray, timer: "_Timer") -> VolumeScores:
        p = self.params
        with timer("kernels"):
            x, shift = self._level_matched(x)
            edges = kernels.canny(x, p.canny_low, p.canny_high, sigma=p.canny_sigma)
            x_dd = np.empty_like(x)
            x_dif = np.empty_like(x)
        n_slices = x.shape[0]
        for start in range(0, n_slices, self.slices_per_call):
            stop = min(n_slices, start + self.slices_per_call)
            n_images = (stop - start) * self.groups
            with timer("kernels"):
                batch = kernels.fanout(x[start:stop], edges[start:stop], self.group_map, self.groups, out=self._fan[:n_images])
            with timer("dedn"):
                xhat = self.dedn.infer({p.dedn_input: batch}, check=start == 0)[p.dedn_output]
            with timer("kernels"):
                kernels.compose_diff(
                    x[start:stop], xhat, self.group_map, self.groups, out_dd=x_dd[start:stop], out_dif=x_dif[start:stop]
                )
        region = None
        if p.cavity is not None:
            with timer("kernels"):
                region = mask_cavity(x, x_dif, p.cavity)
        if p.residual is not None:  # the signed residual scores slices and makes the heat map; no DRN
            with timer("kernels"):
                slice_scores, positive = residual_scores(x, x_dd, region, p.residual)
                heat, apds = kernels.heatmap(positive, x, p.heat_threshold, p.heat_box, p.heat_gamma)
        else:
            with timer("drn"):
                slice_scores = self.drn_scores(x_dif)
            with timer("kernels"):
                heat, apds = kernels.heatmap(x_dif, x, p.heat_threshold, p.heat_box, p.heat_gamma)
        # a slice without a cranial cavity is not scored: NaN, never the 0 its empty residual gives
        reasons = unscored_reasons(region, n_slices)
        unscored = np.array([bool(r) for r in reasons], dtype=bool)
        if unscored.any():
            slice_scores = np.where(unscored, np.float32(np.nan), slice_scores).astype(np.float32)
            apds = np.where(unscored, np.float32(np.nan), apds).astype(np.float32)
            heat[unscored] = 0.0
        part_scores = fused = None
        if p.fusion is not None:
            with timer("kernels"):
                part_scores = fusion_part_scores(x, x_dd, region, slice_scores, p.fusion)
                fused = None if np.isnan(part_scores).any() else fused_scan_score(part_scores, p.fusion)
        return VolumeScores(slice_scores=slice_scores, apds=apds, heat=heat, x=x, difference=x_dif, seconds=timer.seconds,
                            region=region, inpainted=x_dd, part_scores=part_scores, fused=fused,
                            level_shift=shift, slice_reasons=tuple(reasons))


    def drn_scores(self, x_dif: np.ndarray) -> np.ndarray:
        """The DRN's slice scores float32 [N] of difference images [N,C,S,S]: the distance of each
        embedding from the healthy centre."""
        p = self.params
        embeddings = [self.drn.infer({p.drn_input: x_dif[start : start + self.drn_batch]}, check=start == 0)[p.drn_output]
                      for start in range(0, x_dif.shape[0], self.drn_batch)]
        h = np.concatenate(embeddings, axis=0).astype(np.float64)
        return np.linalg.norm(h - p.centre.astype(np.float64)[None, :], axis=1).astype(np.float32)


def residual_scores(x: np.ndarray, x_dd: np.ndarray, region: np.ndarray | None,
                    residual: "ResidualArgs | tuple[Any, ...]") -> tuple[np.ndarray, np.ndarray]:
    """(slice scores float32 [N], positive residual float32 [N,C,S,S]) of a ``residual`` bundle
    (:class:`isl_rt.bundle.SliceScoreSpec`) for the slices of one series in slice order.
    ``residual`` is a :class:`isl_rt.bundle.ResidualArgs` or a tuple of its fields (channel,
    threshold[, measure[, inset[, adjacent]]]). The positive residual is max(x - x_dd, 0) inside
    ``region`` (None: everywhere) less the ``inset`` pixels along its border (the region eroded
    ``inset`` times by a 3×3 square; 0, the default: the whole region). The pixels of that channel
    whose residual exceeds the threshold are the bright pixels; with ``adjacent`` only those that
    are bright on the slice before or after too (:func:`adjacent_support`), and the positive
    residual returned for the heat map is zero elsewhere. A slice's score is the bright pixels'
    share of the slice (measure ``area``, the default) or the share of the slice covered by the
    largest 4-connected patch of them (measure ``largest``)."""
    from isl_rt.bundle import ResidualArgs

    channel, threshold, measure, inset, adjacent = ResidualArgs(*residual)
    positive = np.maximum(x - x_dd, 0.0, dtype=np.float32)
    if region is not None:
        positive *= inset_region(region, inset)[:, None]
    bright = positive[:, channel] > threshold
    if adjacent:
        bright = adjacent_support(bright)
        positive *= bright[:, None]
    if measure == "area":
        scores = bright.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
    elif measure == "largest":
        scores = (largest_patches(bright) / float(bright.shape[1] * bright.shape[2])).astype(np.float32)
    else:
        raise ValueError(f"residual measure {measure!r} is not area or largest")
    return scores, positive


def adjacent_support(mask: np.ndarray) -> np.ndarray:
    """bool [N,H,W]: the pixels of ``mask`` (bool [N,H,W], slices in order) that are also True at
    the same place on the slice before or the slice after. A series of one slice has no neighbour
    to ask and is returned unchanged, so it is scored as the slice alone (which flags more, not
    less). Blood fills a volume that reaches the next slice at 5 mm; the DeDN's errors of healthy
    tissue are specks that seldom fall on the same pixel twice."""
    mask = np.asarray(mask, dtype=bool)
    if len(mask) < 2:
        return mask.copy()
    either = np.zeros_like(mask)
    either[1:] = mask[:-1]
    either[:-1] |= mask[1:]
    return mask & either


def inset_region(region: np.ndarray, inset: int) -> np.ndarray:
    """bool [N,H,W]: ``region`` (nonzero = inside) without the pixels within ``inset`` steps of its
    outside (8-neighbour steps: the region eroded ``inset`` times by a 3×3 square; outside the
    slice counts as outside)."""
    inside = np.asarray(region) > 0
    if inset <= 0 or not inside.size:
        return inside
    from scipy import ndimage

    square = np.ones((1, 3, 3), dtype=bool)
    return ndimage.binary_erosion(inside, structure=square, iterations=int(inset), border_value=0)


def largest_patches(mask: np.ndarray) -> np.ndarray:
    """int64 [N]: the pixel count of the largest 4-connected patch of True in each slice of a
    bool [N,H,W] mask (0 for a slice with none)."""
    from scipy import ndimage

    four = ndimage.generate_binary_structure(2, 1)
    out = np.zeros(len(mask), dtype=np.int64)
    for i, m in enumerate(mask):
        labels, count = ndimage.label(m, structure=four)
        if count:
            out[i] = int(np.bincount(labels.ravel())[1:].max())
    return out


def model_input(series: "LoadedSeries", params: ScanParams) -> np.ndarray:
    """x float32 [N,C,S,S] of a loaded series for networks that read ``params.input_kind``.

    HU goes through the windows (``kernels.window``), images through the identity windows
    (``kernels.window_images``, the function training uses). Conversions: an image's bit depth
    never matters (both 8 and 16 bits are read into [0, 1]); an RGB series whose three channels
    are equal everywhere is the gray series it shows, so a gray bundle reads its first channel.
    A gray image bundle with a brain window (``params.hu_window``) reads HU too, through that window
    (:func:`hu_to_gray`), then as the image it makes. Refused with one sentence: HU for an image
    bundle without one, images for an HU bundle, gray for an RGB bundle and colour for a gray one
    (neither has one right answer). The brain level of an image bundle is matched after this
    (:meth:`Scorer.score_series`, :func:`match_level`).
    """
    from isl_rt.bundle import InputSpec

    want = InputSpec(params.input_kind, params.channels)
    if not params.reads(series.kind):
        what = "a DICOM CT series (HU)" if series.kind == "hu" else "an image series"
        raise InputError(f"This is {what}, but the bundle's networks read {want.describe()}: scan it with a bundle trained on such data.")
    if series.kind == "hu":
        return hu_input(series.pixels, params)
    images = series.pixels
    have = int(images.shape[1])
    if have == 3 and want.channels == 1:
        gray = gray_of_rgb(images)
        if gray is None:
            raise InputError(
                "These are colour (RGB) images, but the bundle's networks read gray images; a colour image has no one "
                "gray version: save the slices as gray images or scan them with an RGB bundle."
            )
        images = gray
    elif have != want.channels:
        raise InputError(
            f"These images have {have} channel(s), but the bundle's networks read {want.describe()}: "
            f"scan them with a bundle trained on {have}-channel images."
        )
    return kernels.window_images(images, params.windows, params.size)


def gray_of_rgb(images: np.ndarray) -> np.ndarray | None:
    """The gray series [N,1,H,W] an RGB series [N,3,H,W] shows when its three channels are equal
    everywhere (gray saved as RGB), else None (colour)."""
    if not (np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 0], images[:, 2])):
        return None
    return np.ascontiguousarray(images[:, :1])


def present_series(series: "LoadedSeries", params: ScanParams) -> "LoadedSeries":
    """``series`` mapped onto the presentation of a gray image bundle's own data
    (:func:`isl_rt.presentation.normalise_images`: another site's window or gamma undone, burned-in
    marks blanked, padded to a square), with the record of what was estimated in its
    ``presentation``; as it is for HU, colour images, a bundle that reads HU or has ``present``
    off, and a series already mapped."""
    from dataclasses import replace

    from isl_rt.presentation import normalise_images

    if (series.presentation is not None or series.kind != "image" or params.input_kind != "image"
            or params.channels != 1 or not params.present):
        return series
    images = series.pixels if series.pixels.shape[1] == 1 else gray_of_rgb(series.pixels)
    if images is None:
        return series  # colour: model_input refuses it in one sentence
    out, record = normalise_images(images, params.image_level, params.image_spread, params.image_size,
                                   smooth=params.image_smooth)
    return replace(series, pixels=out, presentation=record)


def unpad(array: np.ndarray, presentation: dict[str, Any] | None) -> np.ndarray:
    """``array`` [..., S', S'] on the square grid :func:`present_series` framed a series in, put
    back on the series' own grid (the padding recorded in ``presentation`` undone: what was added
    cut away, what was cut filled with 0; as it is without)."""
    from isl_rt.presentation import place

    if presentation is None or not any(presentation.get("pad") or ()):
        return array
    return place(array, [-int(v) for v in presentation["pad"]])


def presentation_notes(presentation: dict[str, Any] | None) -> list[str]:
    """One line per thing :func:`present_series` changed (none when it changed nothing), for the
    per-series warnings: scores of a series mapped this far were not measured on the bundle's data."""
    if presentation is None or presentation.get("identity", True):
        return []
    parts = []
    lo, hi = presentation.get("window") or (0.0, 1.0)
    if (lo, hi) != (0.0, 1.0):
        parts.append(f"its gray window was estimated from the image (air at {lo:.2f}, skull at {hi:.2f} of full scale) "
                     "and mapped to black and white")
    if presentation.get("gamma", 1.0) != 1.0:
        parts.append(f"a gamma of {presentation['gamma']:.2f} brought its brain to the bundle's level")
    if presentation.get("contrast", 1.0) != 1.0:
        parts.append(f"its brain contrast was stretched {presentation['contrast']:.2f}× (a wider brain window)")
    if presentation.get("blanked_pixels"):
        parts.append(f"{presentation['blanked_pixels']} pixels of marks outside the head were blanked")
    if presentation.get("scale", 1.0) != 1.0:
        parts.append(f"its field of view was scaled so the head shows {presentation['scale']:.2f}× as large "
                     f"(cranial cavity {presentation.get('cavity_size') or 0:.2f} of the image)")
    return ["this series is presented unlike the bundle's data: " + "; ".join(parts)] if parts else []


def hu_input(hu: np.ndarray, params: ScanParams) -> np.ndarray:
    """x float32 [N,C,S,S] of HU slices int16 [N,H,W]: through the windows of an HU bundle, or
    through the brain window of a gray image bundle (:func:`hu_to_gray`) and then read as the
    image it makes; an image bundle without one refuses them in one sentence."""
    if params.input_kind == "hu":
        return kernels.window(hu, params.windows, params.size)
    if params.hu_window is None:
        raise InputError("These are HU of DICOM CT, but the bundle's networks read pre-windowed images and it has no brain "
                         "window to show CT through (manifest input.hu_window): scan it with a bundle trained on such data.")
    return kernels.window_images(hu_to_gray(hu, *params.hu_window), params.windows, params.size)


def hu_to_gray(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """float32 [N,1,H,W]: HU slices int16 [N,H,W] shown through one brain window, as a site saves
    a pre-windowed 8-bit image: clip((HU − (level − width/2)) / width, 0, 1), rounded to 1/255
    steps, so the values are the ones an 8-bit image reader gives (k / 255)."""
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(level - width / 2.0)) / np.float32(width)
    steps = np.rint(np.clip(scaled, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return (steps.astype(np.float32) / 255.0)[:, None]


#: A brain-level shift larger than this (gray units) is reported with the series: the 40
#: validation and test patients of head-ct-real-tiny lie within 0.07 of its level, and the shift
#: was measured on series 0.05 lighter; beyond 0.1 the window differs more than anything measured.
LEVEL_SHIFT_WARNING = 0.1


def level_warnings(shift: float | None) -> list[str]:
    """The per-series warning of a brain-level shift beyond :data:`LEVEL_SHIFT_WARNING` (none
    within it, or without a shift)."""
    if shift is None or abs(shift) <= LEVEL_SHIFT_WARNING:
        return []
    side = "lighter" if shift < 0 else "darker"
    return [f"the brain inside the skull is {abs(shift):.2f} of full scale {side} than in the bundle's calibration "
            f"series (another window level?); it was shifted to match, but scores this far from the bundle's data "
            f"were not measured"]


#: Slices closer than this (mm) get a warning when the slice score counts only what is bright on
#: an adjacent slice too: the real bundle's data hold 24-69 slices per head (some 2-6 mm apart,
#: for a head 12-15 cm tall), and on thinner slices neighbours share the DeDN's errors, so healthy
#: slices score higher than the threshold was calibrated for (not measured: no thin-slice data).
THIN_SLICE_MM = 2.0


def thin_slice_warnings(spacing_mm: float | None, residual: "ResidualArgs | None") -> list[str]:
    """The per-series warning of slices thinner than :data:`THIN_SLICE_MM` under the ``adjacent``
    rule (none for a series of unknown spacing, such as an image folder, or another score)."""
    if spacing_mm is None or residual is None or not residual.adjacent or spacing_mm >= THIN_SLICE_MM:
        return []
    return [f"slices {spacing_mm:.3g} mm apart: the slice score counts only what is bright on an adjacent slice too, "
            f"calibrated on thicker slices; on slices this thin healthy slices score higher than its threshold "
            f"expects (not measured)"]


#: a pixel this close to black or white is black or white: resizing to the model's size by a
#: factor that is not a whole number sums weights that make a white pixel 0.99999994 in float32
#: (one 8-bit gray step is 0.0039)
SATURATED = 1e-4


def between_black_and_white(x: np.ndarray) -> np.ndarray:
    """bool: the pixels of ``x`` strictly between black and white, more than :data:`SATURATED` from either."""
    return (x > SATURATED) & (x < 1.0 - SATURATED)


def cavity_median(x: np.ndarray, cavity: CavityArgs) -> float | None:
    """The median gray of a series' cranial cavity: of the pixels of x [N,C,S,S] (cavity channel)
    inside :func:`cavity_mask` and strictly between black and white, over all its slices; None
    when no slice shows a cavity."""
    mask = cavity_mask(x, cavity) > 0
    values = x[:, cavity.channel][mask]
    values = values[between_black_and_white(values)]
    return float(np.median(values)) if values.size else None


def match_level(x: np.ndarray, cavity: CavityArgs, level: float) -> tuple[np.ndarray, float]:
    """(x shifted, the shift): every pixel of x [N,C,S,S] strictly between black and white moved by
    ``level`` − :func:`cavity_median` (kept within [0, 1]), so the series' cavity median is
    ``level``; black (air) and white (bone, saturated in any brain window) stay, also where resizing
    left them a rounding error away (:data:`SATURATED`). A series without a cavity is returned as it
    is (shift 0)."""
    median = cavity_median(x, cavity)
    if median is None:
        return x, 0.0
    shift = float(level) - median
    inside = between_black_and_white(x)
    return np.where(inside, np.clip(x + np.float32(shift), 0.0, 1.0), x).astype(np.float32, copy=False), shift


def fit_image_level(directory: Path, bundle: "Bundle") -> "ImageLevelSpec":
    """The brain level of the image series under ``directory`` (held-out healthy data of the
    bundle's own site): the median over the series of each series' :func:`cavity_median`, read as
    the bundle reads them without a level, and the median of each series' gray spread inside its
    skull and of each series' cavity size (:func:`isl_rt.presentation.skull_rings`, on the series
    as read). All describe the
    presentation of the bundle's own data: measure them on that data, not on another site's.
    Series that cannot be read or show no cavity are left out; :class:`InputError` when none is
    left."""
    from dataclasses import replace

    from isl_rt.bundle import ImageLevelSpec
    from isl_rt.io.series import discover_series, load_series
    from isl_rt.presentation import skull_rings

    params = replace(params_from_bundle(bundle), present=False)
    if params.input_kind != "image" or params.cavity is None:
        raise InputError(f"{bundle.root} is not a bundle of pre-windowed images scored inside the cranial cavity: "
                         "it has no brain level to match.")
    medians, spreads, sizes = [], [], []
    for item in discover_series(Path(directory)).of_kind("image"):
        try:
            series = load_series(item)
            median = cavity_median(model_input(series, params), params.cavity)
        except IslError:
            continue
        if median is not None:
            medians.append(median)
            rings = skull_rings(series.pixels[:, 0])
            spread, size = rings.spread(), rings.size()
            if spread is not None:
                spreads.append(spread)
            if size is not None:
                sizes.append(size)
    if not medians:
        raise InputError(f"{directory} holds no readable image series with a cranial cavity to measure the brain level on.")
    return ImageLevelSpec(float(np.median(medians)), len(medians), float(np.median(spreads)) if spreads else None,
                          float(np.median(sizes)) if sizes else None)


def cavity_mask(x: np.ndarray, cavity: CavityArgs) -> np.ndarray:
    """float32 [N,S,S]: 1 inside the cranial cavity of ``x`` [N,C,S,S] (the cavity kernel, less
    the pixels near the air around the head when ``cavity.air_margin`` says so)."""
    mask = kernels.cavity(x, cavity.channel, cavity.bone, cavity.margin, sides=cavity.sides, largest=cavity.largest)
    if cavity.air_margin:
        mask *= ~near_outside_air(x[:, cavity.channel], cavity.air_margin)
    return mask


def mask_cavity(x: np.ndarray, x_dif: np.ndarray, cavity: CavityArgs) -> np.ndarray:
    """Zero ``x_dif`` [N,C,S,S] in place outside the cranial cavity of ``x``; returns the mask [N,S,S]."""
    mask = cavity_mask(x, cavity)
    x_dif *= mask[:, None]
    return mask


def near_outside_air(image: np.ndarray, reach: int) -> np.ndarray:
    """bool [N,H,W]: the pixels within ``reach`` 8-neighbour steps of the air around the head in
    ``image`` [N,H,W] (one window, [0, 1]): the 4-connected patches below
    :data:`isl_rt.bundle.AIR_LEVEL` that touch the slice's edge, then grown ``reach`` times by a
    3×3 square. Dark pixels inside the skull (CSF, air in the cavity) do not touch the edge."""
    from scipy import ndimage

    from isl_rt.bundle import AIR_LEVEL

    dark = np.asarray(image) < AIR_LEVEL
    four = ndimage.generate_binary_structure(2, 1)
    air = np.zeros(dark.shape, dtype=bool)
    for i, d in enumerate(dark):
        labels, count = ndimage.label(d, structure=four)
        if count:
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            air[i] = np.isin(labels, edge[edge > 0])
    if reach <= 0 or not air.any():
        return air
    square = np.ones((1, 3, 3), dtype=bool)
    return ndimage.binary_dilation(air, structure=square, iterations=int(reach))


class _Timer:
    """Accumulates wall time per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> "_Stage":
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: _Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + time.perf_counter() - self.start


# ---- bundle -> parameters ----------------------------------------------------------------------
def with_stride(params: ScanParams, stride: int) -> ScanParams:
    """``params`` on the coarser partition ``Partition.strided(K, stride)``: stride² DeDN passes of
    non-adjacent cells per slice instead of the bundle's groups; stride 0 keeps the bundle's."""
    from dataclasses import replace

    if stride == 0:
        return params
    k = params.partition.k
    if not 2 <= stride <= k:
        raise IslError(f"--stride must be 0 (the bundle's partition) or 2..{k} (K = {k}), got {stride}.")
    return replace(params, partition=Partition.strided(k, stride))


def params_from_bundle(bundle: "Bundle") -> ScanParams:
    """The runtime parameters a bundle's manifest holds."""
    m = bundle.manifest
    return ScanParams(
        size=m.size,
        windows=bundle.windows_array,
        partition=bundle.partition(),
        canny_sigma=m.canny.sigma,
        canny_low=m.canny.low,
        canny_high=m.canny.high,
        heat_threshold=m.heatmap.threshold,
        heat_box=m.heatmap.box,
        heat_gamma=m.heatmap.gamma,
        centre=bundle.centre,
        dedn_input=m.files["dedn"].input,
        dedn_output=m.files["dedn"].output,
        drn_input=m.files["drn"].input,
        drn_output=m.files["drn"].output,
        cavity=None if m.cavity is None else m.cavity.resolve(m.windows),
        input_kind=m.input_spec.kind,
        residual=_residual_args(m),
        fusion=fusion_args(m.scan_fusion, m.windows),
        image_level=None if m.image_level is None else m.image_level.median,
        hu_window=None if m.input_spec.hu_window is None else (m.input_spec.hu_window.level, m.input_spec.hu_window.width),
        image_spread=None if m.image_level is None else m.image_level.spread,
        image_size=None if m.image_level is None else m.image_level.size,
        image_smooth=0.0 if m.image_level is None else m.image_level.smooth,
    )


def fusion_args(spec: "ScanFusionSpec | None", windows: Any) -> tuple[FusionArgs, ...] | None:
    """The runtime form of a bundle's scan fusion (None: none)."""
    if spec is None:
        return None
    return tuple(FusionArgs(p.kind, p.resolve(windows), p.median, p.spread) for p in spec.parts)


def _residual_args(manifest: Any) -> "ResidualArgs | None":
    spec = manifest.slice_score_spec
    return spec.resolve(manifest.windows) if spec.kind == "residual" else None


# ---- scanning a folder tree --------------------------------------------------------------------
@dataclass
class ScanSummary:
    """What one `scan` run did."""

    out: Path
    backend: str
    ok: int = 0
    errors: int = 0
    #: series the input gate found not to be a usable head CT (``rejected`` rows, no score)
    rejected: int = 0
    #: files discovery set aside on purpose (not DICOM, not axial CT, localizers, reports)
    skipped: int = 0
    resumed: int = 0
    slices: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0

    def add(self, outcome: "SeriesOutcome") -> None:
        """Count one scored series (ok, rejected or error)."""
        if outcome.row.get("status") == "rejected":
            self.rejected += 1
            return
        if outcome.row.get("status") != "ok":
            self.errors += 1
            return
        self.ok += 1
        self.slices += outcome.slices
        for stage, seconds in outcome.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


@dataclass
class SeriesOutcome:
    """What scoring one series produced (:func:`score_item`), for the one writer of the run."""

    #: the scores CSV row (status ok, rejected or error)
    row: dict[str, Any]
    #: its rows of ``<stem>.slices.csv`` (none for an error row)
    slice_rows: list[dict[str, Any]]
    #: the per-series JSON file's name without ``.json`` (:func:`isl_rt.outputs.safe_name` of the series key)
    json_name: str
    #: the per-series JSON document; None for an error row
    detail: dict[str, Any] | None = None
    slices: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesDone:
    """Progress event: one series (or set-aside item) finished, ``index`` of ``total`` this run has
    to do; ``row`` is its scores-CSV row, already written."""

    index: int
    total: int
    row: dict[str, Any]
    #: slices scored per second of this run so far
    slices_per_second: float
    #: slices of the series this run has still to score (as discovery counted them)
    slices_left: int = 0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the run ends at the rate so far; None before a slice was scored."""
        if self.slices_per_second <= 0:
            return None
        return self.slices_left / self.slices_per_second


@dataclass(frozen=True)
class SeriesResult:
    """One scored DICOM series, as a result writer (:class:`ResultWriter`) gets it."""

    #: SeriesInstanceUID, or an image series' folder id
    series_uid: str
    #: The source slice files in slice order (``scores`` and ``heat`` index them).
    files: tuple[Path, ...]
    scores: VolumeScores
    #: float32 [N, rows, columns]: the heat map resampled onto the source pixel grid.
    heat: np.ndarray
    #: The bundle's scan-score threshold and the share of healthy calibration scans scoring at or
    #: below this scan score (%); None for an uncalibrated bundle.
    threshold: float | None
    healthy_percentile: float | None
    #: "hu" (DICOM CT) or "image" (an image folder: no DICOM source)
    kind: str = "hu"
    #: The bundle's slice-score threshold (a slice above it is flagged); None when it has none.
    slice_threshold: float | None = None


class ResultWriter(Protocol):
    """Writes the results of one scored series somewhere (DICOM results: isl_rt.dicom_results);
    returns the files it wrote. An :class:`IslError` turns the series' row into an error row."""

    def write(self, result: SeriesResult) -> list[Path]: ...


def healthy_percentile(score: float, healthy_scores: Sequence[float]) -> float:
    """Share (in %) of the healthy calibration scans scoring at or below ``score``."""
    if not healthy_scores:
        return float("nan")
    ordered = np.sort(np.asarray(healthy_scores, dtype=np.float64))
    return float(100.0 * np.searchsorted(ordered, score, side="right") / ordered.size)


def restate_fused_scores(out_csv: Path, bundle: "Bundle") -> int:
    """Rewrite the scan scores of the scores CSV ``out_csv`` (and its per-series JSON) as ``bundle``
    fuses them now, from the raw part scores the scan wrote into each series' JSON: the scan score,
    its healthy percentile and flag, and each part on its healthy scale. ``isl-rt calibrate`` scans
    before it fits a fusion's scales; this makes its CSV say what a scan with the calibrated bundle
    says. Returns the number of rows restated (the ``ok`` rows); does nothing without a fitted fusion."""
    import csv

    from isl_rt.outputs import rewrite_score_rows

    m = bundle.manifest
    if m.scan_fusion is None or not m.scan_fusion.fitted:
        return 0
    fusion = fusion_args(m.scan_fusion, m.windows)
    assert fusion is not None
    threshold = m.threshold
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    restated = 0
    for row in rows:
        if row["status"] != "ok":
            continue
        path = series_json_dir(out_csv) / f"{safe_name(row['series'])}.json"
        detail, parts = series_part_scores(path)
        if parts.size != len(fusion):
            raise InputError(f"{path} holds {parts.size} part scores; the bundle's scan fusion has {len(fusion)} parts.")
        score = fused_scan_score(parts, fusion)
        flagged = None if threshold is None else score > threshold.scan_score
        percentile = None if threshold is None else healthy_percentile(score, threshold.healthy_scores)
        row.update(scan_score=score, flagged=flagged, healthy_percentile=percentile)
        detail.update(scan_score=score, flagged=flagged, healthy_percentile=percentile,
                      threshold=None if threshold is None else threshold.scan_score,
                      scan_parts=scan_parts_detail(parts, fusion))
        write_json_atomic(path, detail)
        restated += 1
    rewrite_score_rows(out_csv, rows)
    return restated


def series_part_scores(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """(the per-series JSON document at ``path``, the raw part scores float64 [P] of its fused scan
    score) as ``isl-rt scan`` wrote them."""
    import json

    try:
        detail = json.loads(Path(path).read_text())
        return detail, np.array([float(p["score"]) for p in detail["scan_parts"]], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} holds no part scores of the scan fusion ({type(err).__name__}: {err}).") from None


def series_json_dir(out_csv: Path) -> Path:
    """Where the per-series JSON files of ``out_csv`` go: ``<stem>.series/`` beside it."""
    return out_csv.parent / f"{out_csv.stem}.series"


#: beside the per-series JSON: which bundle wrote the scores CSV (a UID-named file never starts with "_")
RUN_FILE = "_run.json"


def run_key(bundle: "Bundle", partition: Partition, root: Path) -> dict[str, Any]:
    """What wrote a scores CSV: the bundle's name, the sha256 of its manifest (networks, centre,
    threshold, ...), the partition the scan used and the folder it scanned (``root``, resolved to
    an absolute path: the same folder named another way is the same folder)."""
    from isl_rt.bundle import sha256_file

    return {"bundle": bundle.manifest.name, "manifest_sha256": sha256_file(bundle.root / "manifest.json"),
            "partition": partition.to_dict(), "root": str(Path(root).resolve())}


def check_resume_key(out_csv: Path, bundle: "Bundle", partition: Partition, root: Path) -> None:
    """Raises :class:`InputError` when ``out_csv`` holds rows another bundle, partition or scanned
    folder wrote (what a resumed :func:`scan_directory` would refuse), before any work starts."""
    out_csv = Path(out_csv)
    _check_resume(out_csv, series_json_dir(out_csv), run_key(bundle, partition, root))


def _check_resume(out_csv: Path, json_dir: Path, key: dict[str, Any]) -> None:
    """Raises when ``out_csv`` already holds rows another bundle, partition or scanned folder wrote:
    a resumed run would mix their scores and flags, or two cohorts, with its own."""
    import json

    path = json_dir / RUN_FILE
    if not (out_csv.is_file() and out_csv.stat().st_size > 0 and path.is_file()):
        return
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    # a run key written before the scanned folder was recorded has no "root": such a CSV is
    # resumed from any folder, as it always was (the run then records its folder)
    if before.get("root", key["root"]) != key["root"]:
        raise InputError(
            f"{out_csv} holds the scores of {before['root']}, not of {key['root']}: pass another --out to scan "
            "this folder, or delete that file (or pass --no-resume) to start it again."
        )
    if before.get("manifest_sha256") != key["manifest_sha256"]:
        raise InputError(
            f"{out_csv} holds scores of bundle '{before.get('bundle', '?')}' (manifest sha256 "
            f"{str(before.get('manifest_sha256', '?'))[:12]}…), not of '{key['bundle']}' ({key['manifest_sha256'][:12]}…): "
            "their scores and flags would mix; choose another --out or pass --no-resume to start it over."
        )
    if before.get("partition", key["partition"]) != key["partition"]:
        raise InputError(
            f"{out_csv} holds scores of another partition ({Partition.from_dict(before['partition']).groups} DeDN passes per "
            f"slice, this run {Partition.from_dict(key['partition']).groups}): choose another --out, the same --stride, "
            "or pass --no-resume to start it over."
        )


def scan_directory(
    root: Path,
    out_csv: Path,
    bundle: "Bundle",
    scorer: Scorer,
    *,
    backend_name: str,
    resume: bool = True,
    heatmaps: Path | None = None,
    results: ResultWriter | None = None,
    top_slices: int = 3,
    on_series: Callable[[SeriesDone], None] | None = None,
    one_series_per_image: bool = False,
    run_root: Path | None = None,
) -> ScanSummary:
    """Score every series under ``root`` of the kind the bundle reads (DICOM CT or image folders);
    one CSV row per series, and one per item discovery set aside (``skipped``: not DICOM, not axial
    CT, a series of the other kind in a mixed tree, ...) or could not read (``error``), with its
    reason; one row per slice of each scored series in ``<stem>.slices.csv``. Rows are written as
    each series finishes, its slice rows first: on resume a series is in both files or in neither.

    Raises :class:`InputError` before writing anything when ``root`` holds nothing to scan or list
    (no file discovery could use or set aside), or series of the other
    kind only (an HU bundle given image folders, or the reverse), or when resuming a CSV that another
    bundle or partition wrote, or that holds the scores of another folder than ``run_root``
    (default ``root``; see :func:`run_key`).
    Pixel data of the next series is decoded on a worker thread while the current one is scored.
    A bad series becomes an error row and the run goes on. ``results`` (DICOM results, for
    example) gets every scored series before its row is written.
    """

    def score_all(todo: Sequence["SeriesItem"]) -> Iterator[SeriesOutcome]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="isl-load") as pool:
            pending = pool.submit(load_item, todo[0]) if todo else None
            for i, item in enumerate(todo):
                assert pending is not None
                loaded = pending.result()
                pending = pool.submit(load_item, todo[i + 1]) if i + 1 < len(todo) else None
                yield score_item(item, loaded, bundle, scorer, backend_name=backend_name, heatmaps=heatmaps,
                                 results=results, top_slices=top_slices)

    return scan_series(root, out_csv, bundle, scorer.params, score_all, backend_name=backend_name, resume=resume,
                       on_series=on_series, one_series_per_image=one_series_per_image, run_root=run_root)


#: An engine: scores the series to do and yields one outcome per series, in any order, each
#: exactly once (the local engine above, :mod:`isl_rt.ray_engine` on a Ray cluster).
ScoreAll = Callable[[Sequence["SeriesItem"]], Iterable["SeriesOutcome"]]


def scan_series(
    root: Path,
    out_csv: Path,
    bundle: "Bundle",
    params: ScanParams,
    score_all: ScoreAll,
    *,
    backend_name: str,
    resume: bool = True,
    on_series: Callable[[SeriesDone], None] | None = None,
    one_series_per_image: bool = False,
    run_root: Path | None = None,
) -> ScanSummary:
    """What :func:`scan_directory` does, with the scoring left to ``score_all``: discovery, the
    set-aside rows, the resume rules and the run key, and writing each outcome (per-series JSON,
    slice rows, then the scores row) as ``score_all`` yields it. Only this function writes the
    scores CSV, so an engine that scores a series twice (a retried task) still writes one row.
    The run key names ``run_root`` as the scanned folder (default ``root``): the DICOM node scans
    one series folder at a time into one CSV, all under its store."""
    from isl_rt.io.series import KIND_WORDS, discover_series, nothing_to_scan

    out_csv = Path(out_csv)
    found = discover_series(Path(root), one_series_per_image=one_series_per_image)
    kind = params.input_kind
    mine = [s for s in found.series if params.reads(s.kind)]
    others = [s for s in found.series if not params.reads(s.kind)]
    if others and not mine:
        raise InputError(
            f"{root} holds {len(others)} {KIND_WORDS[others[0].kind]} and no {KIND_WORDS[kind]}, but bundle "
            f"'{bundle.manifest.name}' reads {bundle.manifest.input_spec.describe()}: pass a bundle trained on such data (--bundle)."
        )
    if not found.series and not found.set_aside:  # nothing to score and no row to write: no empty CSVs either
        raise nothing_to_scan(root)
    summary = ScanSummary(out=out_csv, backend=backend_name)
    json_dir = series_json_dir(out_csv)
    key = run_key(bundle, params.partition, root if run_root is None else run_root)
    if resume:
        _check_resume(out_csv, json_dir, key)
    start = time.perf_counter()
    with ScoreTable(out_csv, resume=resume) as table, \
            ScoreTable(slices_csv_path(out_csv), resume=resume, columns=SLICE_COLUMNS) as slice_table:
        reconcile_slices(table, slice_table)
        write_json_atomic(json_dir / RUN_FILE, key)
        # Items discovery could not use, and series of the kind the bundle does not read: one skipped
        # or error row each, keyed by path (a bad file of a good series must not mark that series as
        # done for --resume).
        set_aside_rows = [_set_aside_row(item) for item in found.set_aside]
        set_aside_rows += [
            {"path": str(item.path), "series": item.key, "status": "skipped", "n_slices": item.n_slices,
             "error": f"skipped: an {'image' if item.kind == 'image' else 'HU'} series, but bundle '{bundle.manifest.name}' "
                      f"reads {bundle.manifest.input_spec.describe()}"}
            for item in others
        ]
        todo = []
        for item in mine:
            if table.done(row_key(_identity(item))):
                summary.resumed += 1
            else:
                todo.append(item)
        total = len(todo) + sum(not table.done(row_key(r)) for r in set_aside_rows)
        slices_left = sum(item.n_slices for item in todo)
        index = 0
        for row in set_aside_rows:
            if table.done(row_key(row)):
                summary.resumed += 1
                continue
            table.append(row)
            if row["status"] == "error":
                summary.errors += 1
            else:
                summary.skipped += 1
            index += 1
            if on_series:
                on_series(SeriesDone(index, total, row, summary.slices_per_second, slices_left))
        for outcome in score_all(todo):
            if table.done(row_key(outcome.row)):
                continue  # an engine that yielded a series twice: its first row stands
            write_detail(outcome, json_dir)
            slice_table.append_many(outcome.slice_rows)  # first: a crash between the two leaves slices that resume drops
            table.append(outcome.row)
            summary.add(outcome)
            index += 1
            slices_left = max(0, slices_left - int(outcome.row.get("n_slices") or 0))
            summary.seconds = time.perf_counter() - start
            if on_series:
                on_series(SeriesDone(index, total, outcome.row, summary.slices_per_second, slices_left))
    summary.seconds = time.perf_counter() - start
    return summary


def write_detail(outcome: "SeriesOutcome", json_dir: Path) -> None:
    """Write the per-series JSON of a scored series into ``json_dir`` (nothing for an error row), its
    heat-map folder relative to ``json_dir`` so the outputs can move together."""
    detail = outcome.detail
    if detail is None:
        return
    if detail.get("heatmaps") is not None:
        detail = {**detail, "heatmaps": os.path.relpath(Path(detail["heatmaps"]), json_dir.resolve())}
    write_json_atomic(json_dir / f"{outcome.json_name}.json", detail)


def score_series_item(item: "SeriesItem", loaded: "LoadedSeries | IslError", bundle: "Bundle", scorer: Scorer,
                      json_dir: Path, summary: ScanSummary) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What :func:`scan_directory` does with one decoded series, without heat maps or DICOM results:
    score it, write its per-series JSON into ``json_dir`` and return its scores row and slice rows
    (an ``error`` row and no slice rows when it failed). ``isl-rt bench`` times scans with it."""
    outcome = score_item(item, loaded, bundle, scorer, backend_name=summary.backend, top_slices=0)
    write_detail(outcome, json_dir)
    summary.add(outcome)
    return outcome.row, outcome.slice_rows


def _set_aside_row(item: "SetAside") -> dict[str, Any]:
    reason = item.reason if item.status == "error" else f"skipped: {item.reason}"
    if item.series:
        reason += f" (series {item.series})"
    return {"path": str(item.path), "series": item.series or "", "status": item.status, "error": reason}


def gate_series(item: "SeriesItem", series: "LoadedSeries") -> Any:
    """The input gate's verdict (``isl_rt.io.gate``) on one loaded series: its pixels (DICOM CT in
    HU, whose headers :func:`load_item` checked before decoding; images)."""
    from isl_rt.io import gate

    if series.kind == "hu":  # its headers passed the gate before it was decoded (load_item)
        return gate.check_ct_pixels(gate.ct_slice_stats(series.pixels, item.ref.pixel_spacing))
    # images: the pixel checks only; a folder of images may hold a few chosen slices, not a whole
    # series, so the slice count of a head CT is not asked of it (the decode bounds still hold)
    return gate.check_image_pixels(gate.image_slice_stats(series.pixels))


def _identity(item: "SeriesItem") -> dict[str, Any]:
    """The columns that identify a series in the scores CSV."""
    return {"path": str(item.path), "series": item.key, "StudyInstanceUID": item.study_uid,
            "SeriesInstanceUID": item.series_uid}


def load_item(item: "SeriesItem") -> Any:
    """Decode one series; an IslError is returned (not raised) so the batch goes on."""
    from isl_rt.io.series import load_series

    from isl_rt.io import gate

    # the gate's header checks first: an absurd or oversized series is never decoded
    if item.kind == "hu":
        verdict = gate.check_ct_header(item.ref)
    else:
        verdict = gate.check_image_size(item.n_slices, item.ref.rows, item.ref.columns, max(item.channels, 1))
    if not verdict.usable:
        return verdict
    try:
        return load_series(item)
    except IslError as err:
        return err


def failed_outcome(item: "SeriesItem", reason: str, *, seconds: float = 0.0, status: str = "error") -> SeriesOutcome:
    """The row of a series that was not scored, with its reason: ``error`` (it could not be) or
    ``rejected`` (the input gate found it not to be a usable head CT)."""
    row = {**_identity(item), "n_slices": item.n_slices, "status": status, "error": reason, "seconds": seconds}
    return SeriesOutcome(row, [], safe_name(item.key))


def score_item(
    item: "SeriesItem",
    loaded: Any,
    bundle: "Bundle",
    scorer: Scorer,
    *,
    backend_name: str,
    heatmaps: Path | None = None,
    results: ResultWriter | None = None,
    top_slices: int = 3,
) -> SeriesOutcome:
    """Score one series decoded by :func:`load_item` (or the IslError it returned): its scores row,
    its slice rows and its per-series JSON document (an error row and nothing else when it failed).
    Writes the heat maps and hands the series to ``results`` itself; the rows and the JSON are for
    the caller to write (:func:`scan_series`), so this runs wherever the scorer is."""
    began = time.perf_counter()
    threshold = bundle.manifest.threshold
    slice_threshold = bundle.manifest.slice_threshold
    name = safe_name(item.key)
    row: dict[str, Any] = {**_identity(item), "n_slices": item.n_slices}

    def failed(reason: str, status: str = "error") -> SeriesOutcome:
        return failed_outcome(item, reason, seconds=time.perf_counter() - began, status=status)

    try:
        if isinstance(loaded, IslError):
            raise loaded
        from isl_rt.io.gate import Verdict

        series: LoadedSeries = loaded
        # the gate judges an image series as the bundle will see it (another site's window mapped)
        presented = series if isinstance(loaded, Verdict) else present_series(series, scorer.params)
        verdict = loaded if isinstance(loaded, Verdict) else gate_series(item, presented)
        if not verdict.usable:  # not a usable head CT: a reason, never a score that looks normal
            return failed(f"not scored: {verdict.reason}", status="rejected")
        scores = scorer.score_series(presented)
        unjudged = series_unscored_reason(scores)
        if unjudged is not None:  # too few slices with a cavity: a reason, never a scan score of the rest
            return failed(f"not scored: {unjudged}", status="rejected")
    except IslError as err:
        return failed(str(err))
    scan_score = scores.scan_score
    flagged = None if threshold is None else scan_score > threshold.scan_score
    percentile = None if threshold is None else healthy_percentile(scan_score, threshold.healthy_scores)
    row.update(
        n_slices=int(scores.slice_scores.size),
        n_scored=scores.n_scored,
        scan_score=scan_score,
        healthy_percentile=percentile,
        flagged=flagged,
        top_slice=scores.top_slice,
        max_slice_score=scores.max_slice_score,
        apds=float(np.mean(scores.apds[scores.scored], dtype=np.float64)),
        status="ok",
        error="",
    )
    slice_rows = [slice_row(item.key, i, series.sources[i], scores, slice_threshold) for i in range(series.n_slices)]
    wanted = heatmaps is not None or results is not None
    heat = unpad(heat_on_source_grid(scores.heat, presented.grid), scores.presentation) if wanted else None
    if results is not None:
        try:
            results.write(SeriesResult(item.series_uid or item.key, tuple(item.ref.files), scores, heat,
                                       None if threshold is None else threshold.scan_score, percentile, series.kind,
                                       None if slice_threshold is None else slice_threshold.slice_score))
        except IslError as err:
            return failed(f"scored, but its results could not be written: {err}")
    heat_folder = None if heatmaps is None else Path(heatmaps) / name
    if heat_folder is not None:
        write_heatmaps(heat_folder, series.display(), scores, heat,
                       slice_threshold=None if slice_threshold is None else slice_threshold.slice_score, top=top_slices)
    row["seconds"] = time.perf_counter() - began
    detail = {
        **row,
        "kind": series.kind,
        "SeriesDescription": item.description,
        "SeriesNumber": item.series_number,
        "metadata": series.metadata,
        "bundle": bundle.manifest.name,
        "windows": [{"name": w.name, "level": w.level, "width": w.width} for w in bundle.manifest.windows],
        # the brain window an image bundle showed this DICOM series through (None: not one)
        "hu_window": None if series.kind != "hu" or scorer.params.input_kind == "hu" else
                     {"level": scorer.params.hu_window[0], "width": scorer.params.hu_window[1]},
        # absolute here; relative to the JSON's folder when written, so the outputs can move together
        "heatmaps": None if heat_folder is None else heat_folder.resolve(),
        "backend": backend_name,
        "dedn_passes_per_slice": scorer.groups,
        "threshold": None if threshold is None else threshold.scan_score,
        "slice_threshold": None if slice_threshold is None else slice_threshold.slice_score,
        # null for a slice not scored, with its reason in slice_reasons
        "slice_scores": _nullable(scores.slice_scores),
        "slice_reasons": [scores.reason(i) for i in range(series.n_slices)],
        "scan_parts": None if scores.part_scores is None else scan_parts_detail(scores.part_scores, scorer.params.fusion),
        "level_shift": scores.level_shift,
        # how an image series was mapped onto the bundle's presentation (None: not mapped)
        "presentation": scores.presentation,
        "slice_apds": _nullable(scores.apds),
        "slice_sources": list(series.sources),
        "slice_positions_mm": series.positions_mm,
        "bit_depth": series.bit_depth or None,
        "warnings": list(series.warnings) + presentation_notes(scores.presentation) + level_warnings(scores.level_shift)
        + thin_slice_warnings(item.ref.slice_spacing if series.kind == "hu" else None, scorer.params.residual),
        "stage_seconds": scores.seconds,
    }
    return SeriesOutcome(row, slice_rows, name, detail, int(scores.slice_scores.size), dict(scores.seconds))


def slice_row(series_key: str, index: int, source: str, scores: VolumeScores, slice_threshold: Any) -> dict[str, Any]:
    """A row of ``<stem>.slices.csv``: a scored slice's score, APDS and flag; a slice not scored has
    empty score, APDS and flag and its ``reason``."""
    reason = scores.reason(index)
    if reason:
        return {"series": series_key, "slice": index, "source": source, "slice_score": None, "apds": None,
                "flagged": None, "reason": reason}
    score = float(scores.slice_scores[index])
    return {"series": series_key, "slice": index, "source": source, "slice_score": score,
            "apds": float(scores.apds[index]),
            "flagged": None if slice_threshold is None else bool(score > slice_threshold.slice_score), "reason": ""}


def _nullable(values: np.ndarray) -> list[float | None]:
    """A per-slice array as JSON: null where NaN (a slice not scored)."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def region_on_source_grid(region: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """bool [N, rows, columns]: the scored region [N,S,S] (nonzero = inside) on the source pixel
    grid ``shape`` = (rows, columns), nearest neighbour: a source pixel takes the region of the
    model pixel it falls in."""
    h, w = shape[-2], shape[-1]
    s_h, s_w = region.shape[-2], region.shape[-1]
    iy = np.minimum((np.arange(h) + 0.5) * s_h / h, s_h - 1).astype(np.intp)
    ix = np.minimum((np.arange(w) + 0.5) * s_w / w, s_w - 1).astype(np.intp)
    return np.asarray(region)[:, iy][:, :, ix] > 0


def heat_on_source_grid(heat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The heat maps [N,S,S] resampled onto the source pixel grid ``shape`` = (rows, columns):
    float32 [N, rows, columns]."""
    from isl_rt.kernels.reference import resample_matrix

    h, w = int(shape[0]), int(shape[1])
    s = heat.shape[-1]
    ry, rx = resample_matrix(s, h).astype(np.float32), resample_matrix(s, w).astype(np.float32)
    full = np.empty((heat.shape[0], h, w), dtype=np.float32)
    for i in range(heat.shape[0]):
        np.matmul(ry @ heat[i], rx.T, out=full[i])
    return full


def write_heatmaps(folder: Path, display: np.ndarray, scores: VolumeScores, heat: np.ndarray, *,
                   slice_threshold: float | None, top: int) -> None:
    """Heat maps of one series: ``heatmaps.npz`` (``heat`` float16 [N,H,W], the heat map on the
    source pixel grid (:func:`heat_on_source_grid`), and ``region`` uint8 [N,H,W], 1 inside the
    scored region, when the bundle scores the cranial cavity only), PNG overlays of the ``top``
    highest-scoring slices on ``display`` (float [N,H,W] in [0,1], e.g. the brain window), and the
    slice-score curve (the paper's Figure 5) as ``slice_scores.png`` with the bundle's slice-score
    threshold (the one that flags slices in the slices CSV; None: no line), slices numbered from 0
    as in the CSVs."""
    from isl_rt import plots

    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = display.shape
    full = heat.astype(np.float16)
    arrays: dict[str, np.ndarray] = {"heat": full, "slice_scores": scores.slice_scores, "apds": scores.apds}
    if scores.region is not None:  # on the grid the series was padded to, then cut back to its own
        pad = (scores.presentation or {}).get("pad") or (0, 0, 0, 0)
        grid = (h + pad[0] + pad[1], w + pad[2] + pad[3])
        arrays["region"] = unpad(region_on_source_grid(scores.region, grid), scores.presentation).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(folder / "heatmaps.npz", buffer.getvalue())
    for rank, index in enumerate(np.argsort(-scores.slice_scores)[:top]):
        plots.heat_overlay(folder / f"top{rank + 1}_slice{int(index):03d}.png", display[index], full[index].astype(np.float32))
    plots.line_chart(
        folder / "slice_scores.png",
        [plots.Series(np.arange(n), scores.slice_scores, "slice score")],
        title="Slice scores from skull base (left) to vertex (right)"
              + ("" if slice_threshold is None else f"; red line: slice threshold {slice_threshold:.4g}"),
        xlabel="slice (from 0)",
        ylabel="slice score",
        hline=slice_threshold,
    )
