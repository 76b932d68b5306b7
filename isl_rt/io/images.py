"""Folders of 2D images (PNG, JPEG, TIFF) as image series.

For pre-windowed slices and for modalities that are not CT (retinal OCT, for example), a series
is a folder: every directory that directly holds image files is one series, identified by its
path relative to the root (sanitised into a file-name-safe id). Images carry no position, so
slices are ordered by a natural sort of their file names (``img2`` before ``img10``).

Pixel values become float32 in [0, 1]: 8-bit images are divided by 255, 16-bit ones by 65535.
Grayscale images give one channel, colour images three: RGBA and LA drop their alpha channel,
palette images become grayscale when every palette entry is gray and RGB otherwise, CMYK and
YCbCr become RGB. 32-bit integer images are accepted when their values fit 16 bits; float,
multi-page and 16-bit colour images are refused with a sentence saying so. All images of one
folder must share size and channel count.

:func:`survey_images` is discovery for ``scan`` and ``inspect``: it reads every image's header
(and checks a PNG's chunk checksums, which finds truncated and damaged files without decoding) and
sets aside, with a reason, each file that cannot be read (an ``error``, the rest of its folder
is still a series, with a warning naming it) and each folder whose images differ in size or
channel count (one ``error`` for the folder, counting each kind).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from isl_rt.errors import InputError, one_line
from isl_rt.io.limits import MAX_FILE_BYTES, MAX_MATRIX

#: File suffixes read as images (compared case-insensitively).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class ImageSeriesRef:
    """One folder of images."""

    #: The folder relative to the root, made file-name safe ("." parts become the root's name).
    series_id: str
    #: The folder.
    path: Path
    #: Image files in natural name order.
    files: tuple[Path, ...]
    #: From the headers (:func:`survey_images`); 0 when not surveyed.
    rows: int = 0
    columns: int = 0
    channels: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def n_images(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class ImageProblem:
    """A file or folder :func:`survey_images` set aside, and why."""

    path: Path
    status: Literal["skipped", "error"]
    reason: str
    series_id: str
    n_files: int = 1


@dataclass(eq=False)
class ImageStack:
    """The images of one folder."""

    #: float32 [N, C, H, W] in [0, 1], C-contiguous; C is 1 (grayscale) or 3 (RGB).
    images: np.ndarray
    series_id: str
    path: Path
    files: tuple[Path, ...]
    #: Bits per sample of the source files (8 or 16).
    bit_depth: int
    warnings: list[str] = field(default_factory=list)


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders digit runs by value: ``slice2`` < ``slice10``."""
    parts = _DIGITS.split(name.lower())
    # split() alternates text and digit runs, so equal positions always hold equal types.
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name)


def _series_id(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root)
    parts = rel.parts if rel.parts else (root.resolve().name or "root",)
    cleaned = [_UNSAFE.sub("_", p).strip("_") or "_" for p in parts]
    return "__".join(cleaned)


def discover_images(root: Path) -> list[ImageSeriesRef]:
    """Every folder under ``root`` that directly holds image files, as one series each.

    Hidden files and folders and files that are not regular files (FIFOs, sockets, devices, broken
    links) are ignored. Ids that would collide after sanitising get a ``-2``, ``-3``... suffix.
    Raises :class:`InputError` when ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist.")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the folder that holds the images.")
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(folder) / n for n in names if not n.startswith(".")]
    # regular files only (a FIFO named like an image would block its reader); stat only image names
    return series_from_files(root, [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()])


def series_from_files(root: Path, files: Iterable[Path]) -> list[ImageSeriesRef]:
    """The image series (one per folder, natural name order) that ``files`` under ``root`` make;
    files without an image suffix are ignored. ``scan`` gives it the files its DICOM walk found
    (regular files only, symbolic links to folders followed once), so both kinds see one tree."""
    root = Path(root)
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            by_folder.setdefault(path.parent, []).append(path)

    def folder_order(folder: Path) -> tuple[object, ...]:
        return tuple(natural_key(part) for part in folder.relative_to(root).parts)

    refs: list[ImageSeriesRef] = []
    used: set[str] = set()
    for folder in sorted(by_folder, key=folder_order):
        sid = _series_id(root, folder)
        unique, k = sid, 1
        while unique in used:
            k += 1
            unique = f"{sid}-{k}"
        used.add(unique)
        refs.append(ImageSeriesRef(series_id=unique, path=folder,
                                   files=tuple(sorted(by_folder[folder], key=lambda p: natural_key(p.name)))))
    return refs


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` that refuses, from the header alone, a file over MAX_FILE_BYTES or an image
    over MAX_MATRIX a side (Pillow's own bomb check only starts at 89 megapixels)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {size / 2**20:.0f} MiB, larger than any single slice ({MAX_FILE_BYTES // 2**20} MiB at most).")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            columns, rows = img.size
            if max(rows, columns) > MAX_MATRIX:
                raise InputError(
                    f"{path} declares {columns}×{rows} pixels; isl-rt reads images up to {MAX_MATRIX}×{MAX_MATRIX}, "
                    "so it was not decoded."
                )
            yield img


def _one_page(img: Image.Image, path: Path) -> None:
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1:
        raise InputError(f"{path} holds {n_frames} pages; isl-rt reads one image per file, so save each page separately.")


def _mode_channels(img: Image.Image, path: Path) -> int:
    """Channels :func:`_read_image` gives an image of this mode; InputError for modes it refuses."""
    mode = img.mode
    if mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        return 1 if palette.size > 0 and bool((palette == palette[:, :1]).all()) else 3
    if mode in ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        return 1
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return 3
    raise InputError(f"{path} has pixel mode {mode}, which isl-rt does not read; save it as 8- or 16-bit gray or RGB.")


def read_header(path: Path) -> tuple[int, int, int]:
    """(rows, columns, channels) of one image from its header; a PNG's chunk checksums are
    verified too. InputError with the reason when the file cannot be read as one image."""
    try:
        with _opened(path) as img:
            _one_page(img, path)
            columns, rows = img.size
            is_png = img.format == "PNG"
            channels = _mode_channels(img, path)  # a palette image loads here: verify on a fresh handle
        if is_png:
            with _opened(path) as img:
                img.verify()
    except InputError:
        raise
    except (Exception, Image.DecompressionBombWarning) as err:  # as _read_image: any Pillow failure is unreadable
        raise InputError(f"{path} is not a readable image ({type(err).__name__}: {one_line(err)}).") from None
    return rows, columns, channels


def _describe_shapes(shapes: Counter[tuple[int, int, int]]) -> str:
    def one(shape: tuple[int, int, int]) -> str:
        rows, columns, channels = shape
        return f"{columns}×{rows} {'gray' if channels == 1 else 'RGB' if channels == 3 else f'{channels}-channel'}"

    return ", ".join(f"{one(k)} ({n} file{'s' if n != 1 else ''})" for k, n in shapes.most_common())


@dataclass(frozen=True)
class ImageSurvey:
    """What :func:`survey_images` found."""

    series: list[ImageSeriesRef]
    problems: list[ImageProblem]
    #: every image file under the root (in a series or set aside)
    files: frozenset[Path]


def survey_images(root: Path) -> ImageSurvey:
    """:func:`survey` of the image series :func:`discover_images` finds under ``root``."""
    return survey(discover_images(root))


def survey(refs: list[ImageSeriesRef]) -> ImageSurvey:
    """The image series ``refs`` with every image's header read, and what was set aside:
    unreadable files (one ``error`` each; the rest of the folder is still a series, with a
    warning) and folders whose images differ in size or channel count (one ``error`` for the
    folder, its images counted by kind)."""
    series: list[ImageSeriesRef] = []
    problems: list[ImageProblem] = []
    for ref in refs:
        shapes: dict[Path, tuple[int, int, int]] = {}
        bad: list[Path] = []
        for path in ref.files:
            try:
                shapes[path] = read_header(path)
            except InputError as err:
                problems.append(ImageProblem(path, "error", str(err), ref.series_id))
                bad.append(path)
        if not shapes:
            continue
        kinds = Counter(shapes.values())
        if len(kinds) > 1:
            problems.append(ImageProblem(
                ref.path, "error",
                f"its images differ in size or channel count: {_describe_shapes(kinds)}; "
                "a series needs images of one size and kind (move the odd ones to their own folder)",
                ref.series_id, len(shapes)))
            continue
        warns: tuple[str, ...] = ()
        if bad:
            names = ", ".join(p.name for p in bad[:3]) + (", …" if len(bad) > 3 else "")
            warns = (f"{len(bad)} image(s) of this folder left out because they cannot be read ({names}); see their error rows",)
        rows, columns, channels = next(iter(kinds))
        good = tuple(p for p in ref.files if p in shapes)
        series.append(replace(ref, files=good, rows=rows, columns=columns, channels=channels, warnings=warns))
    return ImageSurvey(series, problems, frozenset(p for ref in refs for p in ref.files))


def _read_image(path: Path) -> tuple[np.ndarray, int]:
    """One image as float32 [C, H, W] in [0, 1] and its bit depth."""
    try:
        with _opened(path) as img:
            _one_page(img, path)
            img.load()
            mode = img.mode
            if mode == "P" or mode == "PA":
                palette = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
                gray = palette.size > 0 and bool((palette == palette[:, :1]).all())
                img = img.convert("L" if gray else "RGB")
            elif mode in ("1", "LA", "La"):
                img = img.convert("L")
            elif mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            mode = img.mode
            arr = np.asarray(img)
    except InputError:
        raise
    except (Exception, Image.DecompressionBombWarning) as err:  # Pillow's plugins raise many types on damaged
        # files (OSError, ValueError, TypeError, KeyError, struct.error, ...): any of them means unreadable
        raise InputError(f"{path} is not a readable image ({type(err).__name__}: {one_line(err)}).") from None

    if mode == "L":
        return (arr.astype(np.float32) / 255.0)[None], 8
    if mode == "RGB":
        return (np.moveaxis(arr, -1, 0).astype(np.float32) / 255.0), 8
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (arr.astype(np.float32) / 65535.0)[None], 16
    if mode == "I":
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise InputError(
                f"{path} is a 32-bit integer image with values outside 0..65535; save it as 8- or 16-bit."
            )
        return (arr.astype(np.float32) / 65535.0)[None], 16
    raise InputError(f"{path} has pixel mode {mode}, which isl-rt does not read; save it as 8- or 16-bit gray or RGB.")


def load_images(ref: ImageSeriesRef) -> ImageStack:
    """Read a folder's images into one float32 [N, C, H, W] stack in [0, 1].

    Raises :class:`InputError` naming the file when an image cannot be read, or when it differs
    in size or channel count from the folder's first image.
    """
    if not ref.files:
        raise InputError(f"{ref.path} holds no images.")
    stack: np.ndarray | None = None
    depths: set[int] = set()
    for i, path in enumerate(ref.files):
        image, depth = _read_image(path)
        depths.add(depth)
        if stack is None:
            stack = np.empty((len(ref.files), *image.shape), dtype=np.float32)
        elif image.shape != stack.shape[1:]:
            c, h, w = image.shape
            c0, h0, w0 = stack.shape[1:]
            raise InputError(
                f"{path} is {w}×{h} with {c} channel(s) but {ref.files[0].name} is {w0}×{h0} with "
                f"{c0} channel(s); all images in a folder must share size and channel count."
            )
        stack[i] = image
    assert stack is not None
    warns: list[str] = list(ref.warnings)
    if len(depths) > 1:
        warns.append("the folder mixes 8-bit and 16-bit images; each was scaled to [0, 1] by its own bit depth")
    return ImageStack(
        images=stack,
        series_id=ref.series_id,
        path=ref.path,
        files=ref.files,
        bit_depth=max(depths),
        warnings=warns,
    )
