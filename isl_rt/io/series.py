"""One interface over the two kinds of series `scan`, `inspect` and `calibrate` read.

- ``hu``: an axial CT series of DICOM files (:mod:`isl_rt.io.dicom`), loaded as int16 HU
  [N, H, W] and ordered along the slice normal; each slice's source is its SOPInstanceUID.
- ``image``: a folder of pre-windowed PNG/JPEG/TIFF images (:mod:`isl_rt.io.images`), loaded as
  float32 [N, C, H, W] in [0, 1] in natural name order; each slice's source is its file path.

A tree may hold both: :func:`discover_series` walks it once, with DICOM discovery (regular files
only, symbolic links to folders followed once, special files never opened); the files it sets
aside one by one that carry an image suffix and are regular files go to the image side
(:func:`isl_rt.io.images.series_from_files`, :func:`isl_rt.io.images.survey`) instead, so every
file ends up in one series or one set-aside entry. A folder holding DICOM files and images gives
one series of each kind. Which kind a bundle can score is the pipeline's business
(:func:`isl_rt.pipeline.scan_directory`).

Keys: a DICOM series is keyed by its SeriesInstanceUID, an image series by its folder's series id
(the folder relative to the root, file-name safe, as training's labels name it). With
``one_series_per_image`` (``isl-rt scan --one-series-per-image``: a flat folder of key images of
many patients) every image file is a series of its own, keyed by its path relative to the root
(stable across runs, so ``--resume`` finds it), and images of different sizes may share a folder.

A series shorter than a whole head CT (fewer than :data:`isl_rt.io.gate.MIN_SLICES` slices, e.g.
one key image) loads with a warning saying it was scored as key images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from isl_rt.errors import InputError
from isl_rt.io import dicom, images

Kind = Literal["hu", "image"]
KIND_WORDS: dict[str, str] = {"hu": "DICOM CT series", "image": "image series (PNG/JPEG/TIFF folders)"}


@dataclass(frozen=True)
class SeriesItem:
    """One series discovery found, of either kind, described from headers only."""

    kind: Kind
    #: SeriesInstanceUID (DICOM) or the folder's series id (images)
    key: str
    path: Path
    n_slices: int
    ref: dicom.SeriesRef | images.ImageSeriesRef
    study_uid: str = ""
    #: "" for image series
    series_uid: str = ""
    #: image channels (1 gray, 3 RGB); 0 for DICOM
    channels: int = 0
    #: SeriesDescription and SeriesNumber of DICOM ("" and None for images)
    description: str = ""
    series_number: int | None = None


@dataclass(frozen=True)
class SetAside:
    """A file, folder or series discovery could not use: ``skipped`` on purpose (not CT, not an
    image) or ``error`` (should have been usable but is not), with the reason."""

    path: Path
    status: Literal["skipped", "error"]
    reason: str
    #: the series it belongs to, when known (SeriesInstanceUID or image series id)
    series: str | None = None
    n_files: int = 1


@dataclass
class Found:
    series: list[SeriesItem]
    set_aside: list[SetAside]

    def of_kind(self, kind: str) -> list[SeriesItem]:
        return [s for s in self.series if s.kind == kind]


@dataclass(eq=False)
class LoadedSeries:
    """The pixels of one series and where each slice came from."""

    kind: Kind
    #: int16 HU [N, H, W] (``hu``) or float32 [N, C, H, W] in [0, 1] (``image``)
    pixels: np.ndarray
    #: per slice: SOPInstanceUID (DICOM) or the image file's path
    sources: tuple[str, ...]
    #: per slice: position along z in mm (DICOM), empty for images
    positions_mm: np.ndarray
    warnings: list[str] = field(default_factory=list)
    #: bits per sample of image files (8 or 16); 0 for DICOM
    bit_depth: int = 0
    #: acquisition metadata of DICOM (isl_rt.io.dicom.Volume.metadata); empty for images
    metadata: dict[str, str | float] = field(default_factory=dict)
    #: how an image series was mapped onto a bundle's presentation (isl_rt.presentation: air,
    #: skull, brain, gamma, contrast, the padding to square), None while it is as read
    presentation: dict[str, Any] | None = None

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of the source slices."""
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])

    def display(self) -> np.ndarray:
        """float32 [N, H, W] in [0, 1] for overlays: the brain window (40/80) of HU, the mean of an
        image's channels."""
        if self.kind == "hu":
            return np.clip(self.pixels.astype(np.float32) / 80.0, 0.0, 1.0)
        return self.pixels.mean(axis=1, dtype=np.float32)


def holds_files(root: Path) -> bool:
    """Whether discovery would find anything under the folder ``root``: a file or a link that is
    not hidden, or a folder it cannot list; stops at the first. A scan of a folder without one has
    nothing to score and no row to write (:func:`nothing_to_scan`)."""
    unlistable = False

    def note(_err: OSError) -> None:
        nonlocal unlistable
        unlistable = True

    for folder, dirs, files in os.walk(root, onerror=note):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if unlistable or any(not f.startswith(".") for f in files):
            return True
        if any(os.path.islink(os.path.join(folder, d)) for d in dirs):  # discovery follows it: let it look
            return True
    return unlistable


def nothing_to_scan(root: Path) -> InputError:
    """The one sentence refusing a scan of a folder that holds no file (see :func:`holds_files`)."""
    return InputError(f"{root} holds no DICOM series or image folder to scan: no file is under it (hidden ones aside) "
                      "to read as DICOM or as a PNG, JPEG or TIFF image; nothing was written.")


def discover_series(root: Path, *, one_series_per_image: bool = False) -> Found:
    """Every DICOM CT series and image series under ``root``, and what was set aside and why.

    ``one_series_per_image``: every image file is its own series (keyed by its path relative to
    ``root``) instead of one series per folder; DICOM series are grouped as always.
    Raises :class:`isl_rt.errors.InputError` when ``root`` is missing or not a folder.
    """
    root = Path(root)
    found = dicom.discover(root)
    refs = images.series_from_files(root, _image_candidates((k.path, k.series_uid, k.n_files) for k in found.skipped))
    if one_series_per_image:
        refs = _one_per_image(root, refs)
    survey = images.survey(refs)
    image_files = {os.fspath(p) for p in survey.files}
    items: list[SeriesItem] = [
        SeriesItem("hu", ref.series_uid, ref.path, ref.n_slices, ref, study_uid=ref.study_uid, series_uid=ref.series_uid,
                   description=ref.description, series_number=ref.series_number)
        for ref in found.series
    ]
    items += [
        SeriesItem("image", ref.series_id, ref.path, ref.n_images, ref, channels=ref.channels) for ref in survey.series
    ]
    set_aside = [
        SetAside(k.path, k.status, k.reason, k.series_uid, k.n_files)
        for k in found.skipped
        if not (k.series_uid is None and k.n_files == 1 and os.fspath(k.path) in image_files)
    ]
    set_aside += [SetAside(p.path, p.status, p.reason, p.series_id, p.n_files) for p in survey.problems]
    items.sort(key=lambda s: (str(s.path), s.kind, s.key))
    set_aside.sort(key=lambda s: (str(s.path), s.status, s.reason))
    return Found(series=items, set_aside=set_aside)


def _one_per_image(root: Path, refs: list[images.ImageSeriesRef]) -> list[images.ImageSeriesRef]:
    """Each file of ``refs`` as a series of its own, keyed by its path relative to ``root`` (POSIX
    separators), in the folders' order and each folder's natural name order."""
    return [images.ImageSeriesRef(series_id=path.relative_to(root).as_posix(), path=path, files=(path,))
            for ref in refs for path in ref.files]


def _image_candidates(notes: Iterable[tuple[Path, str | None, int]]) -> list[Path]:
    """The single files DICOM discovery set aside (path, series, file count) that are regular
    files with an image suffix: the image side's files."""
    return [Path(path) for path, series, n_files in notes
            if series is None and n_files == 1 and Path(path).suffix.lower() in images.IMAGE_SUFFIXES
            and os.path.isfile(path)]


def load_series(item: SeriesItem) -> LoadedSeries:
    """Decode one series; :class:`isl_rt.errors.InputError` naming the file when it cannot be read."""
    series = _load(item)
    from isl_rt.io.gate import few_slices_warning

    series.warnings.extend(few_slices_warning(series.n_slices, "slice" if item.kind == "hu" else "image"))
    return series


def _load(item: SeriesItem) -> LoadedSeries:
    if item.kind == "hu":
        assert isinstance(item.ref, dicom.SeriesRef)
        volume = dicom.load_volume(item.ref)
        positions = np.asarray(volume.positions)
        return LoadedSeries(
            kind="hu",
            pixels=volume.hu,
            sources=item.ref.sop_uids or tuple("" for _ in item.ref.files),
            positions_mm=positions[:, 2] if positions.size else np.zeros(0),
            warnings=list(volume.warnings),
            metadata=dict(volume.metadata),
        )
    assert isinstance(item.ref, images.ImageSeriesRef)
    stack = images.load_images(item.ref)
    return LoadedSeries(
        kind="image",
        pixels=stack.images,
        sources=tuple(os.path.abspath(p) for p in stack.files),
        positions_mm=np.zeros(0),
        warnings=list(stack.warnings),
        bit_depth=stack.bit_depth,
    )


def inspect_tree(root: Path) -> list[dict[str, Any]]:
    """What ``isl-rt inspect`` shows: one JSON-ready entry per series (DICOM or image) and per
    set-aside item, sorted by path. Raises :class:`isl_rt.errors.InputError` when ``root`` is
    missing or not a folder."""
    dicom_entries = dicom.inspect_tree(root)
    survey = images.survey(images.series_from_files(Path(root), _image_candidates(
        (e["path"], e["SeriesInstanceUID"], e["n_files"]) for e in dicom_entries if e["status"] != "ok")))
    image_files = {os.fspath(p) for p in survey.files}
    entries = [
        {**e, "kind": "hu"} for e in dicom_entries
        if e["status"] == "ok" or not (e["SeriesInstanceUID"] is None and e["n_files"] == 1 and e["path"] in image_files)
    ]
    for ref in survey.series:
        entries.append(
            {
                "status": "ok",
                "kind": "image",
                "path": str(ref.path),
                "series": ref.series_id,
                "n_slices": ref.n_images,
                "matrix": [ref.rows, ref.columns],
                "channels": ref.channels,
                "warnings": list(ref.warnings),
            }
        )
    for p in survey.problems:
        entries.append(
            {"status": p.status, "kind": "image", "path": str(p.path), "reason": p.reason, "series": p.series_id,
             "n_files": p.n_files}
        )
    order = {"ok": 0, "error": 1, "skipped": 2}
    entries.sort(key=lambda e: (e["path"], order[e["status"]]))
    return entries
