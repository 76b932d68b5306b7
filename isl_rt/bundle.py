"""The model bundle: the contract between training and the runtime.

A bundle is a folder ``export/<name>/`` holding ``manifest.json``, ``dedn.onnx`` and ``drn.onnx``.
The manifest (:class:`Manifest`) says what the networks were trained on (:class:`InputSpec`: HU
of DICOM CT, or pre-windowed images and their channel count), how to turn that into model input
(windows, size S, Canny parameters), how slices are split for inpainting (the mask partition),
the names and sha256 of both networks, the DRN centre ``c``, the calibrated scan-score and
slice-score thresholds, the heat-map parameters, and what the models were trained on.

:func:`load_bundle` refuses a bundle that is incomplete, of an unknown format version, or whose
files were changed after export, each time with a :class:`~isl_rt.errors.BundleError` sentence
naming the file and what is wrong. :func:`calibrate_threshold` turns the scan scores of held-out
healthy scans into the threshold, :func:`calibrate_slice_threshold` the slice scores of held-out
healthy slices into the slice threshold.

Format versions: 3 (written) adds ``input`` and ``slice_threshold``; 2 (still read) has neither,
and its networks read HU windows.

This module is part of the runtime: it imports numpy and the standard library only, never torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from isl_rt.errors import BundleError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.kernels.partition import Partition

__all__ = [
    "CavityArgs",
    "CavitySpec",
    "DEFAULT_CAVITY",
    "DEFAULT_HEATMAP",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "DEFAULT_WINDOWS",
    "QUANTILE_LEVELS",
    "Bundle",
    "CannySpec",
    "DRNSpec",
    "FileSpec",
    "HeatmapSpec",
    "HuWindowSpec",
    "InputSpec",
    "Manifest",
    "PartitionSpec",
    "SliceThresholdSpec",
    "ThresholdSpec",
    "TrainingSpec",
    "WindowSpec",
    "calibrate_bundle",
    "calibrate_slice_threshold",
    "calibrate_threshold",
    "image_windows",
    "load_bundle",
    "manifest_from_dict",
    "sha256_file",
    "write_manifest",
]

#: The manifest format this isl-rt writes (2 added the cranial cavity of the scores, 3 the input
#: kind and the slice threshold), and the ones it reads.
FORMAT_VERSION = 3
READ_VERSIONS: tuple[int, ...] = (2, 3)
MANIFEST_NAME = "manifest.json"
#: The networks every bundle holds (ONNX), and the torch weights a bundle may carry for the
#: torch backend (state dicts of the same networks, see isl_rt.backends.torch).
REQUIRED_FILES: tuple[str, ...] = ("dedn", "drn")
OPTIONAL_FILES: tuple[str, ...] = ("dedn_torch", "drn_torch")
#: Quantile levels of the healthy scan scores stored with the threshold.
QUANTILE_LEVELS: tuple[str, ...] = ("0.5", "0.9", "0.95", "0.99")


# ---- schema ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowSpec:
    """One HU display window: channel ``name`` shows HU in [level - width/2, level + width/2]."""

    name: str
    level: float
    width: float


#: brain (40, 80), subdural (75, 215), bone (600, 2800): the usual clinical head-CT windows.
DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("brain", 40.0, 80.0),
    WindowSpec("subdural", 75.0, 215.0),
    WindowSpec("bone", 600.0, 2800.0),
)


def image_windows(channels: int) -> tuple[WindowSpec, ...]:
    """The identity windows of pre-windowed images, one per image channel (``gray``, or ``red``,
    ``green``, ``blue``): level 2000 and width 4000 on the pseudo-HU round(v · 4000) of a value v in
    [0, 1] (``isl_rt.kernels.window_images``), so a channel's [0, 1] units are the image's own."""
    from isl_rt.kernels import IMAGE_HU_SCALE

    names = ["gray"] if channels == 1 else ["red", "green", "blue"] if channels == 3 else [f"c{i}" for i in range(channels)]
    half = IMAGE_HU_SCALE / 2
    return tuple(WindowSpec(name, half, float(IMAGE_HU_SCALE)) for name in names)


#: What the networks read: ``hu`` (DICOM CT in Hounsfield units, through the bundle's windows)
#: or ``image`` (pre-windowed PNG/JPEG/TIFF in [0, 1], through :func:`image_windows`).
INPUT_KINDS: tuple[str, ...] = ("hu", "image")


@dataclass(frozen=True)
class HuWindowSpec:
    """The brain window that made a gray image bundle's training images (manifest
    ``input.hu_window``): a DICOM CT series is shown through it, HU in [level - width/2,
    level + width/2] to gray in [0, 1] at 8 bits, and then read as such an image
    (:func:`isl_rt.pipeline.hu_to_gray`)."""

    level: float
    width: float

    def describe(self) -> str:
        return f"window level {self.level:g} HU, width {self.width:g} HU"


@dataclass(frozen=True)
class InputSpec:
    """What the networks were trained on: ``kind`` ``hu`` or ``image``, and the number of input
    channels (the windows of HU, or the image channels: 1 gray, 3 RGB). A gray image bundle with
    an ``hu_window`` reads DICOM CT too, through that window."""

    kind: str
    channels: int
    hu_window: HuWindowSpec | None = None

    def reads(self, kind: str) -> bool:
        """Whether a series of ``kind`` (``hu`` or ``image``) can be scored."""
        return kind == self.kind or (kind == "hu" and self.hu_window is not None)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``input`` (``hu_window`` only when there is one)."""
        data = asdict(self)
        if self.hu_window is None:
            del data["hu_window"]
        return data

    @classmethod
    def for_windows(cls, windows: Sequence[WindowSpec]) -> InputSpec:
        """``image`` when ``windows`` are exactly :func:`image_windows` (how training reads image
        folders), else ``hu``."""
        windows = tuple(windows)
        kind = "image" if windows == image_windows(len(windows)) else "hu"
        return cls(kind, len(windows))

    def describe(self) -> str:
        if self.kind == "hu":
            return f"HU of DICOM CT through {self.channels} window(s)"
        colour = "gray" if self.channels == 1 else "RGB" if self.channels == 3 else f"{self.channels}-channel"
        images = f"pre-windowed {colour} images (PNG/JPEG/TIFF)"
        if self.hu_window is None:
            return images
        return f"{images}, or HU of DICOM CT through one brain window ({self.hu_window.describe()})"


@dataclass(frozen=True)
class ImageLevelSpec:
    """The brain level of an image bundle's own data (manifest ``image_level``): the median, over
    the healthy series ``isl-rt calibrate --match-level`` read, of each series' median gray inside
    its cranial cavity (pixels strictly between black and white). At scan time each image series
    is shifted so that its own median matches it (:func:`isl_rt.pipeline.match_level`): another
    site's brain window with another level shows the same tissue a few grey steps lighter or
    darker, which the DeDN, trained on one site's grey, paints back at its own and so reads as
    bright residual everywhere.

    ``spread`` (optional) is the median over the same series of the interquartile range of that
    gray: a series whose own spread is far narrower (another site's wider brain window, with the
    skull still white) is stretched back to it (:mod:`isl_rt.presentation`); None = not measured.

    ``size`` (optional) is the median over the same series of each series' cavity size (the side
    of the box around its cranial cavity on its larger slices, a share of the image's side): a
    series far from it (cropped tight to the skull, or a small head on a wide canvas) is framed
    so its cavity shows at this size (:mod:`isl_rt.presentation`, rule 9); None = not measured.

    ``smooth`` is the σ (in the image's own pixels) of the Gaussian every image series is smoothed
    with before the networks (:mod:`isl_rt.presentation`, rule 0): it softens the block edges and
    ringing of a JPEG history, which otherwise cost the slice score much of its accuracy; 0 = none. The
    thresholds are calibrated on series smoothed so (``isl-rt calibrate --match-level --smooth``)."""

    median: float
    n_series: int
    spread: float | None = None
    size: float | None = None
    smooth: float = 0.0

    def describe(self) -> str:
        text = (f"each series shifted so the median gray of its cranial cavity is {self.median:.4g} "
                f"(the median of {self.n_series} healthy series)")
        if self.spread is not None:
            text += f"; its interquartile range {self.spread:.4g}"
        if self.size is not None:
            text += f"; the cranial cavity {self.size:.3g} of the image's side"
        if self.smooth:
            text += f"; smoothed with a Gaussian of σ {self.smooth:.3g} px"
        return text


@dataclass(frozen=True)
class PartitionSpec:
    """The mask partition: a K×K grid and the group of every cell (``Partition.to_dict`` form)."""

    k: int
    cell_group: list[list[int]]

    @property
    def groups(self) -> int:
        return int(max(max(row) for row in self.cell_group)) + 1

    def partition(self) -> Partition:
        """The :class:`isl_rt.kernels.partition.Partition` this spec describes."""
        from isl_rt.kernels.partition import Partition

        return Partition(self.k, np.asarray(self.cell_group, dtype=np.int32))


@dataclass(frozen=True)
class CannySpec:
    """Canny on the windowed [0,1] image: Gaussian ``sigma`` first, then hysteresis thresholds
    ``low``/``high`` on the L2 magnitude of the 3×3 Sobel gradient (units of the [0,1] image)."""

    sigma: float
    low: float
    high: float


@dataclass(frozen=True)
class FileSpec:
    """One ONNX network of the bundle, its sha256 and its input/output tensor names."""

    file: str
    sha256: str
    input: str
    output: str
    opset: int = 17


@dataclass(frozen=True)
class DRNSpec:
    """The DRN centre c (mean embedding of healthy difference images); slice score = ||h - c||₂."""

    centre: list[float]
    embedding_dim: int


@dataclass(frozen=True)
class ThresholdSpec:
    """A scan is flagged when its scan score is > ``scan_score``; calibrated on healthy scans only."""

    scan_score: float
    target_specificity: float
    healthy_quantiles: dict[str, float]
    n_healthy_scans: int
    #: the calibration scores themselves, sorted (lets the runtime report a healthy percentile)
    healthy_scores: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SliceThresholdSpec:
    """A slice is flagged when its slice score is > ``slice_score``; calibrated on healthy slices
    (which may come from scans that have a disorder on other slices)."""

    slice_score: float
    target_specificity: float
    healthy_quantiles: dict[str, float]
    n_healthy_slices: int
    #: the series those slices came from
    n_series: int


@dataclass(frozen=True)
class HeatmapSpec:
    """Heat-map parameters (see ``isl_rt.kernels.heatmap``): difference threshold t, box size s
    (odd) and the exponential enhancement ``gamma``."""

    threshold: float
    box: int
    gamma: float


#: What scores a slice: ``drn`` (the paper: the DRN embedding's distance from the healthy centre)
#: or ``residual`` (the signed reconstruction residual: the share of the slice's pixels, inside the
#: scored region, where the slice is brighter than its dedisorder image by more than a threshold
#: in one window; no DRN). See :class:`SliceScoreSpec`.
SLICE_SCORE_KINDS: tuple[str, ...] = ("drn", "residual")
#: How a ``residual`` slice score measures its bright pixels: ``area`` (their share of the slice)
#: or ``largest`` (the share of the slice covered by their largest 4-connected patch).
RESIDUAL_MEASURES: tuple[str, ...] = ("area", "largest")


@dataclass(frozen=True)
class SliceScoreSpec:
    """How a slice score is made (manifest ``slice_score``; absent = ``drn``).

    ``residual``: the pixels inside the scored region where window ``window`` of the slice
    exceeds that of the dedisorder image by more than ``threshold`` (in the window's [0, 1]
    units) are the bright pixels; ``measure`` ``area`` scores their share of the slice,
    ``largest`` the share of the slice covered by their largest 4-connected patch. Fresh blood is
    brighter than the brain the DeDN paints in its place, so the positive residual singles it out
    where the unsigned difference also holds the DeDN's errors at every edge; a haemorrhage is
    one compact patch, the DeDN's own errors are scattered specks and thin lines along edges,
    which is what ``largest`` tells apart. ``inset`` pixels along the scored region's border are
    left out (the region eroded that many times by a 3×3 square): the DeDN's largest errors of
    healthy tissue lie against the inner table of the skull, and so would an extra-axial
    collection thinner than the inset. With ``adjacent`` a bright pixel counts only where the same
    pixel is bright on the slice before or after it in the series too: blood fills a volume that
    reaches the next slice, the DeDN's errors of healthy tissue seldom fall on the same pixel of
    two slices (a series of one slice is scored without it). The heat map is made from the same
    positive residual (with ``adjacent``, from the pixels that count). A manifest without
    ``measure`` reads as ``area``, without ``inset`` as 0, without ``adjacent`` as false."""

    kind: str = "drn"
    threshold: float = 0.1
    window: str = ""
    measure: str = "area"
    inset: int = 0
    adjacent: bool = False

    def describe(self) -> str:
        if self.kind == "drn":
            return "DRN: distance of the difference image's embedding from the healthy centre (the paper)"
        what = "share of the slice" if self.measure == "area" else "share of the slice in the largest 4-connected patch of pixels"
        where = "inside the scored region" if not self.inset else f"inside the scored region less {self.inset} px along its border"
        also = ", and at the same place on an adjacent slice" if self.adjacent else ""
        return (f"residual: {what} where window '{self.window}' is brighter than the dedisorder image by "
                f"more than {self.threshold:g}{also}, {where} (no DRN)")

    def resolve(self, windows: Sequence[WindowSpec]) -> ResidualArgs:
        """The ``isl_rt.pipeline.residual_scores`` arguments of a ``residual`` spec for these windows."""
        return ResidualArgs([w.name for w in windows].index(self.window), float(self.threshold), self.measure,
                            int(self.inset), bool(self.adjacent))


#: What a part of a fused scan score reads: ``slice`` (the bundle's own slice scores), ``bright`` or
#: ``dark`` (the largest 4-connected patch of pixels brighter, or darker, than the dedisorder image
#: by more than a threshold in one window, on an adjacent slice too). See :class:`ScanFusionSpec`.
FUSION_PART_KINDS: tuple[str, ...] = ("slice", "bright", "dark")


@dataclass(frozen=True)
class FusionPart:
    """One part of a fused scan score: what it reads (``kind``, with the ``window``, ``threshold``
    and ``inset`` of a ``bright`` or ``dark`` part), and its healthy scale: the ``median`` and the
    ``spread`` (90th percentile − median) of the part's scan score over healthy scans (None until
    ``isl-rt calibrate`` fits them)."""

    kind: str
    window: str = ""
    threshold: float = 0.0
    inset: int = 0
    median: float | None = None
    spread: float | None = None

    def describe(self) -> str:
        if self.kind == "slice":
            return "the mean slice score"
        side = "brighter" if self.kind == "bright" else "darker"
        where = "" if not self.inset else f", {self.inset} px in from the region's border"
        return (f"{self.kind}: mean share of the slice in the largest patch {side} than the dedisorder image by more "
                f"than {self.threshold:g} in window '{self.window}' on an adjacent slice too{where}")

    def resolve(self, windows: Sequence[WindowSpec]) -> "ResidualArgs | None":
        """The ``isl_rt.pipeline.residual_scores`` arguments of a ``bright`` or ``dark`` part (None
        for ``slice``); a ``dark`` part swaps the slice and its dedisorder image."""
        if self.kind == "slice":
            return None
        return ResidualArgs([w.name for w in windows].index(self.window), float(self.threshold), "largest",
                            int(self.inset), True)


@dataclass(frozen=True)
class ScanFusionSpec:
    """A scan score fused from several parts (manifest ``scan_fusion``; absent = the mean slice
    score, the paper's). Each part's scan score is put on its healthy scale, (score − median) /
    spread, and the scan score is the largest of them: a scan is as abnormal as its most abnormal
    evidence. The DRN's mean slice score finds volume changes (atrophy, hydrocephalus), a bright
    patch finds blood and calcium, a dark patch CSF-density lesions; each alone misses the others.
    The scales come from healthy scans only (``isl-rt calibrate``); ``n_healthy_scans`` of them."""

    parts: tuple[FusionPart, ...]
    n_healthy_scans: int = 0

    @property
    def fitted(self) -> bool:
        return all(p.median is not None and p.spread is not None for p in self.parts)

    def unfitted(self) -> "ScanFusionSpec":
        """The same parts without their healthy scales (what ``--scan-fusion`` sets)."""
        return ScanFusionSpec(tuple(replace(p, median=None, spread=None) for p in self.parts))

    def describe(self) -> str:
        state = (f"healthy scales from {self.n_healthy_scans} healthy scans" if self.fitted
                 else "healthy scales not fitted yet: run isl-rt calibrate")
        return "the largest of (" + "; ".join(p.describe() for p in self.parts) + f") on its healthy scale ({state})"


def fusion_problem(spec: ScanFusionSpec, window_names: Sequence[str]) -> str | None:
    """What is wrong with ``spec`` for a bundle of these windows (None: nothing)."""
    if not spec.parts:
        return "no parts"
    for i, p in enumerate(spec.parts):
        if p.kind not in FUSION_PART_KINDS:
            return f"part {i} of kind {p.kind!r}, which is not one of {', '.join(FUSION_PART_KINDS)}"
        if p.kind != "slice":
            if not 0.0 < p.threshold < 1.0:
                return f"part {i} with threshold {p.threshold:g}, which is not in (0, 1)"
            if p.window not in window_names:
                return f"part {i} with window {p.window!r}, which is not one of the bundle's windows ({', '.join(window_names)})"
            if not 0 <= p.inset <= 32:
                return f"part {i} with inset {p.inset}, which is not a pixel count in 0..32"
        if (p.median is None) != (p.spread is None):
            return f"part {i} with only one of median and spread"
        if p.spread is not None and not p.spread > 0:
            return f"part {i} with spread {p.spread:g}, which is not positive"
    return None


class ResidualArgs(NamedTuple):
    """The arguments of ``isl_rt.pipeline.residual_scores`` for one bundle's windows."""

    channel: int
    threshold: float  # in the channel's [0, 1] units
    measure: str = "area"
    inset: int = 0
    adjacent: bool = False


class CavityArgs(NamedTuple):
    """The arguments of ``isl_rt.kernels.cavity`` for one bundle's windows."""

    channel: int
    bone: float  # in the channel's [0, 1] units
    margin: int
    sides: int = 4
    largest: bool = False
    air_margin: int = 0


#: Air, in the cavity window's [0, 1] units: below this (every window shows air at its bottom).
AIR_LEVEL = 0.02


@dataclass(frozen=True)
class CavitySpec:
    """Where ISL scores a slice: inside the skull (see ``isl_rt.kernels.cavity``).

    Bone is where the window ``window`` shows at least ``bone_hu``; a pixel is scored when no bone
    lies within ``margin`` pixels along its row or column and bone is reached in at least ``sides``
    of the four directions; with ``largest`` only the 4-connected component of such pixels with
    the most pixels enclosed on all four sides is kept per slice (the brain, not what a head
    holder encloses with the skull). Difference images are zeroed outside before the DRN and the
    heat map, in training and at runtime alike, so the reconstruction error of skull, scalp and
    head holder does not drown what lies inside. A manifest without ``sides`` and ``largest``
    means 4 and false: bone on all four sides, every component (the rule before they existed).

    ``air_margin`` (pixels; 0, the default: none) leaves out of the cavity every pixel within that
    many pixels of the air around the head (pixels below :data:`AIR_LEVEL` in the window that
    connect to the slice's edge). At the skull base the component the rule keeps can be the space
    between the head and a head holder, air and scalp, whose edge the DeDN paints worst; no pixel
    of the cranial cavity lies that close to the air outside the skull. It applies at scan time;
    the DRN's training used the cavity without it.
    """

    window: str
    bone_hu: float
    margin: int
    sides: int = 4
    largest: bool = False
    air_margin: int = 0

    def resolve(self, windows: Sequence[WindowSpec]) -> CavityArgs:
        """The ``isl_rt.kernels.cavity`` arguments for these windows (the bone level in that
        channel's [0, 1] units)."""
        for index, w in enumerate(windows):
            if w.name == self.window:
                return CavityArgs(index, (self.bone_hu - (w.level - w.width / 2)) / w.width, self.margin, self.sides,
                                  self.largest, self.air_margin)
        names = ", ".join(w.name for w in windows)
        raise BundleError(f"The cavity needs a window named '{self.window}', but the windows are: {names}.")

    def describe(self, image_scale: float | None = None) -> str:
        """One line for ``isl-rt info --bundle``; ``image_scale`` for an image bundle, whose
        "HU" are the image value times that scale."""
        reach = "all four sides" if self.sides == 4 else f"at least {self.sides} of the four sides"
        keep = "; only the component with the most fully enclosed pixels" if self.largest else ""
        bone = (f"bone >= {self.bone_hu:g} HU in window '{self.window}'" if image_scale is None else
                f"bone >= {self.bone_hu / image_scale:g} of full scale in channel '{self.window}'")
        air = f"; none within {self.air_margin} px of the air around the head" if self.air_margin else ""
        return f"{bone}, margin {self.margin} px, bone reached on {reach}{keep}{air}"


#: bone from 300 HU in the bone window, 2 pixels (about 4 mm at S = 128) kept clear of it
DEFAULT_CAVITY = CavitySpec("bone", 300.0, 2)


#: t = 0.15 sits just above the 95th percentile (0.142) of the channel-mean difference inside the
#: cranial cavity of 20 healthy held-out phantom series scored by head-ct-tiny, so healthy tissue
#: stays cold; box 5 and gamma 0.25 are provisional (the paper does not publish its values).
DEFAULT_HEATMAP = HeatmapSpec(threshold=0.15, box=5, gamma=0.25)


@dataclass(frozen=True)
class TrainingSpec:
    """What the networks were trained on and how."""

    data: str
    series: int
    slices: int
    seed: int
    command: str
    feature_network: str  # "vgg19" | "self-supervised" | "none" (reconstruction-only DeDN)
    epochs: dict[str, int]
    losses: dict[str, Any]
    #: the DRN's data when it is not the DeDN's ``data`` (e.g. healthy studies the DeDN never saw),
    #: in the same words and counts: "<data> (<series> series, <slices> slices)"; "" = the same data
    drn_data: str = ""
    #: free text from whoever trained it: where the data comes from, its licence and conditions,
    #: the split (``isl-rt export --notes-file``); "" = none
    notes: str = ""


@dataclass(frozen=True)
class Manifest:
    """The typed content of ``manifest.json`` (format version 2 or 3)."""

    format_version: int
    name: str
    preset: str
    size: int
    windows: list[WindowSpec]
    partition: PartitionSpec
    canny: CannySpec
    files: dict[str, FileSpec]
    drn: DRNSpec
    threshold: ThresholdSpec | None
    heatmap: HeatmapSpec
    training: TrainingSpec
    versions: dict[str, str]
    #: None: the whole slice is scored
    cavity: CavitySpec | None = None
    #: None is read as HU through the windows (format 2)
    input: InputSpec | None = None
    slice_threshold: SliceThresholdSpec | None = None
    #: None: the DRN scores slices (the paper)
    slice_score: SliceScoreSpec | None = None
    #: None: the scan score is the mean slice score (the paper)
    scan_fusion: ScanFusionSpec | None = None
    #: None: image series are scored at the grey they have (an image bundle only)
    image_level: ImageLevelSpec | None = None

    @property
    def slice_score_spec(self) -> SliceScoreSpec:
        return self.slice_score if self.slice_score is not None else SliceScoreSpec()

    @property
    def input_spec(self) -> InputSpec:
        """What the networks read (format 2 bundles: HU through their windows)."""
        return self.input if self.input is not None else InputSpec("hu", len(self.windows))

    @property
    def channels(self) -> int:
        """C, the number of windows (= image channels)."""
        return len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk: its folder, its manifest and the paths of both networks."""

    root: Path
    manifest: Manifest

    @property
    def dedn_path(self) -> Path:
        return self.root / self.manifest.files["dedn"].file

    @property
    def drn_path(self) -> Path:
        return self.root / self.manifest.files["drn"].file

    def torch_path(self, network: str) -> Path | None:
        """The torch weights of ``network`` ("dedn" or "drn") when the bundle carries them."""
        spec = self.manifest.files.get(f"{network}_torch")
        return None if spec is None else self.root / spec.file

    @property
    def windows_array(self) -> np.ndarray:
        """float32 [C, 2] of (level, width), the form ``isl_rt.kernels.window`` takes."""
        return np.asarray([(w.level, w.width) for w in self.manifest.windows], dtype=np.float32)

    @property
    def centre(self) -> np.ndarray:
        """float32 [D], the DRN centre c."""
        return np.asarray(self.manifest.drn.centre, dtype=np.float32)

    def partition(self) -> Partition:
        return self.manifest.partition.partition()

    def require_threshold(self) -> ThresholdSpec:
        """The calibrated threshold, or a BundleError saying how to calibrate one."""
        if self.manifest.threshold is None:
            raise BundleError(
                f"{self.root / MANIFEST_NAME} has no calibrated scan-score threshold: export the bundle with "
                "calibration scores of held-out healthy scans (isl-rt export --calibration-scores)."
            )
        return self.manifest.threshold

    def summary(self) -> dict[str, Any]:
        """A short, JSON-able description for ``isl-rt info --bundle``."""
        m = self.manifest
        t = m.threshold
        return {
            "bundle": str(self.root),
            "name": m.name,
            "format_version": m.format_version,
            "preset": m.preset,
            "size": m.size,
            "input": {**m.input_spec.to_dict(), "description": m.input_spec.describe()},
            "windows": [f"{w.name} {w.level:g}/{w.width:g}" for w in m.windows],
            "partition": {"k": m.partition.k, "groups": m.partition.groups},
            "canny": asdict(m.canny),
            "files": {key: f"{f.file} ({f.input} -> {f.output}, sha256 {f.sha256[:12]}…)" for key, f in m.files.items()},
            "embedding_dim": m.drn.embedding_dim,
            "threshold": None
            if t is None
            else {
                "scan_score": t.scan_score,
                "target_specificity": t.target_specificity,
                "n_healthy_scans": t.n_healthy_scans,
                "healthy_quantiles": t.healthy_quantiles,
            },
            "slice_threshold": None if m.slice_threshold is None else asdict(m.slice_threshold),
            "heatmap": asdict(m.heatmap),
            "cavity": None if m.cavity is None else asdict(m.cavity),
            "slice_score": {**asdict(m.slice_score_spec), "description": m.slice_score_spec.describe()},
            "scan_fusion": None if m.scan_fusion is None else {**asdict(m.scan_fusion), "description": m.scan_fusion.describe()},
            "image_level": None if m.image_level is None else {**asdict(m.image_level), "description": m.image_level.describe()},
            "training": {
                "data": m.training.data,
                "series": m.training.series,
                "slices": m.training.slices,
                "seed": m.training.seed,
                "feature_network": m.training.feature_network,
                "epochs": m.training.epochs,
                "drn_data": m.training.drn_data,
                "notes": m.training.notes,
            },
            "versions": m.versions,
        }


# ---- hashing, writing -----------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write ``root/manifest.json`` atomically (readers see the old manifest or the new one)."""
    from isl_rt.outputs import write_json_atomic

    path = Path(root) / MANIFEST_NAME
    write_json_atomic(path, {**manifest.to_dict(), "format_version": FORMAT_VERSION, "input": manifest.input_spec.to_dict()})
    return path


# ---- calibration ----------------------------------------------------------------------------------
def calibrate_threshold(healthy_scan_scores: Sequence[float], target_specificity: float = 0.95) -> ThresholdSpec:
    """The scan-score threshold from the scan scores of held-out healthy scans.

    The threshold is the smallest calibration score with at least ``target_specificity`` of the
    healthy scores at or below it (numpy's ``"higher"`` quantile), so with the runtime's rule
    "flag when score > threshold" the specificity on the calibration scans is at least the target.
    The stored quantiles (0.5, 0.9, 0.95, 0.99) use linear interpolation.
    """
    scores, threshold, quantiles = _calibration(healthy_scan_scores, target_specificity, "scan", "scores.csv")
    return ThresholdSpec(
        scan_score=threshold,
        target_specificity=float(target_specificity),
        healthy_quantiles=quantiles,
        n_healthy_scans=int(scores.size),
        healthy_scores=[float(s) for s in np.sort(scores)],
    )


def calibrate_slice_threshold(
    healthy_slice_scores: Sequence[float], target_specificity: float = 0.95, *, n_series: int = 0
) -> SliceThresholdSpec:
    """The slice-score threshold from the slice scores of held-out healthy slices (of ``n_series``
    series), by the same "higher" quantile rule as :func:`calibrate_threshold`."""
    scores, threshold, quantiles = _calibration(healthy_slice_scores, target_specificity, "slice", "the slices CSV")
    return SliceThresholdSpec(
        slice_score=threshold,
        target_specificity=float(target_specificity),
        healthy_quantiles=quantiles,
        n_healthy_slices=int(scores.size),
        n_series=int(n_series),
    )


def _calibration(values: Sequence[float], target_specificity: float, what: str, where: str) -> tuple[np.ndarray, float, dict[str, float]]:
    """(scores, the "higher" ``target_specificity`` quantile, the stored quantiles) of healthy scores."""
    if not 0.0 < target_specificity < 1.0:
        raise BundleError(f"target specificity must be between 0 and 1 (exclusive), got {target_specificity}.")
    scores = np.asarray(list(values), dtype=np.float64).ravel()
    if scores.size == 0:
        raise BundleError(f"calibration needs the {what} scores of at least one held-out healthy {what}, got none.")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise BundleError(
            f"{int(bad.sum())} of {scores.size} healthy calibration {what} scores are not finite numbers; "
            f"check the calibration {what}s (their rows in {where}) before calibrating."
        )
    threshold = float(np.quantile(scores, target_specificity, method="higher"))
    quantiles = {level: float(np.quantile(scores, float(level))) for level in QUANTILE_LEVELS}
    return scores, threshold, quantiles


# ---- parsing and validation -----------------------------------------------------------------------
class _Reader:
    """Typed field access into the parsed manifest; every failure names the manifest and field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, what: str) -> BundleError:
        return BundleError(f"{self.path} {what}: re-export the bundle with isl-rt export.")

    def get(self, data: Any, key: str, where: str) -> Any:
        if not isinstance(data, dict):
            raise self.fail(f"has no object at {where or 'the top level'}")
        if key not in data:
            raise self.fail(f"lacks the field '{_join(where, key)}'")
        return data[key]

    def num(self, data: Any, key: str, where: str, *, integer: bool = False) -> Any:
        value = self.get(data, key, where)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
            kind = "an integer" if integer else "a finite number"
            raise self.fail(f"has '{_join(where, key)}' = {value!r}, which is not {kind}")
        return int(value) if integer else float(value)

    def text(self, data: Any, key: str, where: str) -> str:
        value = self.get(data, key, where)
        if not isinstance(value, str):
            raise self.fail(f"has '{_join(where, key)}' = {value!r}, which is not a string")
        return value

    def flag(self, data: Any, key: str, where: str) -> bool:
        value = self.get(data, key, where)
        if not isinstance(value, bool):
            raise self.fail(f"has '{_join(where, key)}' = {value!r}, which is not true or false")
        return value

    def obj(self, data: Any, key: str, where: str) -> dict[str, Any]:
        value = self.get(data, key, where)
        if not isinstance(value, dict):
            raise self.fail(f"has '{_join(where, key)}' that is not an object")
        return value

    def items(self, data: Any, key: str, where: str) -> list[Any]:
        value = self.get(data, key, where)
        if not isinstance(value, list):
            raise self.fail(f"has '{_join(where, key)}' that is not a list")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def manifest_from_dict(data: Any, path: Path) -> Manifest:
    """Validate the parsed ``manifest.json`` at ``path`` and build the typed :class:`Manifest`."""
    r = _Reader(path)
    if not isinstance(data, dict):
        raise r.fail("does not hold a JSON object")
    version = r.get(data, "format_version", "")
    if isinstance(version, bool) or version not in READ_VERSIONS:
        readable = " and ".join(str(v) for v in READ_VERSIONS)
        raise BundleError(
            f"{path} has format_version {version!r}, but this isl-rt reads format versions {readable} only: "
            "use the isl-rt version that exported it or re-export the bundle with this one."
        )
    size = r.num(data, "size", "", integer=True)
    if size < 8:
        raise r.fail(f"has size {size}, which is too small for an input image")

    windows_raw = r.items(data, "windows", "")
    if not windows_raw:
        raise r.fail("lists no windows")
    windows = []
    for i, w in enumerate(windows_raw):
        where = f"windows[{i}]"
        spec = WindowSpec(r.text(w, "name", where), r.num(w, "level", where), r.num(w, "width", where))
        if spec.width <= 0:
            raise r.fail(f"has window '{spec.name}' with width {spec.width:g}, which is not positive")
        windows.append(spec)

    part = r.obj(data, "partition", "")
    k = r.num(part, "k", "partition", integer=True)
    cells = r.items(part, "cell_group", "partition")
    if (
        k < 1
        or len(cells) != k
        or any(not isinstance(row, list) or len(row) != k for row in cells)
        or any(isinstance(v, bool) or not isinstance(v, int) for row in cells for v in row)
    ):
        raise r.fail(f"has a partition whose cell_group is not a {k}×{k} grid of integer group ids")
    ids = {v for row in cells for v in row}
    if ids != set(range(len(ids))):
        raise r.fail("has a partition whose group ids are not exactly 0..G-1")
    partition = PartitionSpec(k=k, cell_group=[list(row) for row in cells])

    canny_raw = r.obj(data, "canny", "")
    canny = CannySpec(*(r.num(canny_raw, key, "canny") for key in ("sigma", "low", "high")))

    files_raw = r.obj(data, "files", "")
    files: dict[str, FileSpec] = {}
    unknown = sorted(set(files_raw) - set(REQUIRED_FILES) - set(OPTIONAL_FILES))
    if unknown:
        raise r.fail(f"lists unknown network files {unknown} (known: {', '.join(REQUIRED_FILES + OPTIONAL_FILES)})")
    for key in REQUIRED_FILES + tuple(k for k in OPTIONAL_FILES if k in files_raw):
        f = r.obj(files_raw, key, "files")
        where = f"files.{key}"
        sha = r.text(f, "sha256", where).lower()
        if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise r.fail(f"has '{where}.sha256' that is not a 64-digit hex sha256")
        name = r.text(f, "file", where)
        if Path(name).name != name:
            raise r.fail(f"has '{where}.file' = {name!r}, which is not a plain file name inside the bundle")
        opset = r.num(f, "opset", where, integer=True) if "opset" in f else 17
        files[key] = FileSpec(name, sha, r.text(f, "input", where), r.text(f, "output", where), opset)

    drn_raw = r.obj(data, "drn", "")
    dim = r.num(drn_raw, "embedding_dim", "drn", integer=True)
    centre = r.items(drn_raw, "centre", "drn")
    if len(centre) != dim or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in centre):
        raise r.fail(f"has a DRN centre that is not a list of {dim} numbers (embedding_dim)")
    if not all(math.isfinite(v) for v in centre):
        raise r.fail("has a DRN centre with non-finite values")
    drn = DRNSpec(centre=[float(v) for v in centre], embedding_dim=dim)

    threshold: ThresholdSpec | None = None
    t_raw = r.get(data, "threshold", "")
    if t_raw is not None:
        q_raw = r.obj(t_raw, "healthy_quantiles", "threshold")
        quantiles = {level: r.num(q_raw, level, "threshold.healthy_quantiles") for level in QUANTILE_LEVELS}
        scores = t_raw.get("healthy_scores", []) if isinstance(t_raw, dict) else []
        if not isinstance(scores, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scores):
            raise r.fail("has 'threshold.healthy_scores' that is not a list of numbers")
        threshold = ThresholdSpec(
            scan_score=r.num(t_raw, "scan_score", "threshold"),
            target_specificity=r.num(t_raw, "target_specificity", "threshold"),
            healthy_quantiles=quantiles,
            n_healthy_scans=r.num(t_raw, "n_healthy_scans", "threshold", integer=True),
            healthy_scores=[float(v) for v in scores],
        )

    h_raw = r.obj(data, "heatmap", "")
    heatmap = HeatmapSpec(
        threshold=r.num(h_raw, "threshold", "heatmap"),
        box=r.num(h_raw, "box", "heatmap", integer=True),
        gamma=r.num(h_raw, "gamma", "heatmap"),
    )
    if heatmap.box < 1 or heatmap.box % 2 == 0:
        raise r.fail(f"has heatmap.box = {heatmap.box}, which is not a positive odd number")

    slice_score = None
    ss_raw = data.get("slice_score")  # optional: absent or null = the DRN scores slices
    if ss_raw is not None:
        slice_score = SliceScoreSpec(kind=r.text(ss_raw, "kind", "slice_score"), threshold=r.num(ss_raw, "threshold", "slice_score"),
                                     window=str(ss_raw.get("window") or ""), measure=str(ss_raw.get("measure") or "area"),
                                     inset=int(r.num(ss_raw, "inset", "slice_score", integer=True)) if "inset" in ss_raw else 0,
                                     adjacent=r.flag(ss_raw, "adjacent", "slice_score") if "adjacent" in ss_raw else False)
        problem = slice_score_problem(slice_score, [w.name for w in windows])
        if problem:
            raise r.fail(f"has slice_score {problem}")

    image_level = None
    l_raw = data.get("image_level")  # optional: absent or null = no shift
    if l_raw is not None:
        spread = l_raw.get("spread") if isinstance(l_raw, dict) else None  # optional: absent = not measured
        cavity_size = l_raw.get("size") if isinstance(l_raw, dict) else None  # optional: absent = not measured
        smooth = l_raw.get("smooth") if isinstance(l_raw, dict) else None  # optional: absent = none
        image_level = ImageLevelSpec(median=r.num(l_raw, "median", "image_level"),
                                     n_series=r.num(l_raw, "n_series", "image_level", integer=True),
                                     spread=None if spread is None else r.num(l_raw, "spread", "image_level"),
                                     size=None if cavity_size is None else r.num(l_raw, "size", "image_level"),
                                     smooth=0.0 if smooth is None else r.num(l_raw, "smooth", "image_level"))
        if not 0.0 < image_level.median < 1.0:
            raise r.fail(f"has image_level.median = {image_level.median}, which is not between 0 and 1")
        if image_level.spread is not None and not 0.0 < image_level.spread < 1.0:
            raise r.fail(f"has image_level.spread = {image_level.spread}, which is not between 0 and 1")
        if not 0.0 <= image_level.smooth <= 4.0:
            raise r.fail(f"has image_level.smooth = {image_level.smooth}, which is not between 0 and 4 pixels")
        if image_level.size is not None and not 0.05 <= image_level.size <= 1.0:
            raise r.fail(f"has image_level.size = {image_level.size}, which is not between 0.05 and 1")

    scan_fusion = None
    f_raw = data.get("scan_fusion")  # optional: absent or null = the mean slice score
    if f_raw is not None:
        parts = []
        for i, p_raw in enumerate(r.items(f_raw, "parts", "scan_fusion")):
            where = f"scan_fusion.parts[{i}]"
            kind = r.text(p_raw, "kind", where)
            residual = kind != "slice"
            parts.append(FusionPart(
                kind=kind,
                window=r.text(p_raw, "window", where) if residual else "",
                threshold=r.num(p_raw, "threshold", where) if residual else 0.0,
                inset=r.num(p_raw, "inset", where, integer=True) if residual and "inset" in p_raw else 0,
                median=r.num(p_raw, "median", where) if p_raw.get("median") is not None else None,
                spread=r.num(p_raw, "spread", where) if p_raw.get("spread") is not None else None,
            ))
        n_healthy = r.num(f_raw, "n_healthy_scans", "scan_fusion", integer=True) if "n_healthy_scans" in f_raw else 0
        scan_fusion = ScanFusionSpec(tuple(parts), n_healthy)
        problem = fusion_problem(scan_fusion, [w.name for w in windows])
        if problem:
            raise r.fail(f"has scan_fusion {problem}")

    cavity = None
    c_raw = data.get("cavity")  # optional: absent or null scores the whole slice
    if c_raw is not None:
        cavity = CavitySpec(
            window=r.text(c_raw, "window", "cavity"),
            bone_hu=r.num(c_raw, "bone_hu", "cavity"),
            margin=r.num(c_raw, "margin", "cavity", integer=True),
            # absent in manifests written before they existed: the rule of that time
            sides=r.num(c_raw, "sides", "cavity", integer=True) if "sides" in c_raw else 4,
            largest=r.flag(c_raw, "largest", "cavity") if "largest" in c_raw else False,
            air_margin=r.num(c_raw, "air_margin", "cavity", integer=True) if "air_margin" in c_raw else 0,
        )
        if cavity.margin < 0:
            raise r.fail(f"has cavity.margin = {cavity.margin}, which is negative")
        if cavity.air_margin < 0:
            raise r.fail(f"has cavity.air_margin = {cavity.air_margin}, which is negative")
        if not 1 <= cavity.sides <= 4:
            raise r.fail(f"has cavity.sides = {cavity.sides}, which is not 1, 2, 3 or 4")
        if cavity.window not in {w.name for w in windows}:
            raise r.fail(f"has cavity.window '{cavity.window}', which is not one of its windows")

    input_spec = InputSpec("hu", len(windows))  # format 2: HU through the windows
    if version >= 3:
        i_raw = r.obj(data, "input", "")
        input_spec = InputSpec(kind=r.text(i_raw, "kind", "input"), channels=r.num(i_raw, "channels", "input", integer=True))
        if input_spec.kind not in INPUT_KINDS:
            raise r.fail(f"has input.kind '{input_spec.kind}', which is not one of {', '.join(INPUT_KINDS)}")
        if input_spec.channels != len(windows):
            raise r.fail(f"has input.channels = {input_spec.channels} but {len(windows)} windows (one per channel)")
        if input_spec.kind == "image" and tuple(windows) != image_windows(len(windows)):
            raise r.fail("has input.kind 'image' but windows other than the identity windows of images")
        h_raw = i_raw.get("hu_window")  # optional: absent or null = image series only
        if h_raw is not None:
            hu_window = HuWindowSpec(level=r.num(h_raw, "level", "input.hu_window"), width=r.num(h_raw, "width", "input.hu_window"))
            problem = hu_window_problem(hu_window, input_spec)
            if problem:
                raise r.fail(f"has input.hu_window, but {problem}")
            input_spec = replace(input_spec, hu_window=hu_window)

    slice_threshold = None
    s_raw = data.get("slice_threshold")  # optional: absent or null when not calibrated
    if s_raw is not None:
        sq_raw = r.obj(s_raw, "healthy_quantiles", "slice_threshold")
        slice_threshold = SliceThresholdSpec(
            slice_score=r.num(s_raw, "slice_score", "slice_threshold"),
            target_specificity=r.num(s_raw, "target_specificity", "slice_threshold"),
            healthy_quantiles={level: r.num(sq_raw, level, "slice_threshold.healthy_quantiles") for level in QUANTILE_LEVELS},
            n_healthy_slices=r.num(s_raw, "n_healthy_slices", "slice_threshold", integer=True),
            n_series=r.num(s_raw, "n_series", "slice_threshold", integer=True),
        )

    tr = r.obj(data, "training", "")
    training = TrainingSpec(
        data=r.text(tr, "data", "training"),
        series=r.num(tr, "series", "training", integer=True),
        slices=r.num(tr, "slices", "training", integer=True),
        seed=r.num(tr, "seed", "training", integer=True),
        command=r.text(tr, "command", "training"),
        feature_network=r.text(tr, "feature_network", "training"),
        epochs={str(key): int(v) for key, v in r.obj(tr, "epochs", "training").items()},
        losses=dict(r.obj(tr, "losses", "training")),
        drn_data=str(tr.get("drn_data") or ""),
        notes=str(tr.get("notes") or ""),
    )
    versions = {str(key): str(v) for key, v in r.obj(data, "versions", "").items()}

    if image_level is not None and input_spec.kind != "image":
        raise r.fail("has an image_level but its networks read HU (a level is for pre-windowed images)")
    return Manifest(
        format_version=int(version),
        name=r.text(data, "name", ""),
        preset=r.text(data, "preset", ""),
        size=size,
        windows=windows,
        partition=partition,
        canny=canny,
        files=files,
        drn=drn,
        threshold=threshold,
        heatmap=heatmap,
        training=training,
        versions=versions,
        cavity=cavity,
        input=input_spec,
        slice_threshold=slice_threshold,
        slice_score=slice_score,
        scan_fusion=scan_fusion,
        image_level=image_level,
    )


def hu_window_problem(window: HuWindowSpec, input_spec: InputSpec) -> str | None:
    """Why ``window`` cannot be the brain window of a bundle reading ``input_spec`` (None: it can)."""
    if input_spec.kind != "image" or input_spec.channels != 1:
        return "its networks do not read gray images (a brain window makes one gray image of a CT slice)"
    if not (math.isfinite(window.level) and math.isfinite(window.width)) or window.width <= 0:
        return f"its level is {window.level:g} HU and its width {window.width:g} HU: both must be numbers, the width above 0"
    return None


def slice_score_problem(spec: SliceScoreSpec, window_names: Sequence[str]) -> str | None:
    """What is wrong with ``spec`` for a bundle of these windows (None: nothing)."""
    if spec.kind not in SLICE_SCORE_KINDS:
        return f"kind {spec.kind!r}, which is not one of {', '.join(SLICE_SCORE_KINDS)}"
    if spec.kind == "residual":
        if not 0.0 < spec.threshold < 1.0:
            return f"threshold {spec.threshold:g}, which is not in (0, 1)"
        if spec.window not in window_names:
            return f"window {spec.window!r}, which is not one of the bundle's windows ({', '.join(window_names)})"
        if spec.measure not in RESIDUAL_MEASURES:
            return f"measure {spec.measure!r}, which is not one of {', '.join(RESIDUAL_MEASURES)}"
        if not 0 <= spec.inset <= 32:
            return f"inset {spec.inset}, which is not a pixel count in 0..32"
    return None


def load_bundle(path: str | Path, *, verify_hashes: bool = True) -> Bundle:
    """Load and validate the bundle at ``path`` (its folder or its ``manifest.json``).

    Checks, in order: the folder and manifest exist, the manifest is JSON of a known format
    version with every field of the schema, both networks exist and (unless ``verify_hashes`` is
    False) match their sha256. Each failure is a :class:`BundleError` naming the file.
    """
    path = Path(path)
    root = path.parent if path.name == MANIFEST_NAME and path.is_file() else path
    if not root.exists():
        raise BundleError(f"{root} does not exist: pass the folder of a model bundle (export/<name>).")
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder: pass the folder of a model bundle (export/<name>).")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: {root} is not a model bundle; export one with isl-rt export.")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{manifest_path} is not UTF-8 text: the file is damaged; re-export the bundle.") from None
    except json.JSONDecodeError as err:
        raise BundleError(
            f"{manifest_path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
            "the file is damaged; re-export the bundle."
        ) from None
    manifest = manifest_from_dict(data, manifest_path)
    for key, spec in manifest.files.items():
        file_path = root / spec.file
        if not file_path.is_file():
            raise BundleError(f"{file_path} is missing: the bundle is incomplete ({key} network); re-export the bundle.")
        if verify_hashes and sha256_file(file_path) != spec.sha256:
            raise BundleError(
                f"{file_path} does not match the sha256 in {manifest_path}: the file was changed after export; "
                "re-export the bundle."
            )
    return Bundle(root=root, manifest=manifest)


def calibrate_bundle(
    bundle_dir: Path,
    healthy_scan_scores: Sequence[float] | None,
    target_specificity: float = 0.95,
    *,
    healthy_slice_scores: Sequence[float] | None = None,
    slice_series: int = 0,
    scan_fusion: ScanFusionSpec | None = None,
) -> Bundle:
    """Write the thresholds calibrated on ``healthy_scan_scores`` (scan threshold) and
    ``healthy_slice_scores`` (of ``slice_series`` series; slice threshold) into an existing
    bundle's manifest; a threshold whose scores are None keeps its value. ``scan_fusion`` (fitted
    by :func:`fit_scan_fusion` on the same healthy scans) replaces the bundle's; the scan scores
    are then the fused ones."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    if scan_fusion is not None:
        manifest = replace(manifest, scan_fusion=scan_fusion)
    if healthy_scan_scores is not None:
        manifest = replace(manifest, threshold=calibrate_threshold(healthy_scan_scores, target_specificity))
    if healthy_slice_scores is not None:
        manifest = replace(manifest, slice_threshold=calibrate_slice_threshold(
            healthy_slice_scores, target_specificity, n_series=slice_series))
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


# ---- the shipped default ------------------------------------------------------------------------
#: name of the bundle `scan` and `demo` use when --bundle is not given
DEFAULT_BUNDLE = "head-ct-tiny"


def set_slice_score(bundle_dir: Path, spec: SliceScoreSpec) -> Bundle:
    """Write ``spec`` (what scores a slice) into an existing bundle's manifest. Both thresholds
    were calibrated on the old slice scores, so they are dropped unless the spec is unchanged:
    calibrate again (``isl-rt calibrate``)."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    problem = slice_score_problem(spec, [w.name for w in manifest.windows])
    if problem:
        raise BundleError(f"The slice score cannot be set: {problem}.")
    if spec != manifest.slice_score_spec:
        manifest = replace(manifest, slice_score=spec, threshold=None, slice_threshold=None)
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


def set_cavity_air_margin(bundle_dir: Path, air_margin: int) -> Bundle:
    """Write the cavity's ``air_margin`` (:class:`CavitySpec`) into an existing bundle's manifest.
    Both thresholds were calibrated on scores of the old cavity, so they are dropped unless the
    margin is unchanged: calibrate again (``isl-rt calibrate``)."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    if manifest.cavity is None:
        raise BundleError(f"{bundle.root} scores whole slices (no cavity): an air margin needs a cavity.")
    if air_margin < 0:
        raise BundleError(f"The cavity's air margin must be 0 or more pixels, got {air_margin}.")
    if air_margin != manifest.cavity.air_margin:
        manifest = replace(manifest, cavity=replace(manifest.cavity, air_margin=int(air_margin)), threshold=None,
                           slice_threshold=None)
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


def set_image_level(bundle_dir: Path, level: ImageLevelSpec | None) -> Bundle:
    """Write the brain level image series are shifted to (None: no shift) into an existing image
    bundle's manifest. Both thresholds were calibrated on scores made at the old level, so they
    are dropped unless nothing changed: calibrate again (``isl-rt calibrate --match-level`` does
    both)."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    if level is not None and manifest.input_spec.kind != "image":
        raise BundleError(f"{bundle.root} reads HU of DICOM CT: a brain level is for bundles of pre-windowed images.")
    if level is not None and manifest.cavity is None:
        raise BundleError(f"{bundle.root} scores whole slices: the brain level is measured inside the cranial cavity.")
    if level != manifest.image_level:
        manifest = replace(manifest, image_level=level, threshold=None, slice_threshold=None)
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


def set_hu_window(bundle_dir: Path, window: HuWindowSpec | None) -> Bundle:
    """Write the brain window a gray image bundle shows DICOM CT through (None: image series only)
    into an existing bundle's manifest. Image series score as before, so the thresholds stay; they
    were calibrated on images made through that window, which is what it should be."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    if window is not None:
        problem = hu_window_problem(window, manifest.input_spec)
        if problem:
            raise BundleError(f"{bundle.root} cannot take a brain window for DICOM CT: {problem}.")
    manifest = replace(manifest, input=replace(manifest.input_spec, hu_window=window))
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


def set_scan_fusion(bundle_dir: Path, parts: Sequence[FusionPart] | None) -> Bundle:
    """Write the parts of a fused scan score (without healthy scales) into an existing bundle's
    manifest, or remove the fusion (``parts`` None: the mean slice score). The scan threshold was
    calibrated on the old scan scores, so it is dropped unless nothing changed; ``isl-rt
    calibrate`` fits the scales and the threshold."""
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    spec = None if parts is None else ScanFusionSpec(tuple(parts)).unfitted()
    if spec is not None:
        problem = fusion_problem(spec, [w.name for w in manifest.windows])
        if problem:
            raise BundleError(f"The scan fusion cannot be set: {problem}.")
    before = None if manifest.scan_fusion is None else manifest.scan_fusion.unfitted()
    if before != spec:
        manifest = replace(manifest, scan_fusion=spec, threshold=None)
    write_manifest(bundle.root, manifest)
    return load_bundle(bundle.root)


def fit_scan_fusion(spec: ScanFusionSpec, healthy_parts: Sequence[Sequence[float]]) -> ScanFusionSpec:
    """``spec`` with each part's healthy scale fitted on the raw part scores of healthy scans
    (one row per scan, one column per part): the median and the spread (90th percentile − median;
    a part that does not vary over them gets a spread of 1e-9 of its median's size or 1e-12)."""
    values = np.asarray(healthy_parts, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(spec.parts) or len(values) < 2:
        raise BundleError(f"Fitting the scan fusion takes the {len(spec.parts)} part scores of at least 2 healthy scans, "
                          f"got an array of shape {values.shape}.")
    if not np.isfinite(values).all():
        raise BundleError("Fitting the scan fusion: a healthy scan's part score is not finite.")
    parts = []
    for part, column in zip(spec.parts, values.T):
        median = float(np.median(column))
        spread = float(np.percentile(column, 90)) - median
        parts.append(replace(part, median=median, spread=spread if spread > 0 else max(abs(median) * 1e-9, 1e-12)))
    return ScanFusionSpec(tuple(parts), int(len(values)))


def default_bundle_path(name: str = DEFAULT_BUNDLE) -> Path:
    """Where the shipped bundle ``name`` lives: inside the installed package (``isl_rt/bundles``,
    put there by ``pip install``) or, in a source checkout, ``export/<name>``."""
    package = Path(__file__).resolve().parent
    candidates = [package / "bundles" / name, package.parent / "export" / name]
    try:  # an editable install keeps compiled and installed files in site-packages
        import importlib.util

        spec = importlib.util.find_spec("isl_rt._native")
        if spec is not None and spec.origin:
            candidates.insert(0, Path(spec.origin).resolve().parent / "bundles" / name)
    except ImportError:
        pass
    for candidate in candidates:
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise BundleError(
        f"The shipped bundle {name!r} is not installed (looked in {', '.join(str(c) for c in candidates)}); "
        "pass --bundle PATH or reinstall isl-rt."
    )
