"""DICOM discovery (headers only), HU loading and `isl-rt inspect`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_rescale, get_decoder
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.io import dicom
from isl_rt.io.dicom import discover, inspect_tree, load_volume

runner = CliRunner()


def only_series(root: Path) -> dicom.SeriesRef:
    found = discover(root)
    assert len(found.series) == 1, (found.series, found.skipped)
    return found.series[0]


def by_name(found: dicom.Discovery) -> dict[str, dicom.Skipped]:
    return {k.path.name: k for k in found.skipped}


# ------------------------------------------------------------------------------------ HU values


@pytest.mark.parametrize(
    ("signed", "slope", "intercept", "implicit"),
    [
        (True, 1.0, 0.0, False),
        (False, 1.0, -1024.0, False),
        (True, 0.5, -1024.0, True),
        (False, 2.0, -1024.0, False),
    ],
)
def test_hu_within_one_of_written_values(tmp_path, dicom_factory, signed, slope, intercept, implicit):
    written = dicom_factory.series(
        tmp_path / "s", n=4, signed=signed, slope=slope, intercept=intercept, implicit=implicit
    )
    volume = load_volume(only_series(tmp_path))
    assert volume.hu.dtype == np.int16 and volume.hu.flags.c_contiguous
    assert volume.hu.shape == (4, 64, 64)
    assert np.abs(volume.hu.astype(np.int32) - written.hu).max() <= 1
    assert np.abs(volume.hu[:, 32, 32] - 35).max() <= 1  # brain (slope 2 stores 35 HU as 36)
    assert volume.hu[:, 61, 61].tolist() == [-1024] * 4  # -3024 HU written: floored at -1024
    assert volume.spacing == (2.5, 0.5, 0.5)
    assert volume.series_uid == written.series_uid and volume.study_uid == written.study_uid


def test_rescale_is_applied_per_file(tmp_path, dicom_factory):
    uid = generate_uid()
    hu = np.full((64, 64), 40, dtype=np.int32)
    dicom_factory.ct_slice(tmp_path / "a", hu, z=0.0, series_uid=uid, slope=1.0, intercept=-1024.0, signed=False)
    dicom_factory.ct_slice(tmp_path / "b", hu, z=5.0, series_uid=uid, slope=0.5, intercept=-2048.0, signed=True)
    volume = load_volume(only_series(tmp_path))
    assert volume.hu[:, 10, 10].tolist() == [40, 40]


def test_pixel_padding_value_becomes_air(tmp_path, dicom_factory):
    # Unsigned storage with padding 63536 (-2000 read as signed): unmasked it would be 62512 HU.
    dicom_factory.series(tmp_path, n=2, signed=False, intercept=-1024.0, padding=63536)
    volume = load_volume(only_series(tmp_path))
    assert volume.hu[:, 61, 61].tolist() == [-1024, -1024]
    assert volume.hu.max() == 1100


def test_pydicom_ct_example_reads_as_hu(tmp_path):
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    shutil.copy(source, tmp_path / "ct.dcm")
    ref = only_series(tmp_path)
    volume = load_volume(ref)
    ds = pydicom.dcmread(source)
    stored = ds.pixel_array
    manual = stored.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.clip(np.rint(apply_rescale(stored, ds)), -1024, 32767)
    assert np.array_equal(np.clip(np.rint(manual), -1024, 32767), expected)
    assert np.array_equal(volume.hu[0], expected.astype(np.int16))
    assert volume.spacing[1:] == tuple(float(v) for v in ds.PixelSpacing)
    assert "single-slice" in " ".join(volume.warnings)
    assert volume.metadata["Modality"] == "CT" and volume.metadata["KVP"] == float(ds.KVP)
    assert "PatientName" not in volume.metadata and "PatientID" not in volume.metadata


# ------------------------------------------------------------------------------------ order


def test_slices_ordered_by_position_not_names_or_instance_numbers(tmp_path, dicom_factory):
    z = [12.5, -7.5, 30.0, 0.0, 5.0, -2.5, 20.0, 7.5]  # unsorted, with gaps, negative
    written = dicom_factory.series(tmp_path, z=z)
    ref = only_series(tmp_path)

    def instance(p: Path) -> int:
        return int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)

    by_z = [p for _, p in sorted(zip(written.z, written.files))]
    assert by_z != sorted(written.files)  # the names do not give the order...
    assert [instance(p) for p in by_z] != sorted(instance(p) for p in by_z)  # ...nor do the numbers
    assert list(ref.files) == by_z
    assert ref.positions[:, 2].tolist() == sorted(z)
    volume = load_volume(ref)
    assert volume.hu[:, 3, 3].tolist() == [100 + 20 * i for i in range(len(z))]


def test_tilted_gantry_is_axial_with_a_warning_and_oblique_is_not(tmp_path, dicom_factory):
    t = np.radians(15.0)
    tilted = (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t)))
    written = dicom_factory.series(tmp_path / "tilt", n=5, orientation=tilted)
    t = np.radians(45.0)
    dicom_factory.series(tmp_path / "oblique", n=3, orientation=(1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t))))
    found = discover(tmp_path)
    assert [s.series_uid for s in found.series] == [written.series_uid]
    assert any("tilted 15.0°" in w and "scored as acquired" in w for w in found.series[0].warnings)
    assert np.isclose(found.series[0].slice_spacing, 2.5)
    assert load_volume(found.series[0]).hu[:, 3, 3].tolist() == [100 + 20 * i for i in range(5)]
    [oblique] = found.skipped
    assert oblique.status == "skipped" and "not axial" in oblique.reason and oblique.n_files == 3


# ------------------------------------------------------------------------------------ warnings


def test_duplicated_positions_keep_one_and_say_so(tmp_path, dicom_factory):
    dicom_factory.series(tmp_path / "s", z=[0.0, 2.5, 2.5, 5.0, 7.5])
    copy = tmp_path / "s" / "copies" / "again.dcm"
    copy.parent.mkdir()
    shutil.copy(sorted((tmp_path / "s").glob("IM*"))[0], copy)  # same SOP instance twice
    ref = only_series(tmp_path)
    assert ref.n_slices == 4
    assert ref.positions[:, 2].tolist() == [0.0, 2.5, 5.0, 7.5]
    text = " ".join(ref.warnings)
    assert "1 slice position holds more than one file" in text
    assert "repeating a SOP instance" in text
    assert ref.path == tmp_path / "s"


def test_gap_and_varying_spacing_warn(tmp_path, dicom_factory):
    dicom_factory.series(tmp_path / "gap", z=[0.0, 2.5, 5.0, 12.5, 15.0, 17.5])
    dicom_factory.series(tmp_path / "vary", z=[0.0, 2.5, 5.0, 8.0, 10.5, 13.0])
    dicom_factory.series(tmp_path / "even", z=[0.0, 2.5, 5.0, 7.5])
    warns = {s.path.name: " ".join(s.warnings) for s in discover(tmp_path).series}
    assert "1 gap wider than 1.5× the median slice spacing of 2.5 mm (largest 7.5 mm" in warns["gap"]
    assert "varies" not in warns["gap"]
    assert "slice spacing varies from 2.5 to 3 mm" in warns["vary"] and "gap" not in warns["vary"]
    assert warns["even"] == ""


def test_single_slice_series_warns(tmp_path, dicom_factory):
    dicom_factory.series(tmp_path, n=1)
    ref = only_series(tmp_path)
    assert ref.slice_spacing == 2.5
    assert ref.warnings == ["single-slice series; slice spacing 2.5 mm (SliceThickness)"]


# ------------------------------------------------------------------------------------ errors


def test_inconsistent_matrix_is_an_error_entry(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=4)
    dicom_factory.ct_slice(tmp_path / "small", np.zeros((32, 32), np.int32), z=50.0, series_uid=written.series_uid)
    found = discover(tmp_path)
    assert found.series == []
    [entry] = found.skipped
    assert entry.status == "error" and entry.series_uid == written.series_uid and entry.n_files == 5
    assert entry.reason == "its slices differ in matrix size: 64×64 (4 files), 32×32 (1 file)"
    [row] = inspect_tree(tmp_path)
    assert row["status"] == "error" and row["reason"] == entry.reason


def test_inconsistent_pixel_spacing_is_an_error_entry(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=3)
    dicom_factory.ct_slice(
        tmp_path / "odd", np.zeros((64, 64), np.int32), z=50.0, series_uid=written.series_uid, pixel_spacing=(0.7, 0.7)
    )
    [entry] = discover(tmp_path).skipped
    assert entry.status == "error" and "differ in pixel spacing" in entry.reason


def test_mixed_folder_gives_the_right_series_and_reasons(mixed_tree):
    root, a, b = mixed_tree["root"], mixed_tree["a"], mixed_tree["b"]
    found = discover(root)
    assert {s.series_uid: s.n_slices for s in found.series} == {a.series_uid: 6, b.series_uid: 5}
    for s in found.series:
        written = a if s.series_uid == a.series_uid else b
        assert np.abs(load_volume(s).hu.astype(np.int32) - written.hu).max() <= 1
    series_a = next(s for s in found.series if s.series_uid == a.series_uid)
    assert any("ZZ_truncated" in w for w in series_a.warnings)

    got = {name: (k.status, k.reason) for name, k in by_name(found).items()}
    assert got["README.txt"] == ("skipped", "not a DICOM file")
    assert got["ZZ_truncated"][0] == "error" and got["ZZ_truncated"][1].startswith("truncated: PixelData declares")
    assert got["scout.dcm"] == ("skipped", "a localizer (scout) image")
    assert got["coronal"][0] == "skipped" and got["coronal"][1].startswith("not axial")
    assert got["csa.dcm"] == ("skipped", "no pixel data (not an image)")
    assert got["nopix.dcm"] == ("error", "a CT image header without PixelData (cut short or damaged)")
    assert got["enhanced.dcm"][0] == "skipped" and "multi-frame" in got["enhanced.dcm"][1]
    assert got["dose.dcm"] == ("skipped", "a structured report (such as a CT dose report), not a CT image")
    assert len(got) == 8
    assert by_name(found)["coronal"].n_files == 3


def test_discovery_reads_headers_only(mixed_tree, monkeypatch):
    calls = []
    real = pydicom.dcmread

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", spy)
    discover(mixed_tree["root"])
    assert calls and all(c.get("stop_before_pixels") is True and c.get("specific_tags") for c in calls)


def test_header_without_preamble_is_read(tmp_path, dicom_factory):
    dicom_factory.ct_slice(tmp_path / "src", np.full((64, 64), 40, np.int32), z=0.0, series_uid="1.2.3.4")
    ds = pydicom.dcmread(tmp_path / "src")
    (tmp_path / "src").unlink()
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "raw", implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (tmp_path / "raw").read_bytes()[:2] == b"\x08\x00"
    assert load_volume(only_series(tmp_path)).hu[0, 10, 10] == 40


def test_missing_or_file_root_raises_a_sentence(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        inspect_tree(tmp_path / "f")


# ------------------------------------------------------------------------------------ compressed


def test_rle_series_decodes(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=3, compress=RLELossless)
    ref = only_series(tmp_path)
    assert pydicom.dcmread(ref.files[0]).file_meta.TransferSyntaxUID == RLELossless
    assert np.abs(load_volume(ref).hu.astype(np.int32) - written.hu).max() <= 1


def test_jpeg2000_series_decodes(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=2, signed=False, compress=JPEG2000Lossless)
    assert np.abs(load_volume(only_series(tmp_path)).hu.astype(np.int32) - written.hu).max() <= 1


def test_truncated_compressed_file_is_caught_at_discovery(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=3, compress=RLELossless)
    victim = written.files[0]
    dicom_factory.truncate(victim, victim.stat().st_size - 300)
    found = discover(tmp_path)
    assert found.series[0].n_slices == 2
    entry = by_name(found)[victim.name]
    assert entry.status == "error" and "compressed PixelData" in entry.reason


def test_missing_plugin_names_file_syntax_and_package(tmp_path, dicom_factory, monkeypatch):
    dicom_factory.series(tmp_path, n=2, signed=False, compress=JPEG2000Lossless)
    ref = only_series(tmp_path)
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})  # as if not installed
    with pytest.raises(InputError) as err:
        load_volume(ref)
    message = str(err.value)
    assert str(ref.files[0]) in message
    assert "JPEG 2000 Image Compression (Lossless Only)" in message
    assert "pip install 'isl-rt[dicom]'" in message and "pylibjpeg-openjpeg" in message


def test_damaged_compressed_data_names_the_file(tmp_path, dicom_factory):
    dicom_factory.series(tmp_path, n=2, compress=RLELossless)
    ref = only_series(tmp_path)
    victim = ref.files[1]
    ds = pydicom.dcmread(victim)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([b"garbage!" * (len(frame) // 8)])
    ds.save_as(victim, enforce_file_format=True)
    with pytest.raises(InputError, match=f"Cannot decode the pixel data of {victim}"):
        load_volume(ref)


# ------------------------------------------------------------------------------------ CLI


def test_inspect_json_on_the_mixed_folder(mixed_tree):
    root = mixed_tree["root"]
    result = runner.invoke(app, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    statuses = sorted(e["status"] for e in entries)
    assert statuses == ["error"] * 2 + ["ok"] * 2 + ["skipped"] * 6
    ok = {e["SeriesInstanceUID"]: e for e in entries if e["status"] == "ok"}
    entry_b = ok[mixed_tree["b"].series_uid]
    assert entry_b["n_slices"] == 5 and entry_b["matrix"] == [64, 64]
    assert entry_b["pixel_spacing"] == [0.5, 0.5] and entry_b["slice_spacing"] == 2.5
    assert entry_b["path"] == str(root / "study" / "b") and entry_b["warnings"] == []
    assert all(e["reason"] for e in entries if e["status"] != "ok")


def test_inspect_table_ends_with_a_verdict(mixed_tree):
    result = runner.invoke(app, ["inspect", str(mixed_tree["root"])])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "2 series ok, 6 skipped, 2 errors"
    assert "localizer" in result.output


def test_inspect_missing_dir_exits_1_with_a_sentence(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nope'} does not exist: pass the folder that holds" in result.output


# ------------------------------------------------------------------------------------ hostile input


@pytest.mark.parametrize("slope", [0.0, float("nan"), float("inf")])
def test_an_unusable_rescale_slope_is_an_error_never_one(tmp_path, dicom_factory, slope):
    """A slope of 0 was once silently read as 1 (and NaN slopes became garbage HU)."""
    dicom_factory.series(tmp_path, n=2, mutate=lambda ds: setattr(ds, "RescaleSlope", slope))
    ref = only_series(tmp_path)
    assert not np.isfinite(ref.rescale[:, 0]).all() or (ref.rescale[:, 0] == 0).all()
    with pytest.raises(InputError, match="finite, non-zero slope"):
        load_volume(ref)


def test_load_volume_decodes_a_range_of_slices(tmp_path, dicom_factory):
    written = dicom_factory.series(tmp_path, n=6)
    ref = only_series(tmp_path)
    part = load_volume(ref, 2, 5)
    assert part.hu.shape == (3, 64, 64) and np.array_equal(part.hu, written.hu[2:5])
    assert np.array_equal(part.positions, ref.positions[2:5])
    with pytest.raises(InputError):
        load_volume(ref, 6, 8)


def test_symlinked_folders_are_followed_once_and_loops_refused(tmp_path, dicom_factory):
    outside = tmp_path / "elsewhere" / "series"
    written = dicom_factory.series(outside, n=3)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)  # once skipped without a word
    (root / "again").symlink_to(outside, target_is_directory=True)  # a second path to the same folder
    (outside / "up").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a loop
    (root / "self").symlink_to(root / "self")  # a link to itself
    (root / "dangling").symlink_to(tmp_path / "nothing-here")
    found = discover(root)
    assert [s.series_uid for s in found.series] == [written.series_uid]
    assert found.series[0].n_slices == 3
    reasons = {k.path.relative_to(root).as_posix(): (k.status, k.reason) for k in found.skipped}
    assert reasons["link"][1].startswith("a symbolic link to a folder already scanned")  # "again" came first
    assert "already scanned" in reasons["again/up/series"][1]
    assert reasons["self"] == ("skipped", "a symbolic link loop, not followed")
    assert reasons["dangling"] == ("skipped", "a broken symbolic link (its target does not exist)")


def test_special_and_oversized_files_are_never_opened(tmp_path, dicom_factory, monkeypatch):
    import os

    dicom_factory.series(tmp_path / "s", n=2)
    os.mkfifo(tmp_path / "pipe")  # opening it would block discovery forever
    with open(tmp_path / "huge.dcm", "wb") as handle:  # sparse: costs no disk
        handle.truncate(dicom.MAX_FILE_BYTES + 1)
    opened: list[str] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self.name) or real_open(self, *a, **k))
    found = discover(tmp_path)
    entries = by_name(found)
    assert entries["pipe"].status == "skipped" and "not a regular file" in entries["pipe"].reason
    assert entries["huge.dcm"].status == "skipped" and "larger than any single CT slice" in entries["huge.dcm"].reason
    assert "pipe" not in opened and "huge.dcm" not in opened


def test_a_forged_codestream_size_is_refused_before_decoding(tmp_path, dicom_factory):
    """A JPEG 2000 frame declaring 40000×40000 inside a 64×64 header: openjpeg would allocate
    gigabytes for it before pydicom could compare the shapes."""
    dicom_factory.series(tmp_path, n=2, signed=False, compress=JPEG2000Lossless)
    ref = only_series(tmp_path)
    victim = ref.files[0]
    data = bytearray(victim.read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51")
    assert siz > 0 and dicom.codestream_size(bytes(data[siz:])) == (64, 64)
    data[siz + 8 : siz + 16] = (40000).to_bytes(4, "big") * 2  # Xsiz, Ysiz
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match="compressed image of 40000×40000 pixels but its header says 64×64"):
        load_volume(ref)


def test_codestream_size_reads_jpeg_frame_headers():
    sof = b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + b"\xff\xc3\x00\x0b\x10\x01\x00\x02\x00\x01" + b"\x00" * 6
    assert dicom.codestream_size(sof) == (256, 512)
    assert dicom.codestream_size(b"\xff\xd8\xff\xda\x00\x02") is None
    assert dicom.codestream_size(b"not a codestream") is None
    assert dicom.codestream_size(b"\xff\xd8\xff") is None
