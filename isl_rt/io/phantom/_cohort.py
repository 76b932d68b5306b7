"""Write a phantom cohort: DICOM series, ``labels.csv`` and lesion masks.

Layout of ``out``::

    out/
      .isl-rt-phantom.json        marker: what this run writes (lets a later run replace it)
      series_0001/*.dcm ...       one folder per series
      masks/<SeriesInstanceUID>.npz   key "mask": uint8 [N, H, W], slices by position ascending
      labels.csv                  one row per series

The marker also tells discovery (``isl-rt inspect``, ``scan``) to leave ``labels.csv`` and
``masks/`` out: a scan of the cohort finds its series and nothing else.

``out`` must be absent, empty, or a previous phantom cohort (it has the marker): a later run
removes exactly the entries its marker lists (series folders, ``masks/``, ``labels.csv``)
and leaves any other file alone.  A series is written into a temporary folder and renamed
into place; ``labels.csv`` and the masks are written to a temporary name and renamed, so a
crash never leaves a half-written labels file or mask.
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
from isl_rt.io.dicom import PHANTOM_MARKER
from isl_rt.io.phantom._dicom import write_study
from isl_rt.io.phantom._disorders import DISORDERS
from isl_rt.io.phantom._study import generate_study

MARKER = PHANTOM_MARKER  # discovery leaves labels.csv and masks/ out of a folder holding it
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


def _remove_previous(out: Path) -> None:
    """Remove what a previous phantom run listed in its marker, and nothing else."""
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
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for tmp in out.glob(".tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()


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
    """Write ``scans`` phantom series (``abnormal_fraction`` of them with a disorder) into ``out``.

    Deterministic for ``seed``.  ``progress(done, total)`` is called after each series.
    Raises :class:`InputError` for bad arguments or an ``out`` folder that holds other data.
    """
    out = Path(out)
    _check_args(out, scans, abnormal_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    planned = plan_cohort(int(scans), float(abnormal_fraction), int(seed))
    entries = [p.folder for p in planned] + ["masks", "labels.csv"]
    _atomic_write_text(
        out / MARKER,
        json.dumps(
            {
                "tool": "isl-rt phantom",
                "seed": int(seed),
                "scans": int(scans),
                "abnormal_fraction": float(abnormal_fraction),
                "entries": entries,
            },
            indent=1,
        ),
    )
    masks = out / "masks"
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
                "path": p.folder,
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
    _atomic_write_text(out / "labels.csv", _csv_text(rows))
    return CohortSummary(out, len(rows), sum(counts.values()), dict(sorted(counts.items())), out / "labels.csv", masks)


def _csv_text(rows: list[dict[str, object]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
