"""Phantom -> DICOM -> reader: the HU and the slice order survive, whatever the file names say."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.io import dicom
from isl_rt.io.phantom import generate_study, write_cohort, write_study


@pytest.mark.parametrize("disorder, size", [(None, None), ("subdural_haematoma", "large")])
def test_reader_gets_back_the_written_hu_in_slice_order(tmp_path, disorder, size):
    study = generate_study(4242, disorder, size)
    record = write_study(study, tmp_path / "series")
    # shuffle the file names: name order must say nothing about slice order
    rng = np.random.default_rng(0)
    files = list(record.files)
    temporary = [f.rename(f.with_name(f"tmp{i}")) for i, f in enumerate(files)]
    for new, old in zip(rng.permutation(len(temporary)), temporary):
        old.rename(old.with_name(f"IM{new:03d}"))
    found = dicom.discover(tmp_path)
    assert [s.series_uid for s in found.series] == [record.series_uid] and not found.skipped
    volume = dicom.load_volume(found.series[0])
    assert volume.hu.shape == study.hu.shape
    # the reader maps vendor padding below -1024 HU (e.g. -2000) to -1024 (air); compare the rest
    expected = np.maximum(study.hu.astype(np.int32), -1024)
    assert np.abs(volume.hu.astype(np.int32) - expected).max() <= 1
    assert volume.spacing[0] == pytest.approx(5.0)
    assert volume.spacing[1:] == pytest.approx(study.pixel_spacing)


def test_inspect_reports_the_cohort_and_the_junk(tmp_path):
    root = tmp_path / "cohort"
    write_cohort(root, 3, 0.34, 11)
    (root / "notes.txt").write_text("junk")
    first = sorted((root / "series_0001").iterdir())[0]
    (root / "cut.dcm").write_bytes(first.read_bytes()[:2000])
    result = CliRunner().invoke(app, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    ok = [e for e in entries if e["status"] == "ok"]
    assert len(ok) == 3 and all(e["n_slices"] >= 28 and e["matrix"] == [512, 512] for e in ok)
    reasons = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in entries if e["status"] != "ok"}
    assert "not a DICOM file" in reasons["notes.txt"] and "truncated" in reasons["cut.dcm"]
