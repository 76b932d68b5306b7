"""Per-slice labels and the patient split of a labelled data set.

A per-slice labels CSV names one image per row and gives it a 0/1 label: column ``image`` (a path
relative to the CSV's folder, or absolute) and a label column (``label`` unless told otherwise,
e.g. ``lesion`` for PHE-SICH-CT-IDS); optional columns ``mask`` (a lesion mask image, same path
rules, empty when none) and a group column (``patient``) that the split keeps together.

:func:`split_groups` splits the groups (patients), never the slices, into training, validation
and test parts with a seeded permutation; :func:`write_split` writes one labels CSV per part
(absolute image and mask paths, so the files work from anywhere) and ``split.json``.

Numpy and the standard library only: the runtime, training and benchmarks all read labels here.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from isl_rt.errors import InputError

__all__ = ["PARTS", "SliceLabel", "healthy_images", "is_slice_labels", "read_slice_labels", "split_groups", "write_split"]

#: the parts of a split, in order
PARTS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class SliceLabel:
    """One labelled slice: its image (resolved path), 0/1 label, mask path or None, and group."""

    image: Path
    label: int
    mask: Path | None
    group: str
    #: the CSV row as read (every column, for writing a part back out)
    row: dict[str, str]


def _resolve(base: Path, text: str) -> Path:
    path = Path(text)
    return (path if path.is_absolute() else base / path).resolve()


def read_slice_labels(path: Path, *, label_column: str = "label", group_column: str = "patient") -> list[SliceLabel]:
    """The rows of a per-slice labels CSV; InputError with a sentence naming the line when one is
    malformed or when one image is labelled twice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist: pass a per-slice labels CSV with columns image,{label_column}.")
    base = path.resolve().parent
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in ("image", label_column) if c not in columns]
        if missing:
            raise InputError(
                f"{path} lacks the column(s) {', '.join(missing)}; a per-slice labels CSV needs image and a 0/1 label "
                f"column (--label-column names it; it has {', '.join(columns) or 'no columns'})."
            )
        out: list[SliceLabel] = []
        seen: dict[Path, int] = {}
        for line, row in enumerate(reader, start=2):
            value = (row.get(label_column) or "").strip()
            if value not in ("0", "1"):
                raise InputError(f"{path} line {line}: {label_column} {value!r} is not 0 (no lesion) or 1 (lesion).")
            image_text = (row.get("image") or "").strip()
            if not image_text:
                raise InputError(f"{path} line {line}: the image column is empty.")
            image = _resolve(base, image_text)
            if image in seen:
                raise InputError(f"{path} line {line}: {image_text} is labelled again (first on line {seen[image]}).")
            seen[image] = line
            mask_text = (row.get("mask") or "").strip()
            group = (row.get(group_column) or "").strip() or image.parent.name
            out.append(SliceLabel(image, int(value), _resolve(base, mask_text) if mask_text else None, group, dict(row)))
    if not out:
        raise InputError(f"{path} holds no labelled slices.")
    return out


def split_groups(groups: Sequence[str], seed: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> dict[str, list[str]]:
    """The distinct ``groups`` split into train/val/test: sorted, permuted with ``seed``, then cut at
    round(f·n) cumulative boundaries. Every part gets at least one group when there are three."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.999 < sum(fractions) < 1.001:
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}.")
    unique = sorted(set(groups))
    if len(unique) < 3:
        raise InputError(f"a train/val/test split needs at least 3 groups (patients), got {len(unique)}.")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    n = len(order)
    a = max(1, int(round(fractions[0] * n)))
    b = max(a + 1, min(n - 1, a + int(round(fractions[1] * n))))
    return {"train": sorted(order[:a]), "val": sorted(order[a:b]), "test": sorted(order[b:])}


def write_split(
    labels_csv: Path,
    out_dir: Path,
    *,
    seed: int,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    label_column: str = "label",
    group_column: str = "patient",
) -> dict[str, object]:
    """Split ``labels_csv`` by group into ``out_dir/{train,val,test}.csv`` (the input's columns,
    image and mask made absolute) and ``out_dir/split.json`` (seed, fractions, groups and counts);
    returns what split.json holds."""
    from isl_rt.outputs import write_atomic, write_json_atomic

    rows = read_slice_labels(labels_csv, label_column=label_column, group_column=group_column)
    parts = split_groups([r.group for r in rows], seed, fractions)
    part_of = {g: part for part, members in parts.items() for g in members}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0].row)
    summary: dict[str, object] = {
        "labels": str(Path(labels_csv).resolve()),
        "seed": seed,
        "fractions": list(fractions),
        "label_column": label_column,
        "group_column": group_column,
        "parts": {},
    }
    for part in PARTS:
        chosen = [r for r in rows if part_of[r.group] == part]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in chosen:
            writer.writerow({**r.row, "image": str(r.image), **({"mask": "" if r.mask is None else str(r.mask)} if "mask" in columns else {})})
        write_atomic(out_dir / f"{part}.csv", text.getvalue().encode("utf-8"))
        summary["parts"][part] = {  # type: ignore[index]
            "groups": parts[part],
            "slices": len(chosen),
            "label_1": sum(r.label for r in chosen),
            "label_0": sum(1 - r.label for r in chosen),
        }
    write_json_atomic(out_dir / "split.json", summary)
    return summary


def healthy_images(path: Path, *, label_column: str = "label") -> set[Path]:
    """The resolved image paths labelled 0 in a per-slice labels CSV."""
    return {r.image for r in read_slice_labels(path, label_column=label_column) if r.label == 0}


def is_slice_labels(path: Path) -> bool:
    """Whether a labels CSV names images (per-slice) rather than series (SeriesInstanceUID)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "image" in header and "SeriesInstanceUID" not in header
