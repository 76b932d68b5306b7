"""The phantom head-CT cohort: determinism, tissue values, disorders, DICOM and the CLI."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scipy import ndimage
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.io.phantom import (
    DISORDERS,
    LABEL_COLUMNS,
    SIZE_CLASSES,
    URGENCIES,
    PhantomStudy,
    generate_study,
    plan_cohort,
    write_cohort,
    write_study,
)

runner = CliRunner()
SEED = 5


@pytest.fixture(scope="module")
def healthy() -> PhantomStudy:
    return generate_study(SEED)


def _mid(study: PhantomStudy) -> int:
    """A slice through the lateral ventricles (~60 % of the way up)."""
    return int(0.6 * study.n_slices)


def _intracranial(hu_slice: np.ndarray) -> np.ndarray:
    """Inside the skull ring (bone > 700 HU filled in, minus the bone)."""
    bone = hu_slice > 700
    return ndimage.binary_fill_holes(bone) & ~ndimage.binary_dilation(bone, iterations=2)


def _head(hu: np.ndarray) -> np.ndarray:
    """Per-slice filled head silhouette (anything denser than -300 HU, holes filled)."""
    out = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[0]):
        body = ndimage.binary_opening(hu[k] > -300, iterations=1)
        out[k] = ndimage.binary_fill_holes(body)
    return out


def _read_series(folder: Path) -> tuple[np.ndarray, list[pydicom.Dataset], list[str]]:
    """HU stack sorted by ImagePositionPatient z, the datasets in that order, and file names."""
    files = sorted(folder.iterdir())
    sets = [pydicom.dcmread(f) for f in files]
    order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in sets])
    sets = [sets[i] for i in order]
    hu = np.stack(
        [ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in sets]
    )
    return hu, sets, [files[i].name for i in order]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_study_and_other_seeds_differ(healthy: PhantomStudy) -> None:
    again = generate_study(SEED)
    assert np.array_equal(again.hu, healthy.hu)
    assert again.anatomy == healthy.anatomy
    other = generate_study(SEED + 1)
    assert other.anatomy != healthy.anatomy
    n = min(other.n_slices, healthy.n_slices)
    assert not np.array_equal(other.hu[:n], healthy.hu[:n])


def test_disorder_keeps_the_same_head_and_noise_outside_the_lesion(healthy: PhantomStudy) -> None:
    """A seed with a local lesion (no mass effect) is its healthy twin plus the lesion."""
    sick = generate_study(SEED, "lacunes", "small")
    assert sick.hu.shape == healthy.hu.shape
    changed = sick.hu != healthy.hu
    near = ndimage.binary_dilation(sick.lesion_mask.astype(bool), iterations=8)
    assert changed.any()
    assert not (changed & ~near).any()


# --------------------------------------------------------------------------- healthy anatomy


def test_healthy_study_shape_and_metadata(healthy: PhantomStudy) -> None:
    assert healthy.hu.dtype == np.int16 and healthy.hu.shape[1:] == (512, 512)
    assert 28 <= healthy.n_slices <= 36
    assert healthy.lesion_mask.dtype == np.uint8 and healthy.lesion_mask.shape == healthy.hu.shape
    assert not healthy.lesion_mask.any()
    assert (healthy.disorder, healthy.size_class, healthy.urgency, healthy.label) == ("healthy", "", "", 0)
    assert healthy.slice_thickness == 5.0
    assert 0.4 <= healthy.pixel_spacing[0] <= 0.5 and healthy.pixel_spacing[0] == healthy.pixel_spacing[1]
    a = healthy.anatomy
    assert 35 <= a["hu"]["gm"] <= 42 and 22 <= a["hu"]["wm"] <= 30 and a["hu"]["gm"] - a["hu"]["wm"] >= 6
    assert a["kernel"] in ("smooth", "standard", "sharp")


def test_healthy_tissue_values(healthy: PhantomStudy) -> None:
    hu = healthy.hu
    k = _mid(healthy)
    inside = _intracranial(hu[k])
    brain = inside & (hu[k] > -20) & (hu[k] < 100)
    assert brain.sum() > 20_000
    assert 20 <= hu[k][brain].mean() <= 45
    # Skull: cortical bone well above 700 HU present on every brain slice.
    assert (hu[k] > 1000).sum() > 2000
    # Air inside the reconstruction circle, beside the head: about -1000 with noise.
    air = hu[k, 240:272, 4:24].astype(float)
    assert abs(np.median(air) + 1000) < 15
    # Outside the reconstruction circle: the padding value.
    assert hu[k, 0, 0] == healthy.anatomy["pad_hu"] and hu[k, 0, 0] in (-1024, -2000)
    # Measured noise matches the drawn noise level (air is uniform; the base adds up to 40 %).
    sd = float(hu[k, 200:312, 2:14].astype(float).std())
    assert 0.6 * healthy.anatomy["noise_sd"] < sd < 1.7 * healthy.anatomy["noise_sd"]


def test_skull_base_and_vertex_look_like_them(healthy: PhantomStudy) -> None:
    hu = healthy.hu
    low = hu[: healthy.n_slices // 4]
    assert (low > 1500).any(), "dense petrous bone at the skull base"
    head = _head(low)
    assert ((low < -500) & head).sum() > 500, "air in sinuses / mastoids inside the head at the base"
    area = _head(hu[[_mid(healthy), healthy.n_slices - 2]]).sum(axis=(1, 2))
    assert area[1] < 0.8 * area[0], "the head narrows towards the vertex"
    # Normal calcifications or none, but never a lesion mask in a healthy head.
    assert healthy.lesion_mask.sum() == 0


# --------------------------------------------------------------------------- disorders


def test_registry_is_complete_and_consistent() -> None:
    required = {
        "intraparenchymal_haemorrhage",
        "subdural_haematoma",
        "epidural_haematoma",
        "subarachnoid_haemorrhage",
        "intraventricular_haemorrhage",
        "acute_infarct",
        "chronic_infarct",
        "lacunes",
        "tumour",
        "calcification",
        "hydrocephalus",
        "atrophy",
        "skull_fracture",
        "pneumocephalus",
        "arachnoid_cyst",
    }
    assert required <= set(DISORDERS)
    for name, spec in DISORDERS.items():
        assert spec.name == name
        assert spec.urgency in URGENCIES
        assert spec.sizes and set(spec.sizes) <= set(SIZE_CLASSES)
        assert all(spec.urgency_for(s) in URGENCIES for s in spec.sizes)
        assert "HU" in spec.description
        assert spec.hu_range[0] < spec.hu_range[1]
    assert DISORDERS["epidural_haematoma"].urgency_for("small") == "high"
    assert DISORDERS["atrophy"].urgency_for("large") == "low"
    assert DISORDERS["hydrocephalus"].sizes == ("large",)


@pytest.mark.parametrize("name", sorted(DISORDERS))
def test_every_disorder_generates_a_located_lesion_in_its_hu_range(name: str) -> None:
    spec = DISORDERS[name]
    size = spec.sizes[0]
    study = generate_study(11, name, size)
    mask = study.lesion_mask.astype(bool)
    assert study.lesion_mask.dtype == np.uint8 and set(np.unique(study.lesion_mask)) <= {0, 1}
    assert (study.disorder, study.size_class, study.urgency, study.label) == (name, size, spec.urgency_for(size), 1)
    assert mask.any()
    # A 3D lesion: on more than one 5 mm slice.
    assert (mask.reshape(study.n_slices, -1).any(axis=1)).sum() >= 2
    # Inside the head silhouette.
    head = ndimage.binary_dilation(_head(study.hu), iterations=2)
    assert (mask & ~head).sum() <= 0.01 * mask.sum()
    # Even the smallest size spans >= 8 mm on some slice (>= 4 pixels at 128 x 128).
    extent = 0.0
    for k in np.flatnonzero(mask.reshape(study.n_slices, -1).any(axis=1)):
        rows, cols = np.nonzero(mask[k])
        extent = max(extent, float(max(np.ptp(rows), np.ptp(cols)) + 1) * study.pixel_spacing[0])
    assert extent >= 8.0
    median = float(np.median(study.hu[mask]))
    assert spec.hu_range[0] <= median <= spec.hu_range[1], f"{name}: median {median:.0f} HU outside {spec.hu_range}"


def test_large_masses_shift_the_midline() -> None:
    """Mass effect: the septum/ventricles move, so the image changes far from the lesion too."""
    twin = generate_study(12)
    for name in ("subdural_haematoma", "tumour"):
        sick = generate_study(12, name, "large")
        assert sick.lesion["midline_shift_mm"] >= 3
        far = ~ndimage.binary_dilation(sick.lesion_mask.astype(bool), iterations=20)
        assert ((sick.hu != twin.hu) & far).sum() > 500, name
    small = generate_study(12, "lacunes", "small")
    far = ~ndimage.binary_dilation(small.lesion_mask.astype(bool), iterations=20)
    assert not ((small.hu != twin.hu) & far).any(), "no mass effect from a lacune"


def test_haemorrhage_is_denser_than_brain_and_infarct_darker() -> None:
    iph = generate_study(13, "intraparenchymal_haemorrhage", "medium")
    infarct = generate_study(13, "acute_infarct", "large")
    gm, wm = iph.anatomy["hu"]["gm"], iph.anatomy["hu"]["wm"]
    assert np.percentile(iph.hu[iph.lesion_mask.astype(bool)], 75) > gm + 10
    assert np.median(infarct.hu[infarct.lesion_mask.astype(bool)]) < wm


def test_bad_arguments_raise_input_errors() -> None:
    with pytest.raises(InputError, match="Unknown phantom disorder"):
        generate_study(1, "migraine")
    with pytest.raises(InputError, match="comes in sizes"):
        generate_study(1, "hydrocephalus", "small")
    with pytest.raises(InputError, match="size class"):
        generate_study(1, None, "small")
    with pytest.raises(InputError, match="non-negative"):
        generate_study(-1)


# --------------------------------------------------------------------------- DICOM


def _tiny(seed: int) -> PhantomStudy:
    """A 3-slice study for writer tests (the writer does not care about anatomy)."""
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1024, 2500, size=(3, 512, 512)).astype(np.int16)
    pad = int(rng.choice([-1024, -2000]))
    hu[:, :4, :4] = pad
    return PhantomStudy(
        seed=seed,
        hu=hu,
        lesion_mask=np.zeros(hu.shape, np.uint8),
        pixel_spacing=(0.45, 0.45),
        slice_thickness=5.0,
        disorder="healthy",
        size_class="",
        urgency="",
        anatomy={"kernel": "standard", "pad_hu": pad, "age": 40.0},
    )


def test_written_series_reads_back_exactly(tmp_path: Path, healthy: PhantomStudy) -> None:
    record = write_study(healthy, tmp_path / "s")
    assert record.n_slices == healthy.n_slices == len(list((tmp_path / "s").iterdir()))
    hu, sets, names = _read_series(tmp_path / "s")
    assert np.array_equal(hu, healthy.hu.astype(np.float64))
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in sets])
    assert np.allclose(np.diff(z), 5.0)
    first = sets[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage and first.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert first.Modality == "CT" and list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (first.Rows, first.Columns, first.BitsAllocated) == (512, 512, 16)
    assert [float(x) for x in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(first.PixelSpacing[0]) == pytest.approx(healthy.pixel_spacing[0], abs=1e-5)
    assert float(first.SliceThickness) == float(first.SpacingBetweenSlices) == 5.0
    assert str(first.PatientName).startswith("PHANTOM^") and first.Manufacturer and first.ConvolutionKernel
    assert len({ds.SOPInstanceUID for ds in sets}) == healthy.n_slices
    assert {ds.SeriesInstanceUID for ds in sets} == {record.series_uid}
    assert names != sorted(names), "file-name order must not be slice order"


def test_writer_reproduces_uids_and_varies_encoding(tmp_path: Path) -> None:
    a = write_study(_tiny(1), tmp_path / "a")
    b = write_study(_tiny(1), tmp_path / "b")
    assert (a.study_uid, a.series_uid) == (b.study_uid, b.series_uid)
    assert sorted(p.name for p in a.files) == sorted(p.name for p in b.files)
    assert write_study(_tiny(2), tmp_path / "c").series_uid != a.series_uid
    custom = write_study(_tiny(1), tmp_path / "d", study_uid="1.2.3", series_uid="1.2.3.4")
    assert pydicom.dcmread(custom.files[0]).SeriesInstanceUID == "1.2.3.4"
    encodings = set()
    for seed in range(3, 15):
        study = _tiny(seed)
        rec = write_study(study, tmp_path / f"e{seed}")
        hu, sets, _ = _read_series(tmp_path / f"e{seed}")
        assert np.array_equal(hu, study.hu.astype(np.float64))  # stored * slope + intercept == HU exactly
        encodings.add((int(sets[0].PixelRepresentation), float(sets[0].RescaleIntercept)))
        assert rec.pixel_representation == int(sets[0].PixelRepresentation)
    assert len(encodings) >= 2, "readers must meet more than one encoding"
    assert {0.0, -1024.0} <= {e[1] for e in encodings}


# --------------------------------------------------------------------------- cohort


def test_cohort_plan_covers_many_types_and_is_deterministic() -> None:
    plan = plan_cohort(40, 0.5, 7)
    assert plan == plan_cohort(40, 0.5, 7)
    abnormal = [p for p in plan if p.disorder]
    assert len(abnormal) == 20
    assert len({p.disorder for p in abnormal}) >= 15
    assert len({p.seed for p in plan}) == 40
    assert all(p.size_class in DISORDERS[p.disorder].sizes for p in abnormal if p.disorder)
    assert plan_cohort(40, 0.5, 8) != plan
    assert sum(p.disorder is not None for p in plan_cohort(5, 0.5, 1)) == 3  # halves round up
    assert not any(p.disorder for p in plan_cohort(3, 0.0, 1))


def test_write_cohort_labels_masks_and_series(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    summary = write_cohort(out, 3, 0.34, 4)
    assert (summary.series, summary.abnormal) == (3, 1)
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
        assert tuple(rows[0].keys()) == LABEL_COLUMNS
    assert len(rows) == 3 and sum(int(r["label"]) for r in rows) == 1
    sick = next(r for r in rows if r["label"] == "1")
    healthy_rows = [r for r in rows if r["label"] == "0"]
    assert all(r["disorder_type"] == "healthy" and r["lesion_voxels"] == "0" for r in healthy_rows)
    assert sick["disorder_type"] in DISORDERS and sick["urgency"] in URGENCIES
    with np.load(out / "masks" / f"{sick['SeriesInstanceUID']}.npz") as npz:
        mask = npz["mask"]
    assert mask.dtype == np.uint8 and mask.shape == (int(sick["n_slices"]), 512, 512)
    assert int(mask.sum()) == int(sick["lesion_voxels"]) > 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{sick['SeriesInstanceUID']}.npz"]
    # inspect and scan find the three series and nothing to skip: the labels and masks are the cohort's own
    from isl_rt.io.series import discover_series, inspect_tree

    assert [e["status"] for e in inspect_tree(out)] == ["ok"] * 3
    found = discover_series(tmp_path)  # from the folder above too
    assert len(found.series) == 3 and found.set_aside == []
    # The series on disk, sorted by position, is the study the row's seed regenerates, and the
    # mask is in the same slice order.
    study = generate_study(int(sick["seed"]), sick["disorder_type"], sick["size_class"])
    hu, sets, _ = _read_series(out / sick["path"])
    assert np.array_equal(hu, study.hu.astype(np.float64))
    assert np.array_equal(mask, study.lesion_mask)
    assert (
        sets[0].SeriesInstanceUID == sick["SeriesInstanceUID"] and sets[0].StudyInstanceUID == sick["StudyInstanceUID"]
    )
    # A second run replaces the cohort it wrote and leaves other files alone.
    (out / "notes.txt").write_text("mine")
    again = write_cohort(out, 1, 0.0, 9)
    assert (again.series, again.abnormal) == (1, 0)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "series_0002").exists() and not (out / "masks").exists()
    assert not list(out.glob(".tmp-*"))


def test_write_cohort_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=">= 1"):
        write_cohort(tmp_path / "a", 0, 0.5, 1)
    with pytest.raises(InputError, match="between 0 and 1"):
        write_cohort(tmp_path / "a", 2, 1.5, 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("x")
    with pytest.raises(InputError, match="not written by"):
        write_cohort(foreign, 2, 0.5, 1)
    assert (foreign / "data.txt").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_phantom_writes_a_cohort(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    result = runner.invoke(app, ["phantom", str(out), "--scans", "1", "--abnormal-fraction", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "1 series" in result.output and "1 abnormal" in result.output
    assert f"labels in {out / 'labels.csv'}, lesion masks in {out / 'masks'}" in result.output
    assert (out / "labels.csv").is_file()


def test_only_a_phantom_cohort_s_own_labels_and_masks_are_left_out_of_discovery(tmp_path: Path) -> None:
    from isl_rt.io.series import discover_series

    for name, marker in (("cohort", True), ("mine", False)):
        folder = tmp_path / name
        (folder / "masks").mkdir(parents=True)
        (folder / "masks" / "a.npz").write_bytes(b"x")
        (folder / "labels.csv").write_text("SeriesInstanceUID,label\n")
        (folder / "sub").mkdir()
        (folder / "sub" / "labels.csv").write_text("SeriesInstanceUID,label\n")  # not beside the marker: listed
        if marker:
            (folder / ".isl-rt-phantom.json").write_text("{}")
    skipped = sorted(str(s.path.relative_to(tmp_path)) for s in discover_series(tmp_path).set_aside)
    assert skipped == ["cohort/sub/labels.csv", "mine/labels.csv", "mine/masks/a.npz", "mine/sub/labels.csv"]


def test_cli_phantom_reports_bad_arguments_in_one_sentence(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", str(tmp_path / "x"), "--abnormal-fraction", "2"])
    assert result.exit_code == 1
    assert "between 0 and 1" in result.output
    assert "Traceback" not in result.output


def test_study_dataclass_is_a_plain_value(healthy: PhantomStudy) -> None:
    """PhantomStudy can be copied with a field changed (used by tests and tools)."""
    relabeled = replace(healthy, disorder="healthy")
    assert relabeled.hu is healthy.hu
