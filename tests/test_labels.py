"""Per-slice labels, the patient split and training on the lesion-free slices of image folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.labels import is_slice_labels, read_slice_labels, split_groups, write_split


def _dataset(root: Path, patients: int = 6, slices: int = 4) -> Path:
    """images/PPPP/SS.png (16×16 gray) and labels.csv: slice 2 of every patient is labelled 1."""
    rows = []
    for p in range(patients):
        folder = root / "images" / f"{p:04d}"
        folder.mkdir(parents=True)
        for s in range(slices):
            value = 40 * s + p
            Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(folder / f"{s:02d}.png")
            lesion = int(s == 2)
            mask = ""
            if lesion:
                (root / "masks" / f"{p:04d}").mkdir(parents=True, exist_ok=True)
                mask = f"masks/{p:04d}/{s:02d}.png"
                Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(root / mask)
            rows.append({"patient": f"{p:04d}", "slice": s, "image": f"images/{p:04d}/{s:02d}.png", "mask": mask, "lesion": lesion})
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "labels.csv"


def test_read_slice_labels_resolves_paths_and_groups(tmp_path: Path) -> None:
    labels = read_slice_labels(_dataset(tmp_path), label_column="lesion")
    assert len(labels) == 24
    first = labels[0]
    assert first.image == (tmp_path / "images/0000/00.png").resolve()
    assert first.group == "0000" and first.label == 0 and first.mask is None
    lesion = [r for r in labels if r.label == 1]
    assert len(lesion) == 6 and all(r.mask is not None and r.mask.is_file() for r in lesion)
    assert is_slice_labels(tmp_path / "labels.csv")


@pytest.mark.parametrize(
    "body, needle",
    [
        ("image,lesion\na.png,2\n", "line 2: lesion '2' is not 0"),
        ("image,lesion\n,1\n", "line 2: the image column is empty"),
        ("image,lesion\na.png,1\n./a.png,0\n", "line 3: ./a.png is labelled again (first on line 2)"),
        ("picture,lesion\na.png,1\n", "lacks the column(s) image"),
        ("image,lesion\n", "holds no labelled slices"),
    ],
)
def test_read_slice_labels_refuses_bad_files(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=None) as err:
        read_slice_labels(path, label_column="lesion")
    assert needle in str(err.value)


def test_split_groups_is_seeded_disjoint_and_complete() -> None:
    groups = [f"p{i:02d}" for i in range(10)] * 3
    a = split_groups(groups, seed=4)
    assert a == split_groups(list(reversed(groups)), seed=4)  # order of the rows does not matter
    assert a != split_groups(groups, seed=5)
    members = a["train"] + a["val"] + a["test"]
    assert sorted(members) == sorted(set(groups)) and len(members) == 10
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (6, 2, 2)
    with pytest.raises(InputError):
        split_groups(["a", "b"], seed=0)
    with pytest.raises(InputError):
        split_groups(groups, seed=0, fractions=(0.5, 0.5, 0.5))


def test_write_split_keeps_patients_together(tmp_path: Path) -> None:
    labels_csv = _dataset(tmp_path / "data")
    summary = write_split(labels_csv, tmp_path / "split", seed=1, label_column="lesion")
    seen: dict[str, str] = {}
    for part in ("train", "val", "test"):
        for row in csv.DictReader((tmp_path / "split" / f"{part}.csv").read_text().splitlines()):
            assert Path(row["image"]).is_absolute() and Path(row["image"]).is_file()
            assert seen.setdefault(row["patient"], part) == part  # one patient, one part
            if row["lesion"] == "1":
                assert Path(row["mask"]).is_file()
    assert len(seen) == 6
    assert json.loads((tmp_path / "split" / "split.json").read_text())["parts"] == summary["parts"]
    # the part files are per-slice labels themselves
    assert len(read_slice_labels(tmp_path / "split" / "train.csv", label_column="lesion")) == 4 * len(summary["parts"]["train"]["groups"])


def test_split_command(tmp_path: Path) -> None:
    labels_csv = _dataset(tmp_path / "data")
    result = CliRunner().invoke(app, ["split", str(labels_csv), "--out", str(tmp_path / "s"), "--label-column", "lesion", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "train: 4 patients, 16 slices (4 labelled 1)" in result.output
    bad = CliRunner().invoke(app, ["split", str(labels_csv), "--out", str(tmp_path / "s2")])
    assert bad.exit_code == 1 and "lacks the column(s) label" in bad.output


def test_training_data_keeps_only_lesion_free_slices_of_listed_patients(tmp_path: Path) -> None:
    from isl_rt.training.data import PrepParams, prepare

    labels_csv = _dataset(tmp_path / "data")
    write_split(labels_csv, tmp_path / "split", seed=1, label_column="lesion")
    train = tmp_path / "split" / "train.csv"
    patients = sorted({r.group for r in read_slice_labels(train, label_column="lesion")})
    slices = prepare(tmp_path / "data" / "images", PrepParams(size=16), labels=train, label_column="lesion")
    assert slices.series == patients
    assert len(slices) == 3 * len(patients)  # slices 0, 1, 3 of each training patient
    # the pixel values say which slices were kept: 40*s + p over 255, never slice 2
    kept = sorted({int(round(float(v) * 255)) // 40 for v in np.asarray(slices.x)[:, 0, 8, 8]})
    assert kept == [0, 1, 3]
    assert slices.excluded["images_not_labelled_0"] == 24 - 3 * len(patients)
