"""Write a phantom cohort: DICOM series, and beside them ``labels.csv`` and lesion masks.

Layout, for ``out`` = ``cohort``::

    cohort/
      .isl-rt-phantom.json        marker: what this run writes (lets a later run replace it)
      series_0001/*.dcm ...       one folder per series, and nothing else
    cohort.labels.csv             one row per series (its path relative to this file)
    cohort.masks/<SeriesInstanceUID>.npz   key "mask": uint8 [N, H, W], slices by position ascending

The labels and masks lie beside the cohort folder, not in it, so ``isl-rt scan cohort`` and
``isl-rt inspect cohort`` find the series and nothing else to skip. ``out`` must be absent,
empty, or a previous phantom cohort (it has the marker): a later run removes exactly the series
folders its marker lists and the labels and masks beside the folder, and leaves any other file
alone; a ``cohort.labels.csv`` or ``cohort.masks/`` beside it that a phantom run did
not write (another header, files other than ``.npz``) is refused, never overwritten. A series is
written into a temporary folder and renamed into place; the labels and the masks are written to a
temporary name and renamed, so a crash never leaves a half-written labels file or mask.
A cohort written before the labels moved (``cohort/labels.csv``, ``cohort/masks/``) is replaced
the same way; :func:`cohort_labels` finds its labels.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isl_rt.errors import InputError
from isl_rt.io.phantom._dicom import write_study
from isl_rt.io.phantom._disorders import DISORDERS
from isl_rt.io.phantom._study import generate_study

MARKER = ".isl-rt-phantom.json"
#: what the cohort folder ``OUT`` gets beside it: ``OUT.labels.csv`` and ``OUT.masks/``
LABELS_SUFFIX = ".labels.csv"
MASKS_SUFFIX = ".masks"
LABEL_COLUMNS = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "path",
    "label",
    "disorder_type",
    "size_class",
    "urgency",
    "seed",
    "n_slices",
    "lesion_voxels",
)


@dataclass(frozen=True)
class CohortSummary:
    """What :func:`write_cohort` wrote."""

    out: Path
    series: int
    abnormal: int
    disorder_counts: dict[str, int] = field(default_factory=dict)
    labels_csv: Path = Path()
    masks_dir: Path = Path()

    @property
    def disorder_types(self) -> int:
        return len(self.disorder_counts)


@dataclass(frozen=True)
class _Planned:
    index: int
    folder: str
    seed: int
    disorder: str | None
    size_class: str | None


def plan_cohort(scans: int, abnormal_fraction: float, seed: int) -> list[_Planned]:
    """Which series are abnormal, with which disorder and size, and each one's study seed.

    ``round(scans * abnormal_fraction)`` (halves round up) series are abnormal, at positions
    drawn from the seed; abnormal series cycle through all disorder types (in an order drawn
    from the seed) while the size class rotates, so 20 abnormal series cover all 18 types with
    small, medium and large lesions mixed, and later rounds give each type its other sizes.
    """
    root = np.random.SeedSequence(seed)
    children = root.spawn(scans)
    seeds = [int(c.generate_state(1, np.uint32)[0]) for c in children]
    order_rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    n_abnormal = int(np.floor(scans * abnormal_fraction + 0.5))
    abnormal = set(int(i) for i in order_rng.permutation(scans)[:n_abnormal])
    types = [str(t) for t in order_rng.permutation(sorted(DISORDERS))]
    planned: list[_Planned] = []
    j = 0
    for i in range(scans):
        disorder = size = None
        if i in abnormal:
            disorder = types[j % len(types)]
            sizes = DISORDERS[disorder].sizes
            size = sizes[(j + j // len(types)) % len(sizes)]
            j += 1
        planned.append(_Planned(i, f"series_{i + 1:04d}", seeds[i], disorder, size))
    return planned


def _beside(cohort: Path, suffix: str) -> Path:
    """``cohort`` with ``suffix`` added to its name: a path in the folder that holds ``cohort``."""
    cohort = Path(cohort)
    if cohort.name in ("", ".", ".."):
        cohort = cohort.resolve()
    if not cohort.name:
        raise InputError(f"Cannot write a phantom cohort to {cohort}: its labels and masks go beside the folder; "
                         "choose a folder with a name, such as ./cohort.")
    return cohort.with_name(cohort.name + suffix)


def cohort_labels(cohort: Path) -> Path:
    """The labels CSV of the phantom cohort in ``cohort``: ``<cohort>.labels.csv`` beside it, or
    ``cohort/labels.csv`` for a cohort written before the labels moved out of the folder."""
    beside = _beside(cohort, LABELS_SUFFIX)
    inside = Path(cohort) / "labels.csv"
    if not beside.exists() and inside.is_file() and (Path(cohort) / MARKER).is_file():
        return inside
    return beside


def cohort_masks(cohort: Path) -> Path:
    """The lesion-mask folder of the phantom cohort in ``cohort``: ``<cohort>.masks`` beside it, or
    ``cohort/masks`` for a cohort written before the masks moved out of the folder."""
    beside = _beside(cohort, MASKS_SUFFIX)
    inside = Path(cohort) / "masks"
    if not beside.exists() and inside.is_dir() and (Path(cohort) / MARKER).is_file():
        return inside
    return beside


def _phantom_output(path: Path, suffix: str) -> bool:
    """Whether ``path`` (beside a cohort folder) is absent or what a phantom run writes there: a
    labels CSV with the phantom's header, or a folder of masks (``.npz`` files only)."""
    if not os.path.lexists(path):
        return True
    if suffix == LABELS_SUFFIX:
        if not path.is_file() or path.is_symlink():
            return False
        try:
            with open(path, newline="") as handle:
                return handle.readline().rstrip("\r\n") == ",".join(LABEL_COLUMNS)
        except (OSError, UnicodeDecodeError):
            return False
    return path.is_dir() and not path.is_symlink() and all(
        p.suffix == ".npz" and p.is_file() for p in path.iterdir())


def _check_args(out: Path, scans: int, abnormal_fraction: float, seed: int) -> None:
    if isinstance(scans, bool) or not isinstance(scans, (int, np.integer)) or scans < 1:
        raise InputError(f"The number of phantom scans must be a whole number >= 1, got {scans!r}.")
    if not (0.0 <= float(abnormal_fraction) <= 1.0):
        raise InputError(f"The abnormal fraction must lie between 0 and 1, got {abnormal_fraction!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The phantom seed must be a non-negative whole number, got {seed!r}.")
    if out.exists() and not out.is_dir():
        raise InputError(f"Cannot write the phantom cohort to {out}: it exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(
            f"{out} is not empty and was not written by `isl-rt phantom`; choose a new or empty folder "
            "(a previous phantom cohort there would be replaced)."
        )
    for suffix in (LABELS_SUFFIX, MASKS_SUFFIX):
        path = _beside(out, suffix)
        if not _phantom_output(path, suffix):
            raise InputError(
                f"{path} exists and was not written by `isl-rt phantom`, but the cohort in {out} writes its "
                f"{'labels' if suffix == LABELS_SUFFIX else 'lesion masks'} there: move it or choose another folder name."
            )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _remove_previous(out: Path) -> None:
    """Remove what a previous phantom run listed in its marker, and the labels and masks beside
    ``out`` (checked by :func:`_check_args` to be a phantom run's), and nothing else."""
    for suffix in (LABELS_SUFFIX, MASKS_SUFFIX):
        beside = _beside(out, suffix)
        _remove(beside)
        _remove(beside.with_name(f".tmp-{beside.name}"))
    marker = out / MARKER
    if not marker.is_file():
        return
    try:
        entries = json.loads(marker.read_text()).get("entries", [])
    except (OSError, ValueError) as err:
        raise InputError(
            f"The phantom marker {marker} is unreadable ({err}); remove the folder or choose another."
        ) from None
    for name in entries:
        path = out / str(name)
        if path.resolve().parent != out.resolve():
            continue  # never leave the cohort folder
        _remove(path)
    for tmp in out.glob(".tmp-*"):
        _remove(tmp)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, newline="")
    os.replace(tmp, path)


def write_cohort(
    out: Path,
    scans: int,
    abnormal_fraction: float,
    seed: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> CohortSummary:
    """Write ``scans`` phantom series (``abnormal_fraction`` of them with a disorder) into ``out``,
    their labels into ``<out>.labels.csv`` and the lesion masks into ``<out>.masks/`` beside it.

    Deterministic for ``seed``.  ``progress(done, total)`` is called after each series.
    Raises :class:`InputError` for bad arguments or an ``out`` folder that holds other data.
    """
    out = Path(out)
    _check_args(out, scans, abnormal_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    planned = plan_cohort(int(scans), float(abnormal_fraction), int(seed))
    entries = [p.folder for p in planned]
    labels_csv, masks = _beside(out, LABELS_SUFFIX), _beside(out, MASKS_SUFFIX)
    _atomic_write_text(
        out / MARKER,
        json.dumps(
            {
                "tool": "isl-rt phantom",
                "seed": int(seed),
                "scans": int(scans),
                "abnormal_fraction": float(abnormal_fraction),
                "entries": entries,
                "labels": labels_csv.name,
                "masks": masks.name,
            },
            indent=1,
        ),
    )
    rows: list[dict[str, object]] = []
    counts: Counter[str] = Counter()
    for p in planned:
        study = generate_study(p.seed, p.disorder, p.size_class)
        tmp = out / f".tmp-{p.folder}"
        if tmp.exists():
            shutil.rmtree(tmp)
        record = write_study(study, tmp)
        os.replace(tmp, out / p.folder)
        voxels = int(study.lesion_mask.sum(dtype=np.int64))
        if study.label:
            masks.mkdir(exist_ok=True)
            tmp_mask = masks / f".tmp-{record.series_uid}.npz"
            with open(tmp_mask, "wb") as fh:
                np.savez_compressed(fh, mask=study.lesion_mask)
            os.replace(tmp_mask, masks / f"{record.series_uid}.npz")
            counts[study.disorder] += 1
        rows.append(
            {
                "SeriesInstanceUID": record.series_uid,
                "StudyInstanceUID": record.study_uid,
                "path": f"{_beside(out, '').name}/{p.folder}",  # relative to the labels CSV
                "label": study.label,
                "disorder_type": study.disorder,
                "size_class": study.size_class,
                "urgency": study.urgency,
                "seed": p.seed,
                "n_slices": study.n_slices,
                "lesion_voxels": voxels,
            }
        )
        del study
        if progress is not None:
            progress(p.index + 1, len(planned))
    _atomic_write_text(labels_csv, _csv_text(rows))
    return CohortSummary(out, len(rows), sum(counts.values()), dict(sorted(counts.items())), labels_csv, masks)


def _csv_text(rows: list[dict[str, object]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
