"""Real scanner DICOM (dcm_qa_ct of dcm2niix, ``../shared/data/dcm-qa-ct`` from the repository root;
``ISL_RT_DCM_QA_CT`` points elsewhere): ``isl-rt inspect`` and ``isl-rt scan`` with the real bundle.
The GE head (28 slices, gantry tilt 18.5°, uneven spacing) is scored with its tilt and spacing said;
the Philips skull phantom (bone, air and plastic, no brain) is refused; the localizer, secondary
capture and DICOMDIR files are skipped with their reasons. The data are read only; every output
goes to tmp_path."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isl_rt.bundle import default_bundle_path
from isl_rt.cli import app

DATA = Path(os.environ.get("ISL_RT_DCM_QA_CT", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcm-qa-ct"))

pytestmark = pytest.mark.skipif(not (DATA / "GE").is_dir(),
                                reason=f"dcm-qa-ct is not at {DATA} (set ISL_RT_DCM_QA_CT to its folder)")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _scan(root: Path, out: Path) -> tuple[object, list[dict[str, str]]]:
    result = CliRunner().invoke(app, ["scan", str(root), "--bundle", str(default_bundle_path("head-ct-real-tiny")),
                                      "--threads", "2", "--out", str(out), "--no-resume"])
    return result, _rows(out) if out.exists() else []


def _rel(path: str) -> str:
    return os.path.relpath(path, DATA)


def test_inspect_lists_each_series_and_what_it_skips():
    result = CliRunner().invoke(app, ["inspect", str(DATA), "--json"])
    assert result.exit_code == 0, result.output
    entries = {_rel(e["path"]): e for e in json.loads(result.output)}
    ok = {k: e for k, e in entries.items() if e["status"] == "ok"}
    assert {k: e["n_slices"] for k, e in ok.items()} == {"GE": 28, "Philips/S2010": 54, "Philips/S3010": 58}
    ge = " ".join(ok["GE"]["warnings"])
    assert "tilted 18.5°" in ge and "scored as acquired" in ge
    assert "gaps wider than 1.5× the median slice spacing" in ge and "slice spacing varies" in ge
    assert "tilted 16.5°" in " ".join(ok["Philips/S3010"]["warnings"])
    assert "localizer" in entries["Philips/S1000/I10"]["reason"]
    assert "secondary capture" in entries["Philips/S4010"]["reason"] and entries["Philips/S4010"]["n_files"] == 5
    dirfiles = [e for k, e in entries.items() if k.endswith("DIRFILE")]
    assert len(dirfiles) == 5 and all(e["status"] == "skipped" and "DICOMDIR" in e["reason"] for e in dirfiles)


def test_scan_scores_the_ge_head_and_refuses_the_skull_phantom(tmp_path):
    out = tmp_path / "scores.csv"
    result, rows = _scan(DATA, out)
    assert result.exit_code == 0, result.output
    by_path = {_rel(r["path"]): r for r in rows}
    ge = by_path["GE"]
    assert ge["status"] == "ok" and ge["n_slices"] == "28" and ge["scan_score"] != "", ge
    [doc] = [p for p in (tmp_path / "scores.series").iterdir() if not p.name.startswith("_")]
    detail = json.loads(doc.read_text())
    assert detail["path"] == ge["path"] and len(detail["slice_scores"]) == 28
    warnings = " ".join(detail["warnings"])
    assert "tilted 18.5° from axial (gantry tilt)" in warnings and "scored as acquired" in warnings
    assert "13 gaps wider than 1.5× the median slice spacing" in warnings and "slice spacing varies" in warnings
    for phantom in ("Philips/S2010", "Philips/S3010"):
        row = by_path[phantom]
        assert row["status"] == "rejected" and row["scan_score"] == "", row
        assert "air-filled" in row["error"] and "skull phantom" in row["error"] and "brain is 20-45 HU" in row["error"]
        assert "a head shows on 0 of its" in row["error"]
    skipped = {k: r["error"] for k, r in by_path.items() if r["status"] == "skipped"}
    assert "localizer" in skipped["Philips/S1000/I10"] and "secondary capture" in skipped["Philips/S4010"]
    assert sum("DICOMDIR" in e for e in skipped.values()) == 5
    assert {r["status"] for r in rows} == {"ok", "rejected", "skipped"}  # no error rows
    assert not list(DATA.rglob("*.csv"))  # nothing written into the data


def test_one_slice_of_each_is_judged_alone(tmp_path):
    """Key images from real DICOM: one GE slice from the middle of the head is scored, one slice
    from the middle of the skull phantom is refused."""
    from isl_rt.io import dicom

    root = tmp_path / "key"
    for name in ("GE", "Philips/S2010"):
        ref = dicom.discover(DATA / name).series[0]
        target = root / name.replace("/", "-") / "slice.dcm"
        target.parent.mkdir(parents=True)
        shutil.copyfile(ref.files[len(ref.files) // 2], target)
    result, rows = _scan(root, tmp_path / "key.csv")
    assert result.exit_code == 0, result.output
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["GE"]["status"] == "ok" and by_name["GE"]["n_slices"] == "1", by_name["GE"]
    assert by_name["Philips-S2010"]["status"] == "rejected", by_name["Philips-S2010"]
    assert "a head shows on 0 of its 1 slices, at least 1 needed" in by_name["Philips-S2010"]["error"]


def test_tilt_benchmark_quick(load_benchmark, capsys):
    tilt = load_benchmark("tilt_real")
    assert tilt.main(["--data", str(DATA / "GE"), "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tilt_deg"] == pytest.approx(18.5, abs=0.05) and len(result["slices"]) == tilt.QUICK_SLICES
    shifts = [s["shift_px"] for s in result["slices"]]
    # the shear: the shift grows with the distance along the stack (sin 18.5° / 0.488 mm per mm of z)
    z = [s["z_mm"] for s in result["slices"]]
    per_mm = (shifts[0] - shifts[-1]) / (z[-1] - z[0])
    assert per_mm == pytest.approx(0.3173 / 0.488281, rel=0.02)
    assert all(s["acquired"] == s["acquired"] for s in result["slices"])  # scored (no NaN) in the middle of the head
