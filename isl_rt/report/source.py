"""What the report reads of a scan: the scores CSV rows, each series' JSON, its per-slice
numbers, its heat maps and its source slices.

Every per-slice number the report shows comes through :func:`read_slices` (today from the
series JSON that ``scan`` writes beside the CSV). The source slices are read again from the
row's ``path``: a DICOM series is found there by its SeriesInstanceUID and shown in the bundle's
brain window; a folder of images is shown as it is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from isl_rt.errors import InputError, IslError
from isl_rt.outputs import row_key, safe_name

#: shown when a series JSON records no windows (written before the JSON carried them)
FALLBACK_WINDOW: tuple[str, float, float] = ("brain", 40.0, 80.0)


def series_key(row: Mapping[str, str]) -> str:
    """The file-name-safe key of a scores-CSV row (its SeriesInstanceUID, else its path)."""
    return safe_name(row_key(row))


def series_json_path(scores_csv: Path, row: Mapping[str, str]) -> Path:
    """Where ``scan`` wrote the JSON of an ok row: ``<stem>.series/<safe series key>.json`` (the
    ``series`` column: SeriesInstanceUID, or an image series' folder id)."""
    scores_csv = Path(scores_csv)
    key = row.get("series") or row.get("SeriesInstanceUID", "")
    return scores_csv.parent / f"{scores_csv.stem}.series" / f"{safe_name(key)}.json"


def read_series_json(scores_csv: Path, row: Mapping[str, str]) -> dict[str, Any]:
    """The series JSON of ``row``; {} when it is missing or unreadable (the page says so)."""
    path = series_json_path(scores_csv, row)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class SliceTable:
    """The per-slice results of one series, in slice order (slice 0 most inferior)."""

    scores: np.ndarray  # float64 [N]
    apds: np.ndarray  # float64 [N]
    #: slice score above the bundle's slice threshold (the slices CSV's ``flagged``); all False
    #: without one
    flagged: np.ndarray  # bool [N]
    #: position along the slice normal (mm), or None where the source has none (images)
    positions_mm: np.ndarray | None
    #: the bundle's slice-score threshold (manifest ``slice_threshold.slice_score``), which flags
    #: slices; None when the bundle has none or the JSON predates it
    slice_threshold: float | None
    #: the bundle's scan-score threshold, which flags the series; None for an uncalibrated bundle
    scan_threshold: float | None

    @property
    def n(self) -> int:
        return int(self.scores.size)


def read_slices(scores_csv: Path, row: Mapping[str, str]) -> SliceTable | None:
    """The per-slice scores, APDS and flags of one ok row; None when the scan left none. A slice is
    flagged as the slices CSV flags it: slice score above the bundle's *slice* threshold."""
    info = read_series_json(scores_csv, row)
    scores = np.asarray(info.get("slice_scores") or [], dtype=np.float64)  # null (not scored) -> NaN
    if scores.size == 0:
        return None
    apds = np.asarray(info.get("slice_apds") or [], dtype=np.float64)
    if apds.shape != scores.shape:
        apds = np.full_like(scores, np.nan)
    slice_threshold = _optional_float(info.get("slice_threshold"))
    if slice_threshold is None:
        flagged = np.zeros(scores.shape, dtype=bool)
    else:
        flagged = scores > slice_threshold  # NaN (not scored) is never above it
    positions = np.asarray(info.get("slice_positions_mm") or [], dtype=np.float64)
    return SliceTable(scores=scores, apds=apds, flagged=flagged,
                      positions_mm=positions if positions.shape == scores.shape else None,
                      slice_threshold=slice_threshold, scan_threshold=_optional_float(info.get("threshold")))


def _optional_float(value: Any) -> float | None:
    """A threshold from the series JSON: None when absent or null."""
    return None if value is None else float(value)


@dataclass
class Display:
    """The source slices as they are shown: 8-bit gray [N,H,W] or RGB [N,H,W,3]."""

    pixels: np.ndarray | None
    #: how the pixels were made, e.g. "brain window 40/80 HU" or "as stored (8-bit)"
    window: str = ""
    #: displayed width / height of one slice (the pixel spacing's aspect)
    aspect: float = 1.0
    #: facts about the source beyond the series JSON (matrix, spacing)
    facts: dict[str, str] = field(default_factory=dict)
    #: why ``pixels`` is None, or ""
    note: str = ""


def display_window(info: Mapping[str, Any]) -> tuple[str, float, float]:
    """(name, level, width) of the window slices are shown in: the bundle's brain window, else
    its first; 40/80 when the JSON records no windows."""
    windows = [w for w in info.get("windows") or [] if isinstance(w, dict)]
    for w in windows:
        if str(w.get("name", "")).lower() == "brain":
            return str(w["name"]), float(w["level"]), float(w["width"])
    if windows:
        w = windows[0]
        return str(w.get("name", "")), float(w["level"]), float(w["width"])
    return FALLBACK_WINDOW


def window_hu(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU to 8-bit gray: [level - width/2, level + width/2] onto 0..255, clipped."""
    low = level - width / 2.0
    scaled = (hu.astype(np.float32) - np.float32(low)) * np.float32(255.0 / max(width, 1e-6))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def load_display(row: Mapping[str, str], info: Mapping[str, Any]) -> Display:
    """Read the row's source slices again and make them displayable; a Display with a note
    (never an exception) when they cannot be read."""
    path = Path(row.get("path", ""))
    if not path.is_dir():
        return Display(None, note=f"The source slices are no longer at {path}, so this page shows the scores only.")
    uid = row.get("SeriesInstanceUID", "")
    try:
        display = _dicom_display(path, uid, info)
        if display is None:
            display = _images_display(path)
    except IslError as err:
        return Display(None, note=f"The source slices could not be read again ({err}), so this page shows the scores only.")
    if display is None:
        return Display(None, note=f"No series {uid} is under {path} any more, so this page shows the scores only.")
    return display


def _dicom_display(path: Path, uid: str, info: Mapping[str, Any]) -> Display | None:
    from isl_rt.io import dicom

    found = [ref for ref in dicom.discover(path).series if ref.series_uid == uid]
    if not found:
        return None
    ref = found[0]
    volume = dicom.load_volume(ref)
    name, level, width = display_window(info)
    row_mm, col_mm = ref.pixel_spacing
    return Display(
        pixels=window_hu(volume.hu, level, width),
        window=f"{name} window {level:g}/{width:g} HU",
        aspect=float(col_mm / row_mm) if row_mm > 0 and col_mm > 0 else 1.0,
        facts={"matrix": f"{ref.columns}×{ref.rows}", "pixel spacing": f"{row_mm:g} × {col_mm:g} mm",
               "slice spacing": f"{ref.slice_spacing:g} mm"},
    )


def _images_display(path: Path) -> Display | None:
    from isl_rt.io import images

    # the images scan read: survey_images sets aside the unreadable ones as scan does
    refs = [ref for ref in images.survey_images(path).series if ref.path == path]
    if not refs:
        return None
    stack = images.load_images(refs[0])
    pixels = np.clip(np.rint(stack.images * 255.0), 0, 255).astype(np.uint8)  # [N,C,H,W]
    pixels = pixels[:, 0] if pixels.shape[1] == 1 else np.ascontiguousarray(np.moveaxis(pixels, 1, -1))
    return Display(pixels=pixels, window=f"as stored ({stack.bit_depth}-bit images)",
                   facts={"matrix": f"{pixels.shape[2]}×{pixels.shape[1]}"})


def load_heat(scores_csv: Path, info: Mapping[str, Any]) -> tuple[np.ndarray | None, str]:
    """The series' heat maps (float32 [N,H,W] on the source grid) and "", or None and why not."""
    folder = info.get("heatmaps")
    if not folder:
        return None, ("This scan wrote no heat maps (it ran without --heatmaps or --report); "
                      "scan again with --report DIR to see them over the slices.")
    npz = (Path(scores_csv).parent / f"{Path(scores_csv).stem}.series" / str(folder) / "heatmaps.npz")
    try:
        with np.load(npz) as data:
            heat = np.asarray(data["heat"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as err:
        return None, f"The heat maps of this series could not be read from {npz} ({type(err).__name__})."
    if heat.ndim != 3:
        return None, f"{npz} holds heat maps of shape {heat.shape}, not [slices, rows, columns]."
    return heat, ""


def check_heat(heat: np.ndarray, pixels: np.ndarray) -> str:
    """"" when ``heat`` [N,H,W] lies on the grid of ``pixels`` [N,H,W(,3)], else why not."""
    if heat.shape != pixels.shape[:3]:
        return (f"The heat maps ({'×'.join(map(str, heat.shape))}) do not match the source slices "
                f"({'×'.join(map(str, pixels.shape[:3]))}); the source changed after the scan, so no overlay is shown.")
    return ""


def require_scores_csv(scores_csv: Path) -> Path:
    """``scores_csv`` when it is a file, else an :class:`InputError` saying what to pass."""
    scores_csv = Path(scores_csv)
    if not scores_csv.is_file():
        raise InputError(f"{scores_csv} is not a file: pass the scores CSV that isl-rt scan wrote.")
    return scores_csv
