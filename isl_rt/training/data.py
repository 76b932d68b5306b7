"""Healthy-slice sets for training, prepared once with the runtime's own kernels.

A :class:`SliceSet` holds x float32 [N,C,S,S] in [0,1] (``isl_rt.kernels.window`` with the
bundle's windows and size) and edges uint8 [N,C,S,S] (``isl_rt.kernels.canny`` with the
bundle's parameters), exactly what the runtime computes for a scan, plus which series each slice
came from. Sources (:func:`prepare`):

- a DICOM tree (``isl_rt.io.dicom.discover`` / ``load_volume``);
- an image folder tree (``isl_rt.io.images``): ``isl_rt.kernels.window_images`` with the identity
  windows of ``isl_rt.bundle.image_windows``, the one function ``scan`` uses for image series too
  (values v in [0,1] become pseudo-HU round(v·4000), windowed with level 2000, width 4000 per
  image channel, i.e. the identity up to 1/4000, resampled exactly as CT slices are);
- ``phantom:N`` (optionally ``phantom:N:SEED``): N healthy studies of ``isl_rt.io.phantom``,
  generated in memory (quick tests and demos).

A ``labels.csv`` (``SeriesInstanceUID,label`` with 0 = healthy, 1 = disorder) keeps only the
series labelled 0; series it does not list are left out too, and both counts are recorded. For
image folders a per-slice labels CSV (``image`` and a 0/1 label column, :mod:`isl_rt.labels`)
keeps only the images labelled 0: the lesion-free slices of the listed (training) patients.
All slices of a series are kept, empty ones included: the runtime scores every slice.

With a ``cache_dir`` the arrays are written once as ``.npy`` (``x.npy``, ``edges.npy``,
``series_index.npy`` and ``slices.json``) and memory-mapped on later runs; the cache is rebuilt
when the source, labels, windows, size or Canny parameters change.

Numpy only: importing this module imports neither torch nor the readers (they load on use).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from isl_rt.bundle import DEFAULT_WINDOWS, CannySpec, WindowSpec, image_windows
from isl_rt.errors import InputError, IslError
from isl_rt.kernels import IMAGE_HU_SCALE

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_CANNY",
    "IMAGE_HU_SCALE",
    "PHANTOM_PREFIX",
    "PrepParams",
    "SliceSet",
    "image_windows",
    "prepare",
    "prepare_volumes",
    "read_labels",
]

#: sigma 1.0 blur, then hysteresis on the Sobel L2 magnitude of the [0,1] image; on phantom slices
#: at S=128 this outlines skull, ventricles and sulci, where (0.1, 0.2) also traces noise in the
#: brain window and (0.2, 0.4) loses the sulci
DEFAULT_CANNY = CannySpec(sigma=1.0, low=0.15, high=0.3)
PHANTOM_PREFIX = "phantom:"
CACHE_VERSION = 1

PrepProgress = Callable[[int, int, str], None]  # (series done, series total, series id)


@dataclass(frozen=True)
class PrepParams:
    """How slices are turned into model input: size S, windows, Canny parameters."""

    size: int
    windows: tuple[WindowSpec, ...] = DEFAULT_WINDOWS
    canny: CannySpec = DEFAULT_CANNY

    @property
    def channels(self) -> int:
        return len(self.windows)

    def windows_array(self) -> np.ndarray:
        """float32 [C,2] of (level, width) for ``isl_rt.kernels.window``."""
        return np.asarray([(w.level, w.width) for w in self.windows], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "windows": [{"name": w.name, "level": w.level, "width": w.width} for w in self.windows],
            "canny": {"sigma": self.canny.sigma, "low": self.canny.low, "high": self.canny.high},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrepParams:
        return cls(
            size=int(data["size"]),
            windows=tuple(WindowSpec(str(w["name"]), float(w["level"]), float(w["width"])) for w in data["windows"]),
            canny=CannySpec(float(data["canny"]["sigma"]), float(data["canny"]["low"]), float(data["canny"]["high"])),
        )


@dataclass
class SliceSet:
    """Prepared healthy slices: x float32 [N,C,S,S], edges uint8 [N,C,S,S], series of each slice."""

    x: np.ndarray
    edges: np.ndarray
    series_index: np.ndarray  # int32 [N], index into ``series``
    series: list[str]
    params: PrepParams
    description: str
    excluded: dict[str, int] = field(default_factory=dict)
    #: why series were left out (one sentence each, e.g. an unreadable series)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_series(self) -> int:
        return len(self.series)

    def summary(self) -> dict[str, Any]:
        return {
            "data": self.description,
            "series": self.n_series,
            "slices": len(self),
            "excluded": dict(self.excluded),
            **self.params.to_dict(),
        }


# ---- labels ---------------------------------------------------------------------------------------
def read_labels(path: Path) -> dict[str, int]:
    """SeriesInstanceUID -> 0/1 from a labels CSV; InputError with a sentence when malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist: pass a labels.csv with columns SeriesInstanceUID,label.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("SeriesInstanceUID", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(missing)}; it needs SeriesInstanceUID,label.")
        labels: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            value = (row["label"] or "").strip()
            if value not in ("0", "1"):
                raise InputError(f"{path} line {line}: label {value!r} is not 0 (healthy) or 1 (disorder).")
            labels[(row["SeriesInstanceUID"] or "").strip()] = int(value)
    return labels


# ---- preparation ----------------------------------------------------------------------------------
def _prepare_one(hu: np.ndarray, params: PrepParams, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from isl_rt import kernels

    x = kernels.window(np.ascontiguousarray(hu, dtype=np.int16), windows, params.size)
    edges = kernels.canny(x, params.canny.low, params.canny.high, sigma=params.canny.sigma)
    return x, edges


def prepare_volumes(
    volumes: Iterator[tuple[str, np.ndarray]] | Sequence[tuple[str, np.ndarray]],
    params: PrepParams,
    *,
    description: str,
    total_slices: int | None = None,
    out_dir: Path | None = None,
    progress: PrepProgress | None = None,
    total_series: int = 0,
) -> SliceSet:
    """Window + Canny every (series id, HU int16 [N,H,W]) volume into one :class:`SliceSet`.

    With ``out_dir`` and ``total_slices`` the arrays are written straight into ``.npy`` memory
    maps there (no second copy in memory); otherwise they are concatenated in memory.
    """
    windows = params.windows_array()
    s, c = params.size, params.channels
    series: list[str] = []
    index_parts: list[np.ndarray] = []
    x_parts: list[np.ndarray] = []
    e_parts: list[np.ndarray] = []
    x_map = e_map = None
    if out_dir is not None and total_slices is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        x_map = np.lib.format.open_memmap(out_dir / "x.npy.tmp", mode="w+", dtype=np.float32, shape=(total_slices, c, s, s))
        e_map = np.lib.format.open_memmap(out_dir / "edges.npy.tmp", mode="w+", dtype=np.uint8, shape=(total_slices, c, s, s))
    filled = 0
    for i, (uid, hu) in enumerate(volumes):
        x, edges = _prepare_one(hu, params, windows)
        n = x.shape[0]
        if x_map is not None and e_map is not None:
            if filled + n > x_map.shape[0]:
                raise InputError(f"series {uid} has more slices than its headers announced; re-run to rebuild the cache.")
            x_map[filled : filled + n] = x
            e_map[filled : filled + n] = edges
        else:
            x_parts.append(x)
            e_parts.append(edges)
        index_parts.append(np.full(n, len(series), dtype=np.int32))
        series.append(uid)
        filled += n
        if progress is not None:
            progress(i + 1, total_series, uid)
    if not series:
        raise InputError(f"{description} holds no healthy series to train on.")
    series_index = np.concatenate(index_parts)
    if x_map is not None and e_map is not None and out_dir is not None:
        x_map.flush()
        e_map.flush()
        del x_map, e_map
        x_all = np.load(out_dir / "x.npy.tmp", mmap_mode="r")
        e_all = np.load(out_dir / "edges.npy.tmp", mmap_mode="r")
        if filled != x_all.shape[0]:  # fewer slices than announced: keep what was filled
            x_all = np.array(x_all[:filled])  # copies: the cache writer then rewrites the files
            e_all = np.array(e_all[:filled])
    else:
        x_all = np.concatenate(x_parts)
        e_all = np.concatenate(e_parts)
    return SliceSet(x=x_all, edges=e_all, series_index=series_index, series=series, params=params, description=description)


def _phantom_volumes(count: int, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    from isl_rt.io import phantom

    for i in range(count):
        study = phantom.generate_study(seed + i)
        yield f"phantom-{seed + i}", np.asarray(study.hu)


def _parse_phantom(spec: str) -> tuple[int, int]:
    parts = spec[len(PHANTOM_PREFIX) :].split(":")
    try:
        count = int(parts[0])
        seed = int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        raise InputError(f"{spec!r} is not a phantom source: write phantom:N or phantom:N:SEED (N studies).") from None
    if count < 1 or len(parts) > 2:
        raise InputError(f"{spec!r} is not a phantom source: write phantom:N or phantom:N:SEED with N ≥ 1.")
    return count, seed


def _source_key(
    source: str | Path, labels: Path | None, max_series: int | None, params: PrepParams, label_column: str = "label"
) -> dict[str, Any]:
    text = str(source)
    key: dict[str, Any] = {"cache_version": CACHE_VERSION, "source": text, "max_series": max_series, **params.to_dict()}
    if label_column != "label":
        key["label_column"] = label_column
    if not text.startswith(PHANTOM_PREFIX):
        key["source"] = str(Path(text).resolve())
    if labels is not None:
        key["labels_sha256"] = hashlib.sha256(Path(labels).read_bytes()).hexdigest()
    return key


def _load_cache(cache_dir: Path, key: dict[str, Any]) -> SliceSet | None:
    meta_path = cache_dir / "slices.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("key") != key:
        return None
    try:
        x = np.load(cache_dir / "x.npy", mmap_mode="r")
        edges = np.load(cache_dir / "edges.npy", mmap_mode="r")
        series_index = np.load(cache_dir / "series_index.npy")
    except (OSError, ValueError):
        return None
    return SliceSet(
        x=x,
        edges=edges,
        series_index=series_index,
        series=list(meta["series"]),
        params=PrepParams.from_dict(meta["params"]),
        description=str(meta["description"]),
        excluded={str(k): int(v) for k, v in meta.get("excluded", {}).items()},
        notes=[str(n) for n in meta.get("notes", [])],
    )


def _write_cache(cache_dir: Path, slices: SliceSet, key: dict[str, Any]) -> SliceSet:
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, array in (("x", slices.x), ("edges", slices.edges)):
        tmp = cache_dir / f"{name}.npy.tmp"
        already_there = isinstance(array, np.memmap) and bool(array.filename) and Path(str(array.filename)).resolve() == tmp.resolve()
        if not already_there:  # prepared in memory: write it (a file handle, so np.save adds no suffix)
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    np.save(cache_dir / "series_index.npy", slices.series_index)
    os.replace(cache_dir / "x.npy.tmp", cache_dir / "x.npy")
    os.replace(cache_dir / "edges.npy.tmp", cache_dir / "edges.npy")
    meta = {
        "key": key,
        "series": slices.series,
        "params": slices.params.to_dict(),
        "description": slices.description,
        "excluded": slices.excluded,
        "notes": slices.notes,
    }
    from isl_rt.outputs import write_json_atomic

    write_json_atomic(cache_dir / "slices.json", meta)  # written last: its presence marks a complete cache
    loaded = _load_cache(cache_dir, key)
    assert loaded is not None
    return loaded


def prepare(
    source: str | Path,
    params: PrepParams,
    *,
    labels: Path | None = None,
    max_series: int | None = None,
    cache_dir: Path | None = None,
    progress: PrepProgress | None = None,
    label_column: str = "label",
) -> SliceSet:
    """The healthy slices of ``source`` (DICOM tree, image folder tree or ``phantom:N[:SEED]``).

    Image folders carry no HU: their slices use the identity windows of :func:`image_windows`
    whatever ``params.windows`` says (the returned set's ``params`` tells). With ``cache_dir`` the
    prepared arrays are reused when nothing that shapes them changed.
    """
    if max_series is not None and max_series < 1:
        raise InputError(f"max_series must be at least 1, got {max_series}.")
    key = _source_key(source, labels, max_series, params, label_column)
    if cache_dir is not None:
        cached = _load_cache(Path(cache_dir), key)
        if cached is not None:
            return cached
        (Path(cache_dir) / "slices.json").unlink(missing_ok=True)  # invalidate before rewriting
    from isl_rt import labels as slice_labels

    per_slice = labels is not None and slice_labels.is_slice_labels(labels)
    allowed = slice_labels.healthy_images(labels, label_column=label_column) if labels is not None and per_slice else None
    label_map = read_labels(labels) if labels is not None and not per_slice else None
    text = str(source)
    out_dir = Path(cache_dir) if cache_dir is not None else None

    if text.startswith(PHANTOM_PREFIX):
        count, seed = _parse_phantom(text)
        count = min(count, max_series) if max_series else count
        slices = prepare_volumes(
            _phantom_volumes(count, seed), params, description=f"{count} healthy phantom studies (seed {seed})",
            progress=progress, total_series=count,
        )
    else:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{root} is not a folder: pass a DICOM tree, an image folder tree or phantom:N.")
        slices = _prepare_folder(root, params, label_map, max_series, out_dir, progress, allowed)
    if cache_dir is not None:
        slices = _write_cache(Path(cache_dir), slices, key)
    return slices


def _select(ids: list[str], label_map: dict[str, int] | None, max_series: int | None) -> tuple[list[int], dict[str, int]]:
    keep: list[int] = []
    excluded = {"abnormal": 0, "unlabelled": 0, "over_max_series": 0}
    for i, uid in enumerate(ids):
        if label_map is not None:
            if uid not in label_map:
                excluded["unlabelled"] += 1
                continue
            if label_map[uid] != 0:
                excluded["abnormal"] += 1
                continue
        if max_series is not None and len(keep) >= max_series:
            excluded["over_max_series"] += 1
            continue
        keep.append(i)
    return keep, excluded


def _prepare_folder(
    root: Path,
    params: PrepParams,
    label_map: dict[str, int] | None,
    max_series: int | None,
    out_dir: Path | None,
    progress: PrepProgress | None,
    allowed: set[Path] | None = None,
) -> SliceSet:
    from isl_rt.io import dicom

    found = dicom.discover(root)
    if found.series and allowed is not None:
        raise InputError(
            f"{root} holds DICOM series, but the labels name images: per-slice labels work for image folders; "
            "label DICOM series with a SeriesInstanceUID,label CSV."
        )
    if found.series:
        refs = found.series
        keep, excluded = _select([r.series_uid for r in refs], label_map, max_series)
        chosen = [refs[i] for i in keep]
        if not chosen:
            raise InputError(f"{root} has no series left to train on ({_describe(excluded, len(refs))}).")

        unreadable: list[str] = []

        def volumes() -> Iterator[tuple[str, np.ndarray]]:
            for ref in chosen:
                try:
                    hu = dicom.load_volume(ref).hu
                except IslError as err:  # one bad series is left out, not the whole data set
                    unreadable.append(str(err))
                    continue
                yield ref.series_uid, hu

        slices = prepare_volumes(
            volumes(), params, description=f"DICOM tree {root}", total_slices=sum(r.n_slices for r in chosen),
            out_dir=out_dir, progress=progress, total_series=len(chosen),
        )
        slices.excluded = excluded | {"skipped_by_discovery": len(found.skipped), "unreadable": len(unreadable)}
        slices.notes = unreadable
        return slices

    from isl_rt.io import images

    image_refs = images.discover_images(root)
    if not image_refs:
        raise InputError(f"{root} holds neither CT DICOM series nor image folders (PNG, JPEG, TIFF).")
    if allowed is not None:
        image_refs, unlisted = _healthy_images_only(image_refs, allowed)
        if not image_refs:
            raise InputError(f"{root} holds no image that the labels list with label 0 ({unlisted} images not listed or labelled 1).")
    keep, excluded = _select([r.series_id for r in image_refs], label_map, max_series)
    if allowed is not None:
        excluded["images_not_labelled_0"] = unlisted
    chosen_images = [image_refs[i] for i in keep]
    if not chosen_images:
        raise InputError(f"{root} has no image folders left to train on ({_describe(excluded, len(image_refs))}).")

    first = images.load_images(chosen_images[0])
    channels = first.images.shape[1]
    params = replace(params, windows=image_windows(channels))  # images carry no HU: identity windows

    def image_volumes() -> Iterator[tuple[str, np.ndarray]]:
        for i, ref in enumerate(chosen_images):
            stack = first if i == 0 else images.load_images(ref)
            if stack.images.shape[1] != channels:
                raise InputError(
                    f"{ref.path} holds {stack.images.shape[1]}-channel images but {chosen_images[0].path} holds "
                    f"{channels}-channel ones: train on folders of one kind (all gray or all RGB)."
                )
            yield ref.series_id, stack.images  # float32 [N,C,H,W] in [0, 1]

    return _prepare_image_volumes(image_volumes(), params, root, len(chosen_images), excluded, progress)


def _healthy_images_only(refs: list[Any], allowed: set[Path]) -> tuple[list[Any], int]:
    """The image series restricted to their images in ``allowed`` (resolved paths); series left
    with none are dropped. Returns them and the number of images left out."""
    from isl_rt.io.images import ImageSeriesRef

    kept: list[Any] = []
    dropped = 0
    for ref in refs:
        files = tuple(f for f in ref.files if f.resolve() in allowed)
        dropped += len(ref.files) - len(files)
        if files:
            kept.append(ImageSeriesRef(series_id=ref.series_id, path=ref.path, files=files))
    return kept, dropped


def _prepare_image_volumes(
    volumes: Iterator[tuple[str, np.ndarray]],
    params: PrepParams,
    root: Path,
    total: int,
    excluded: dict[str, int],
    progress: PrepProgress | None,
) -> SliceSet:
    from isl_rt import kernels

    series: list[str] = []
    xs: list[np.ndarray] = []
    es: list[np.ndarray] = []
    index: list[np.ndarray] = []
    for i, (uid, images) in enumerate(volumes):
        x = kernels.window_images(images, params.windows_array(), params.size)  # what scan computes
        xs.append(x)
        es.append(kernels.canny(x, params.canny.low, params.canny.high, sigma=params.canny.sigma))
        index.append(np.full(x.shape[0], len(series), dtype=np.int32))
        series.append(uid)
        if progress is not None:
            progress(i + 1, total, uid)
    return SliceSet(
        x=np.concatenate(xs), edges=np.concatenate(es), series_index=np.concatenate(index), series=series,
        params=params, description=f"image folders under {root}", excluded=excluded,
    )


def _describe(excluded: dict[str, int], total: int) -> str:
    parts = [f"{n} {what.replace('_', ' ')}" for what, n in excluded.items() if n]
    return f"{total} found; left out: {', '.join(parts) or 'none'}"
