"""DICOM series discovery (headers only) and loading of axial CT series as HU volumes.

Discovery (:func:`discover`) walks a folder tree and reads only the header of each file: pydicom
stops before the pixel data and keeps only the tags listed in ``_HEADER_TAGS``, and each file
leaves behind a small :class:`_Slice` record, never a dataset. Files are grouped by
SeriesInstanceUID; what is kept is a :class:`SeriesRef` per axial CT image series, and
everything else becomes a :class:`Skipped` entry with a reason:

- ``skipped``: not an axial CT image series (not DICOM, a DICOMDIR, structured reports such as
  dose reports, secondary captures, RT objects, presentation states, other non-image objects,
  other modalities, localizers/scouts, non-axial images, colour images, multi-frame objects);
  files of one series skipped for the same reason make one entry (``n_files``);
- ``error``: a file or series that should have been loadable but is not (unreadable files,
  files cut short in the header or the pixel data, CT image headers without PixelData, missing
  geometry, slices of one series that disagree on matrix, pixel spacing or orientation). A
  series that loses files to errors still loads from the rest, with a warning naming them.

Decisions, in one place:

- Slices are ordered by their position along the slice normal, ``dot(ImagePositionPatient,
  n)`` with ``n = row × column`` direction flipped to point towards the head (+z), so slice 0
  is the most inferior one. InstanceNumber and file names are never used for order.
- "Axial" means the slice normal lies within ``max_tilt_deg`` (default 30°) of the z axis.
  Head CT is routinely acquired with a gantry tilt of 10-30° to follow the orbitomeatal line;
  rejecting those would skip a large share of real head CT, while coronal and sagittal
  reformats and localizers sit near 90° and are still rejected. A tilt above 2° is reported as
  a series warning. Tilted slices are scored as acquired, never resampled to axial: the networks
  score each slice on its own, and correcting the tilt (dcm2niix's shear) only moves each slice
  within its plane (benchmarks/tilt_real.py measures what that changes).
- Multi-frame objects (NumberOfFrames > 1, and every Enhanced / Legacy Converted Enhanced CT
  object) are skipped with a reason saying so: isl-rt reads classic single-frame CT slices,
  which is what scanners and PACS export by default.
- Warnings: a gap is a step between neighbouring slices larger than 1.5× the median step;
  spacing "varies" when the other steps spread by more than 10 % of the median; slices closer
  than 0.01 mm along the normal share a position (one file is kept, the first by path when
  the positions are equal), and files repeating a SOPInstanceUID are dropped; a series of one
  slice takes its spacing from SliceThickness (or 1 mm when that is missing).
- Truncation is detected at discovery without decoding: for native transfer syntaxes the
  PixelData length must cover Rows × Columns × SamplesPerPixel × BitsAllocated/8 × frames and
  fit in the file; for encapsulated (compressed) data the item headers must chain to the
  sequence delimiter inside the file.
- Files are walked without following a folder twice: a symbolic link to a folder is followed
  the first time that folder is reached and becomes a ``skipped`` entry after that (a link loop
  or a second path to the same folder); broken links, special files (FIFOs, sockets, devices)
  and files larger than ``MAX_FILE_BYTES`` become entries too, and are never opened.
- Resources are bounded before anything is decoded: a header declaring more than
  ``MAX_MATRIX`` rows or columns is refused by the input gate (``isl_rt.io.gate``) from the
  header alone, a compressed frame whose codestream declares another size than Rows×Columns is
  refused before its decoder runs, and :func:`load_volume` decodes ``[start, stop)`` slice
  ranges so a caller can hold a long series a chunk at a time. One slice of the HU volume
  takes Rows×Columns×2 bytes, and decoding it needs at most Rows×Columns×(2 + 8) bytes more
  (the stored array and one float64 copy for the rescale).
- HU: each file's stored values are rescaled with its own RescaleSlope/RescaleIntercept,
  rounded, and clipped to [-1024, 32767] HU in int16. Pixels equal to PixelPaddingValue (or in
  the PixelPaddingValue..PixelPaddingRangeLimit range) and everything below -1024 HU (air
  outside the field of view, vendor padding such as -2000 or -3024) become -1024 HU, i.e. air;
  no window used on head CT looks below -1024. A RescaleSlope or RescaleIntercept that is not
  a finite number, or a slope of 0, is an error of that slice, never replaced by a default.
"""

from __future__ import annotations

import logging
import math
import errno
import os
import struct
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from isl_rt.errors import InputError
from isl_rt.errors import one_line as _one_line
from isl_rt.io.limits import MAX_FILE_BYTES, MAX_MATRIX

log = logging.getLogger(__name__)

Status = Literal["skipped", "error"]

#: Largest angle between the slice normal and the z axis still called axial (gantry tilt).
MAX_TILT_DEG = 30.0
#: A tilt above this is reported as a series warning.
TILT_WARN_DEG = 2.0
#: A step between slices above this multiple of the median step is a gap.
GAP_FACTOR = 1.5
#: Steps (gaps excluded) spreading by more than this fraction of the median are "varying".
VARYING_FRACTION = 0.10
#: Slices closer than this along the normal (mm) share a position.
DUPLICATE_TOL_MM = 0.01
#: Tolerances for "the same" pixel spacing (mm) and orientation (direction cosines).
SPACING_TOL_MM = 1e-3
ORIENTATION_TOL = 1e-3
#: HU range of the int16 volumes.
HU_MIN = -1024
HU_MAX = 32767

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# SOP class roots of objects that are never CT slices (the root itself or anything below it),
# with the words for a reason.
_NON_IMAGE_CLASSES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.88", "a structured report (such as a CT dose report)"),
    ("1.2.840.10008.5.1.4.1.1.481", "a radiotherapy (RT) object"),
    ("1.2.840.10008.5.1.4.1.1.7", "a secondary capture image"),
    ("1.2.840.10008.5.1.4.1.1.11", "a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.104", "an encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.66", "a non-image object (raw data, registration or segmentation)"),
    ("1.2.840.10008.5.1.4.1.1.9", "a waveform"),
)

#: Attributes only an MR acquisition writes (the MR Image module, PS3.3 C.8.3.1): a "CT" file
#: carrying them is an MR image relabelled as CT.
MR_ATTRIBUTES = ("EchoTime", "RepetitionTime", "MagneticFieldStrength", "ScanningSequence", "ImagingFrequency")

# The only tags discovery keeps (SpecificCharacterSet is always added by pydicom).
_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ImageType",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "Rows",
    "Columns",
    "PixelSpacing",
    "SamplesPerPixel",
    "BitsAllocated",
    "NumberOfFrames",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "BodyPartExamined",
    *MR_ATTRIBUTES,
]

# Which package supplies a decoder, by transfer syntax (pydicom decodes native and RLE itself).
_LIBJPEG = "pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg-openjpeg"
_PLUGIN_PACKAGE: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": _LIBJPEG,  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": _LIBJPEG,  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": _LIBJPEG,  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": _LIBJPEG,  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": _OPENJPEG,  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": _OPENJPEG,  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": _OPENJPEG,  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": _OPENJPEG,  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE Lossless
}
_DEFLATED = "1.2.840.10008.1.2.1.99"

_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = {0x7FE00008, 0x7FE00009}
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}

_METADATA_KEYWORDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "XRayTubeCurrent",
    "ConvolutionKernel",
    "SliceThickness",
    "StudyDate",
    "BodyPartExamined",
    "PhotometricInterpretation",
)


@dataclass(eq=False)
class SeriesRef:
    """One loadable axial CT series, described from headers only."""

    series_uid: str
    study_uid: str
    modality: str
    #: Slice files ordered by position along the slice normal (inferior first).
    files: tuple[Path, ...]
    #: ImagePositionPatient of each file, in ``files`` order, [N, 3] float64 (mm).
    positions: np.ndarray
    #: ImageOrientationPatient (row then column direction cosines).
    orientation: tuple[float, float, float, float, float, float]
    rows: int
    columns: int
    #: (row spacing, column spacing) in mm, as in PixelSpacing.
    pixel_spacing: tuple[float, float]
    #: Median step between slices along the normal, mm.
    slice_spacing: float
    #: The common parent folder of ``files``.
    path: Path
    series_number: int | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    #: (RescaleSlope, RescaleIntercept) of each file in ``files`` order, [N, 2] float64: (1, 0)
    #: where the file has none, NaN where its value is not one number.
    rescale: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    #: Median SliceThickness (mm) of the files that state one, NaN when none does.
    slice_thickness: float = math.nan
    #: The distinct BodyPartExamined values of the files, upper case.
    body_parts: tuple[str, ...] = ()
    #: The MR-only attributes (``MR_ATTRIBUTES``) any file carries.
    mr_attributes: tuple[str, ...] = ()
    #: SOPInstanceUID of each file, in ``files`` order ("" where a file has none).
    sop_uids: tuple[str, ...] = ()

    @property
    def n_slices(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Skipped:
    """A file (or the files of one series) that discovery did not turn into a series."""

    path: Path
    status: Status
    reason: str
    series_uid: str | None = None
    #: How many files this entry stands for (files of one series skipped for the same reason).
    n_files: int = 1


@dataclass
class Discovery:
    series: list[SeriesRef]
    skipped: list[Skipped]
    #: Files looked at (hidden files and folders are not).
    n_files: int = 0


@dataclass(eq=False)
class Volume:
    """One CT series in Hounsfield units."""

    #: int16 [N, H, W], C-contiguous, slice 0 most inferior.
    hu: np.ndarray
    #: (slice, row, column) spacing in mm.
    spacing: tuple[float, float, float]
    study_uid: str
    series_uid: str
    path: Path
    #: ImagePositionPatient per slice, [N, 3] float64 (mm).
    positions: np.ndarray
    #: Acquisition facts from the first slice; no patient identifiers.
    metadata: dict[str, str | float]
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Slice:
    """What discovery keeps of one slice file."""

    path: Path
    series_uid: str
    study_uid: str
    sop_uid: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    orientation: tuple[float, float, float, float, float, float]
    position: tuple[float, float, float]
    slice_thickness: float
    series_number: int | None
    description: str
    rescale: tuple[float, float]
    body_part: str
    mr_attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _FileNote:
    """A file that did not become a slice."""

    path: Path
    status: Status
    reason: str
    series_uid: str | None


class _NotDicom(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Reading


def _looks_like_raw_dataset(path: Path) -> bool:
    """A DICOM data set written without preamble and 'DICM' (old ACR-NEMA style files)."""
    with path.open("rb") as fp:
        head = fp.read(8)
    return len(head) == 8 and head[:2] in (b"\x08\x00", b"\x02\x00")


@contextmanager
def _warnings_to_log(path: Path) -> Iterator[None]:
    """Send the warnings pydicom raises while reading or converting values to the debug log.

    Real-world headers are full of small violations (over-long strings, odd UIDs) that pydicom
    tolerates with a warning, and values are converted lazily, so every access to a header
    happens under this guard.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.debug("%s: %s", path, w.message)


def _dcmread(fp: BinaryIO | Path, path: Path, **kwargs: Any) -> Dataset:
    """dcmread that also accepts data sets written without preamble and 'DICM'."""
    try:
        return pydicom.dcmread(fp, **kwargs)
    except InvalidDicomError:
        if not _looks_like_raw_dataset(path):
            raise _NotDicom() from None
        if not isinstance(fp, Path):
            fp.seek(0)
        return pydicom.dcmread(fp, force=True, **kwargs)


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(ts)
    implicit, little = ds.original_encoding
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _short_value(ds: Dataset) -> bool:
    """Whether a kept element's value was cut by the end of the file (pydicom reads it short)."""
    meta = getattr(ds, "file_meta", None)
    elements = [*ds.elements(), *(meta.elements() if meta is not None else ())]
    for elem in elements:
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH:
            if elem.value is not None and len(elem.value) < elem.length:
                return True
    return False


def _uid_or_none(ds: Dataset) -> str | None:
    try:
        return str(ds.get("SeriesInstanceUID", "") or "") or None
    except Exception:  # a cut UID value may not even decode
        return None


def _pixel_problem(fp: BinaryIO, ds: Dataset, file_size: int) -> tuple[bool, str | None]:
    """Look at the element that follows the header: (has PixelData, truncation problem or None).

    ``fp`` stands where pydicom stopped, at the start of the pixel data element. Nothing is
    decoded: only the element's length and, for encapsulated data, its item headers are read.
    """
    ts = _transfer_syntax(ds)
    if ts == _DEFLATED:  # positions in a deflated stream are not file offsets
        return "Rows" in ds, None
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = ts.is_implicit_VR, ts.is_little_endian
    end = "<" if little else ">"
    head = fp.read(8)
    if len(head) < 8:
        return False, None
    group, elem = struct.unpack(f"{end}HH", head[:4])
    tag = group << 16 | elem
    if tag in _FLOAT_PIXEL_DATA:
        return True, None
    if tag != _PIXEL_DATA:
        return False, None
    if implicit:
        (length,) = struct.unpack(f"{end}L", head[4:8])
    elif head[4:6] in _LONG_LENGTH_VRS:
        more = fp.read(4)
        if len(more) < 4:
            return True, "the file ends inside the PixelData element header (truncated)"
        (length,) = struct.unpack(f"{end}L", more)
    else:
        (length,) = struct.unpack(f"{end}H", head[6:8])
    value_start = fp.tell()
    held = file_size - value_start
    if length == _UNDEFINED_LENGTH:
        return True, _encapsulated_problem(fp, value_start, file_size)
    if value_start + length > file_size:
        return True, f"truncated: PixelData declares {length} bytes but the file holds only {held}"
    if ts.is_compressed:
        return True, None
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    bits = int(ds.get("BitsAllocated") or 0)
    samples = int(ds.get("SamplesPerPixel") or 1)
    frames = _int_or(ds.get("NumberOfFrames"), 1)
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if length < expected:
        return True, (
            f"PixelData holds {length} bytes but Rows×Columns×BitsAllocated/8 needs {expected} "
            "(truncated or damaged)"
        )
    return True, None


def _encapsulated_problem(fp: BinaryIO, pos: int, file_size: int) -> str | None:
    """Walk the item headers of encapsulated PixelData without reading the fragments."""
    n_items = 0
    while True:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            return "truncated: the compressed PixelData ends before its sequence delimiter"
        group, elem, length = struct.unpack("<HHL", head)
        tag = group << 16 | elem
        if tag == _SEQUENCE_DELIMITER:
            return None
        if tag != _ITEM or length == _UNDEFINED_LENGTH:
            return f"damaged compressed PixelData: unexpected tag ({group:04X},{elem:04X}) after {n_items} items"
        pos += 8 + length
        n_items += 1
        if pos > file_size:
            return f"truncated: compressed PixelData fragment {n_items} runs past the end of the file"


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _number(value: Any, missing: float) -> float:
    """One number from a header value: ``missing`` when absent or empty, NaN when not one number."""
    if value is None or value == "":
        return missing
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a multi-valued element, or None."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _unit_normal(orientation: tuple[float, ...]) -> np.ndarray | None:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        return None
    normal /= norm
    return -normal if normal[2] < 0 else normal


def _tilt_deg(normal: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(normal[2])))))


def _classify(path: Path, max_tilt_deg: float) -> _Slice | _FileNote:
    """Read one file's header and decide what it is; never raises."""
    with _warnings_to_log(path):
        try:
            return _classify_file(path, max_tilt_deg)
        except Exception as err:  # pydicom raises many types on damaged values
            log.debug("%s: header not usable", path, exc_info=True)
            return _FileNote(path, "error", f"unreadable DICOM header: {_one_line(err)}", None)


def _classify_file(path: Path, max_tilt_deg: float) -> _Slice | _FileNote:
    """The checks behind :func:`_classify`, in the order the reasons take precedence."""

    def note(status: Status, reason: str, uid: str | None = None) -> _FileNote:
        return _FileNote(path, status, reason, uid)

    try:
        file_size = path.stat().st_size
        if file_size > MAX_FILE_BYTES:
            return note("skipped", f"{file_size / 2**20:.0f} MiB, larger than any single CT slice "
                                   f"({MAX_FILE_BYTES // 2**20} MiB at most), never opened")
        with path.open("rb") as fp:
            ds = _dcmread(fp, path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            header_cut = fp.tell() > file_size or _short_value(ds)
            has_pixels, problem = _pixel_problem(fp, ds, file_size)
    except _NotDicom:
        return note("skipped", "not a DICOM file")
    except OSError as err:
        return note("error", f"cannot read the file: {err.strerror or _one_line(err)}")
    except Exception as err:  # pydicom raises many types on damaged headers
        return note("error", f"unreadable DICOM header: {_one_line(err)}")

    if header_cut and not has_pixels:
        return note("error", "the file ends inside its header (truncated)", _uid_or_none(ds))
    sop_class = str(ds.get("SOPClassUID", "") or "")
    meta = getattr(ds, "file_meta", None)
    if sop_class == "" and meta is not None:
        sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    uid = str(ds.get("SeriesInstanceUID", "") or "") or None
    modality = str(ds.get("Modality", "") or "")

    if sop_class == _MEDIA_STORAGE_DIRECTORY:
        return note("skipped", "a DICOMDIR index, not an image")
    for prefix, words in _NON_IMAGE_CLASSES:
        if sop_class == prefix or sop_class.startswith(prefix + "."):
            return note("skipped", f"{words}, not a CT image", uid)
    if modality and modality != "CT":
        return note("skipped", f"modality {modality}, not CT", uid)
    if not has_pixels and sop_class not in (CT_IMAGE_STORAGE, *_ENHANCED_CT):
        return note("skipped", "no pixel data (not an image)", uid)
    if sop_class != CT_IMAGE_STORAGE and sop_class not in _ENHANCED_CT:
        name = UID(sop_class).name if sop_class else "missing"
        return note("skipped", f"SOP class {name} is not a CT image", uid)
    if not has_pixels:  # a CT image header without its image: damaged or cut short
        return note("error", "a CT image header without PixelData (cut short or damaged)", uid)
    if "Rows" not in ds or "Columns" not in ds:
        return note("error", "PixelData without Rows/Columns", uid)
    frames = _int_or(ds.get("NumberOfFrames"), 1)
    if frames > 1 or sop_class in _ENHANCED_CT:
        return note(
            "skipped",
            f"a multi-frame CT object ({frames} frames); isl-rt reads single-frame CT slices only, "
            "so export the series as classic CT images",
            uid,
        )
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return note("skipped", "a localizer (scout) image", uid)
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        return note("skipped", "a colour image, not CT intensities", uid)
    if uid is None:
        return note("error", "no SeriesInstanceUID")
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    if orientation is None or position is None:
        return note("error", "no usable ImageOrientationPatient/ImagePositionPatient", uid)
    normal = _unit_normal(orientation)
    if normal is None:
        return note("error", "ImageOrientationPatient does not describe a plane", uid)
    tilt = _tilt_deg(normal)
    if tilt > max_tilt_deg:
        return note("skipped", f"not axial (slice normal {tilt:.0f}° from the z axis)", uid)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if spacing is None or min(spacing) <= 0:
        return note("error", "no usable PixelSpacing", uid)
    if problem is not None:
        return note("error", problem, uid)
    thickness = _number(ds.get("SliceThickness"), math.nan)
    return _Slice(
        path=path,
        series_uid=uid,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        pixel_spacing=(spacing[0], spacing[1]),
        orientation=orientation,  # type: ignore[arg-type]
        position=position,  # type: ignore[arg-type]
        slice_thickness=thickness,
        series_number=_optional_int(ds.get("SeriesNumber")),
        description=str(ds.get("SeriesDescription", "") or ""),
        rescale=(_number(ds.get("RescaleSlope"), 1.0), _number(ds.get("RescaleIntercept"), 0.0)),
        body_part=str(ds.get("BodyPartExamined", "") or "").strip().upper(),
        mr_attributes=tuple(k for k in MR_ATTRIBUTES if ds.get(k) not in (None, "")),
    )


# --------------------------------------------------------------------------------------------
# Discovery

#: the hidden file that marks a phantom cohort's folder (:mod:`isl_rt.io.phantom`), and the cohort's
#: own entries beside its series there: its labels and lesion masks, which discovery leaves out
#: (they are no series; listed, every scan of a phantom cohort reported them as skipped)
PHANTOM_MARKER = ".isl-rt-phantom.json"
PHANTOM_OWN = frozenset({"labels.csv", "masks"})


def _walk(root: Path, notes: list[_FileNote]) -> list[Path]:
    """Every non-hidden regular file under root, depth first in name order, but for a phantom
    cohort's labels and masks (:data:`PHANTOM_OWN` in a folder with :data:`PHANTOM_MARKER`).

    A folder is listed once: a symbolic link reaching a folder already listed (a link loop, or
    a second path to the same folder) becomes a skipped note. Folders that cannot be listed,
    broken links and special files become notes; nothing here opens a file.
    """
    files: list[Path] = []
    listed: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError as err:
            notes.append(_link_note(folder, err))
            continue
        if (st.st_dev, st.st_ino) in listed:
            notes.append(_FileNote(folder, "skipped", "a symbolic link to a folder already scanned (a link loop or a "
                                   "second path to it), not followed again", None))
            continue
        listed.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                listing = list(it)
            phantom = any(e.name == PHANTOM_MARKER for e in listing)
            entries = sorted((e for e in listing if not e.name.startswith(".") and not (phantom and e.name in PHANTOM_OWN)),
                             key=lambda e: e.name)
        except OSError as err:
            notes.append(_FileNote(folder, "error", f"cannot list the folder: {err.strerror or _one_line(err)}", None))
            continue
        folders: list[Path] = []
        for entry in entries:
            path = folder / entry.name
            try:  # is_dir/is_file follow links; d_type answers without a stat for the rest
                if entry.is_dir():
                    folders.append(path)
                    continue
                if entry.is_file():
                    files.append(path)
                    continue
                os.stat(path)  # raises for a broken link
            except OSError as err:  # a broken link, a link loop, a folder that vanished
                notes.append(_link_note(path, err))
                continue
            notes.append(_FileNote(path, "skipped", "not a regular file (a FIFO, socket or device), never opened", None))
        stack.extend(reversed(folders))
    return files


def _link_note(path: Path, err: OSError) -> _FileNote:
    """The note for a path whose target cannot be reached."""
    if err.errno == errno.ELOOP:
        return _FileNote(path, "skipped", "a symbolic link loop, not followed", None)
    if err.errno == errno.ENOENT and path.is_symlink():
        return _FileNote(path, "skipped", "a broken symbolic link (its target does not exist)", None)
    return _FileNote(path, "error", f"cannot reach it: {err.strerror or _one_line(err)}", None)


def _common_parent(paths: list[Path]) -> Path:
    if len(paths) == 1:
        return paths[0].parent
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k} ({n} file{'s' if n != 1 else ''})" for k, n in counts.most_common())


def _inconsistency(slices: list[_Slice]) -> str | None:
    matrices = Counter(f"{s.rows}×{s.columns}" for s in slices)
    if len(matrices) > 1:
        return f"its slices differ in matrix size: {_describe_counts(matrices)}"
    first = slices[0]
    ps = np.array([s.pixel_spacing for s in slices])
    if np.abs(ps - ps[0]).max() > SPACING_TOL_MM:
        counts = Counter(f"{r:g}×{c:g} mm" for r, c in ps)
        return f"its slices differ in pixel spacing: {_describe_counts(counts)}"
    ori = np.array([s.orientation for s in slices])
    if np.abs(ori - np.asarray(first.orientation)).max() > ORIENTATION_TOL:
        counts = Counter("[" + ", ".join(f"{v:.3f}" for v in o) + "]" for o in ori)
        return f"its slices differ in orientation: {_describe_counts(counts)}"
    return None


def _build_series(uid: str, slices: list[_Slice], left_out: list[_FileNote]) -> SeriesRef | Skipped:
    """Order one series' slices along the normal, check them and write its warnings."""
    slices = sorted(slices, key=lambda s: str(s.path))
    warns: list[str] = []
    if left_out:
        names = ", ".join(n.path.name for n in left_out[:3]) + (", …" if len(left_out) > 3 else "")
        were = "file of this series was" if len(left_out) == 1 else "files of this series were"
        warns.append(f"{len(left_out)} {were} left out because of errors ({names}); see their error entries")

    seen: dict[str, _Slice] = {}
    repeats = 0
    for s in slices:
        if s.sop_uid and s.sop_uid in seen:
            repeats += 1
            continue
        seen[s.sop_uid or str(s.path)] = s
    if repeats:
        warns.append(f"{_plural(repeats, 'file')} repeating a SOP instance already found ignored")
    slices = list(seen.values())

    common = _common_parent([s.path for s in slices])
    problem = _inconsistency(slices)
    if problem is not None:
        return Skipped(common, "error", problem, uid, len(slices))

    first = slices[0]
    normal = _unit_normal(first.orientation)
    assert normal is not None  # checked per file in _classify
    tilt = _tilt_deg(normal)
    if tilt > TILT_WARN_DEG:
        warns.append(f"slices are tilted {tilt:.1f}° from axial (gantry tilt); ordered along the slice normal and "
                     "scored as acquired, each slice as the scanner reconstructed it (not resampled to axial)")

    positions = np.array([s.position for s in slices], dtype=np.float64)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")  # ties keep path order
    depth = depth[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.diff(depth) >= DUPLICATE_TOL_MM
    if not keep.all():
        n_dup = int((~keep).sum())
        n_pos = len(np.unique(np.cumsum(keep)[~keep]))
        warns.append(
            f"{_plural(n_pos, 'slice position')} {'holds' if n_pos == 1 else 'hold'} more than one file; "
            f"kept one file at each and ignored {n_dup} (e.g. {slices[order[~keep][0]].path.name})"
        )
    order, depth = order[keep], depth[keep]
    ordered = [slices[i] for i in order]

    if len(ordered) == 1:
        thickness = first.slice_thickness
        slice_spacing = thickness if math.isfinite(thickness) and thickness > 0 else 1.0
        source = "SliceThickness" if slice_spacing == thickness else "no SliceThickness, so 1 mm is assumed"
        warns.append(f"single-slice series; slice spacing {slice_spacing:g} mm ({source})")
    else:
        steps = np.diff(depth)
        slice_spacing = float(np.median(steps))
        gaps = steps > GAP_FACTOR * slice_spacing
        if gaps.any():
            i = int(np.argmax(np.where(gaps, steps, -1.0)))
            warns.append(
                f"{_plural(int(gaps.sum()), 'gap')} wider than {GAP_FACTOR:g}× the median slice spacing of "
                f"{slice_spacing:.3g} mm (largest {steps[i]:.3g} mm, between slices {i} and {i + 1})"
            )
        regular = steps[~gaps]
        if regular.size and float(regular.max() - regular.min()) > VARYING_FRACTION * slice_spacing:
            warns.append(
                f"slice spacing varies from {regular.min():.3g} to {regular.max():.3g} mm "
                f"(median {slice_spacing:.3g} mm)"
            )

    positions = np.ascontiguousarray(np.array([s.position for s in ordered], dtype=np.float64))
    positions.setflags(write=False)
    rescale = np.array([s.rescale for s in ordered], dtype=np.float64).reshape(-1, 2)
    rescale.setflags(write=False)
    thicknesses = [s.slice_thickness for s in ordered if math.isfinite(s.slice_thickness)]
    files = [s.path for s in ordered]
    return SeriesRef(
        series_uid=uid,
        study_uid=first.study_uid,
        modality="CT",
        files=tuple(files),
        positions=positions,
        orientation=first.orientation,
        rows=first.rows,
        columns=first.columns,
        pixel_spacing=first.pixel_spacing,
        slice_spacing=slice_spacing,
        path=_common_parent(files),
        series_number=first.series_number,
        description=first.description,
        warnings=warns,
        rescale=rescale,
        slice_thickness=float(np.median(thicknesses)) if thicknesses else math.nan,
        body_parts=tuple(sorted({s.body_part for s in ordered if s.body_part})),
        mr_attributes=tuple(k for k in MR_ATTRIBUTES if any(k in s.mr_attributes for s in ordered)),
        sop_uids=tuple(s.sop_uid for s in ordered),
    )


def check_folder(root: Path) -> Path:
    """``root`` as a Path, or :class:`InputError` in the one wording of every command that reads
    a folder of series (inspect, scan, calibrate, bench): "does not exist" when nothing is there,
    "is not a folder" when a file is."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist: pass the folder that holds the DICOM files or image folders.")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: pass the folder that holds the DICOM files or image folders.")
    return root


def discover(root: Path, *, max_tilt_deg: float = MAX_TILT_DEG) -> Discovery:
    """Find the axial CT series under ``root`` from file headers only.

    Raises :class:`InputError` when ``root`` is missing or not a folder; every problem with
    the files themselves becomes a :class:`Skipped` entry instead.
    """
    root = check_folder(root)
    notes: list[_FileNote] = []
    files = _walk(root, notes)
    by_series: dict[str, list[_Slice]] = defaultdict(list)
    for path in files:
        got = _classify(path, max_tilt_deg)
        if isinstance(got, _Slice):
            by_series[got.series_uid].append(got)
        else:
            notes.append(got)

    errors_by_series: dict[str, list[_FileNote]] = defaultdict(list)
    for n in notes:
        if n.status == "error" and n.series_uid is not None:
            errors_by_series[n.series_uid].append(n)

    series: list[SeriesRef] = []
    skipped: list[Skipped] = []
    for uid, slices in by_series.items():
        built = _build_series(uid, slices, errors_by_series.get(uid, []))
        (series if isinstance(built, SeriesRef) else skipped).append(built)  # type: ignore[arg-type]

    # Files of one series skipped for the same reason make one entry; errors stay per file.
    grouped: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for n in notes:
        if n.status == "skipped" and n.series_uid is not None:
            grouped[(n.series_uid, n.reason)].append(n.path)
        else:
            skipped.append(Skipped(n.path, n.status, n.reason, n.series_uid))
    for (uid, reason), paths in grouped.items():
        where = paths[0] if len(paths) == 1 else _common_parent(paths)
        skipped.append(Skipped(where, "skipped", reason, uid, len(paths)))

    series.sort(key=lambda s: (str(s.path), s.series_number if s.series_number is not None else -1, s.series_uid))
    skipped.sort(key=lambda s: (str(s.path), s.status, s.reason))
    return Discovery(series=series, skipped=skipped, n_files=len(files))


# --------------------------------------------------------------------------------------------
# Loading


def _decoder_check(path: Path, ts: UID) -> None:
    """InputError when pydicom has no usable decoder for the transfer syntax."""
    if not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(
            f"{path} uses the transfer syntax {ts.name} ({ts}), which isl-rt cannot decode."
        ) from None
    if decoder.is_available:
        return
    package = _PLUGIN_PACKAGE.get(str(ts), "pylibjpeg")
    raise InputError(
        f"{path} is compressed with {ts.name}, and the plugin that decodes it is not installed: "
        f"run pip install 'isl-rt[dicom]' (or pip install {package})."
    )


def _metadata(ds: Dataset) -> dict[str, str | float]:
    out: dict[str, str | float] = {}
    for keyword in _METADATA_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, (int, float)):
            out[keyword] = float(value)
        elif isinstance(value, (list, tuple, MultiValue)):
            out[keyword] = "\\".join(str(v) for v in value)
        else:
            out[keyword] = str(value)
    out["TransferSyntaxUID"] = str(_transfer_syntax(ds))
    return out


def _padding_mask(stored: np.ndarray, ds: Dataset) -> np.ndarray | None:
    pad = ds.get("PixelPaddingValue")
    if pad is None or pad == "":
        return None
    bits = int(ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1

    def as_stored(v: Any) -> int:
        v = int(v)
        return v - (1 << bits) if signed and v >= 1 << (bits - 1) else v

    low = as_stored(pad)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None or limit == "":
        return stored == low
    high = as_stored(limit)
    low, high = min(low, high), max(low, high)
    return (stored >= low) & (stored <= high)


def _rescale(path: Path, ds: Dataset) -> tuple[float, float]:
    """(slope, intercept) of one slice: (1, 0) where absent; InputError when not usable."""
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise InputError(
            f"{path} has RescaleSlope {ds.get('RescaleSlope')!s} and RescaleIntercept {ds.get('RescaleIntercept')!s}; "
            "CT numbers need a finite, non-zero slope and a finite intercept."
        )
    return slope, intercept


def _to_hu(stored: np.ndarray, ds: Dataset, out: np.ndarray, rescale: tuple[float, float]) -> None:
    """Rescale one slice's stored values into ``out`` (int16 HU)."""
    slope, intercept = rescale
    hu = stored.astype(np.float64)
    with np.errstate(over="ignore"):  # an absurd slope overflows to ±inf, which the clip below bounds
        if slope != 1.0:
            hu *= slope
        if intercept != 0.0:
            hu += intercept
    mask = _padding_mask(stored, ds)
    if mask is not None:
        hu[mask] = HU_MIN
    np.rint(hu, out=hu)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    out[...] = hu


def _load_slice(path: Path, ref: SeriesRef, out: np.ndarray) -> Dataset:
    """Decode one slice file into ``out`` (int16 HU) and return its data set."""
    if max(ref.rows, ref.columns) > MAX_MATRIX:
        raise InputError(f"{path} declares {ref.rows}×{ref.columns} pixels; isl-rt decodes at most {MAX_MATRIX}×{MAX_MATRIX}.")
    try:
        ds = _dcmread(path, path)
    except _NotDicom:
        raise InputError(f"{path} is no longer a DICOM file.") from None
    except Exception as err:
        raise InputError(f"Cannot read {path}: {_one_line(err)}.") from None
    if "PixelData" not in ds:
        raise InputError(f"{path} has no pixel data.")
    shape = (_int_or(ds.get("Rows"), 0), _int_or(ds.get("Columns"), 0))
    if shape != (ref.rows, ref.columns) or _int_or(ds.get("NumberOfFrames"), 1) != 1:
        raise InputError(
            f"{path} is {shape[0]}×{shape[1]} but its series is {ref.rows}×{ref.columns}; "
            "the files changed since discovery."
        )
    rescale = _rescale(path, ds)
    ts = _transfer_syntax(ds)
    if "TransferSyntaxUID" not in ds.file_meta:  # a data set written without file meta
        ds.file_meta.TransferSyntaxUID = ts
    _decoder_check(path, ts)
    if ts.is_compressed:
        _codestream_check(path, ds, ts)
    try:
        stored = ds.pixel_array
    except Exception as err:  # decoders raise many types on damaged data
        raise InputError(f"Cannot decode the pixel data of {path} ({ts.name}): {_one_line(err)}.") from None
    if stored.shape != (ref.rows, ref.columns):
        raise InputError(f"{path} decodes to an array of shape {stored.shape}, not {ref.rows}×{ref.columns}.")
    _to_hu(stored, ds, out, rescale)
    return ds


def _codestream_check(path: Path, ds: Dataset, ts: UID) -> None:
    """InputError when a JPEG or JPEG 2000 frame declares another size than Rows×Columns: its
    decoder would allocate what the codestream declares before anything else could check it."""
    if str(ts) not in _PLUGIN_PACKAGE or str(ts) == "1.2.840.10008.1.2.5":  # RLE sizes come from Rows×Columns
        return
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # damaged encapsulation: the decoder says what is wrong
        return
    size = codestream_size(bytes(frame[:65536]))
    if size is not None and size != (ds.Rows, ds.Columns):
        raise InputError(
            f"{path} holds a compressed image of {size[0]}×{size[1]} pixels but its header says "
            f"{ds.Rows}×{ds.Columns}; the file is damaged or forged, so it is not decoded."
        )


# JPEG start-of-frame markers (ITU T.81 B.1.1.3, T.87 for JPEG-LS's 0xF7): not DHT/JPG/DAC
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def codestream_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) a JPEG, JPEG-LS or JPEG 2000 codestream declares, None when not found.

    Reads only marker segments: the JPEG frame header (SOFn: P, Y, X) or the JPEG 2000 SIZ
    segment (Xsiz - XOsiz, Ysiz - YOsiz; ITU T.800 A.5.1), in a bare codestream or a JP2 file.
    """
    siz = data.find(b"\xff\x4f\xff\x51")
    if siz >= 0 and len(data) >= siz + 24:
        x, y, x0, y0 = struct.unpack(">LLLL", data[siz + 8 : siz + 24])
        return (y - y0, x - x0) if x > x0 and y > y0 else None
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return rows, cols
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def load_volume(ref: SeriesRef, start: int = 0, stop: int | None = None) -> Volume:
    """Decode slices ``[start, stop)`` of a discovered series (all by default) into an int16 HU
    volume, one slice file at a time; memory: (stop - start)·Rows·Columns·2 bytes.

    Raises :class:`InputError` naming the file when a slice cannot be read or decoded, when its
    rescale is not usable, when a compressed transfer syntax needs a plugin that is not
    installed, or when a file no longer matches what discovery saw.
    """
    stop = ref.n_slices if stop is None else min(stop, ref.n_slices)
    if not 0 <= start < stop:
        raise InputError(f"Slices {start}..{stop} are not a range of the {ref.n_slices} slices of {ref.path}.")
    files = ref.files[start:stop]
    hu = np.empty((len(files), ref.rows, ref.columns), dtype=np.int16)
    metadata: dict[str, str | float] = {}
    n_missing_rescale = 0
    for i, path in enumerate(files):
        with _warnings_to_log(path):
            try:
                ds = _load_slice(path, ref, hu[i])
                n_missing_rescale += "RescaleSlope" not in ds or "RescaleIntercept" not in ds
                if i == 0:
                    metadata = _metadata(ds)
            except InputError:
                raise
            except Exception as err:  # a header value pydicom cannot convert, for example
                raise InputError(f"Cannot read {path}: {_one_line(err)}.") from None
        del ds
    warns = list(ref.warnings)
    if n_missing_rescale:
        warns.append(
            f"{n_missing_rescale} slice(s) have no RescaleSlope/RescaleIntercept; their stored values were used as HU"
        )
    return Volume(
        hu=hu,
        spacing=(float(ref.slice_spacing), float(ref.pixel_spacing[0]), float(ref.pixel_spacing[1])),
        study_uid=ref.study_uid,
        series_uid=ref.series_uid,
        path=ref.path,
        positions=ref.positions[start:stop].copy(),
        metadata=metadata,
        warnings=warns,
    )


# --------------------------------------------------------------------------------------------
# Report


def inspect_tree(root: Path) -> list[dict[str, Any]]:
    """What ``isl-rt inspect`` shows: one JSON-ready entry per series and per skipped item.

    Entries are sorted by path. Raises :class:`InputError` when ``root`` is missing or not a
    folder.
    """
    found = discover(root)
    entries: list[dict[str, Any]] = []
    for s in found.series:
        entries.append(
            {
                "status": "ok",
                "path": str(s.path),
                "SeriesInstanceUID": s.series_uid,
                "StudyInstanceUID": s.study_uid,
                "SeriesNumber": s.series_number,
                "SeriesDescription": s.description,
                "modality": s.modality,
                "n_slices": s.n_slices,
                "matrix": [s.rows, s.columns],
                "pixel_spacing": [round(s.pixel_spacing[0], 6), round(s.pixel_spacing[1], 6)],
                "slice_spacing": round(s.slice_spacing, 6),
                "warnings": list(s.warnings),
            }
        )
    for k in found.skipped:
        entries.append(
            {
                "status": k.status,
                "path": str(k.path),
                "reason": k.reason,
                "SeriesInstanceUID": k.series_uid,
                "n_files": k.n_files,
            }
        )
    order = {"ok": 0, "error": 1, "skipped": 2}
    entries.sort(key=lambda e: (e["path"], order[e["status"]]))
    return entries
