"""`isl-rt scan`: end to end on phantom series with junk beside them, error rows, resume."""

import csv
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from isl_rt.backends import open_backends
from isl_rt.cli import app
from isl_rt.outputs import safe_name
from isl_rt.pipeline import Scorer, healthy_percentile, params_from_bundle, scan_directory, series_json_dir

pytest.importorskip("torch")  # the small bundle is trained and exported here


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def messy_folder(phantom_cohort, tmp_path):
    """The three phantom series, a text file, a truncated DICOM, and a non-CT (MR) series."""
    root = tmp_path / "dicom"
    shutil.copytree(phantom_cohort, root, ignore=shutil.ignore_patterns("labels.csv", "masks", ".isl-rt-phantom.json"))
    (root / "notes.txt").write_text("not DICOM")
    first = sorted((root / "series_0001").iterdir())[0]
    (root / "broken.dcm").write_bytes(first.read_bytes()[:4000])
    mr = root / "mr"
    mr.mkdir()
    for i, path in enumerate(sorted((root / "series_0002").iterdir())[:3]):
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.SeriesInstanceUID = "1.2.3.4.5.6.7"
        ds.save_as(mr / f"{i}.dcm")
    return root


def test_scan_writes_ok_rows_error_rows_and_json(small_bundle, messy_folder, tmp_path):
    out = tmp_path / "out" / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(messy_folder), "--out", str(out), "--bundle", str(small_bundle.root),
                                      "--threads", "1", "--heatmaps", str(tmp_path / "heat")])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    rows = _rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    errors = {r["path"].rsplit("/", 1)[-1]: r["error"] for r in rows if r["status"] == "error"}
    skipped = {r["path"].rsplit("/", 1)[-1]: r["error"] for r in rows if r["status"] == "skipped"}
    assert len(ok) == 3 and len(rows) == 3 + len(errors) + len(skipped)
    assert "not a DICOM file" in skipped["notes.txt"]  # set aside on purpose: not an error
    assert "truncated" in errors["broken.dcm"]
    assert any("MR" in e or "not CT" in e or "modality" in e.lower() for e in skipped.values())
    assert f"{len(errors)} error rows, 0 rejected (not a usable head CT), {len(skipped)} skipped" in result.output
    threshold = small_bundle.manifest.threshold.scan_score
    for row in ok:
        score = float(row["scan_score"])
        assert np.isfinite(score) and score > 0
        assert row["flagged"] == ("1" if score > threshold else "0")
        assert 0 <= int(row["top_slice"]) < int(row["n_slices"])
        detail = json.loads((series_json_dir(out) / f"{safe_name(row['SeriesInstanceUID'])}.json").read_text())
        slice_scores = np.array(detail["slice_scores"], dtype=np.float64)  # null (NaN): a slice not scored
        assert len(slice_scores) == int(row["n_slices"])
        assert np.count_nonzero(~np.isnan(slice_scores)) == int(row["n_scored"]) > 0
        assert all(bool(reason) == bool(np.isnan(s)) for reason, s in zip(detail["slice_reasons"], slice_scores))
        assert np.nanmean(slice_scores) == pytest.approx(score, rel=1e-5)
        assert int(np.nanargmax(slice_scores)) == int(row["top_slice"])
        heat = tmp_path / "heat" / safe_name(row["SeriesInstanceUID"])
        with np.load(heat / "heatmaps.npz") as npz:
            assert npz["heat"].shape == (int(row["n_slices"]), 512, 512)
        assert (heat / "slice_scores.png").is_file() and len(list(heat.glob("top*_slice*.png"))) == 3


def test_nothing_scannable_exits_1(small_bundle, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "empty"), "--out", str(tmp_path / "s.csv"), "--bundle", str(small_bundle.root)])
    assert result.exit_code == 1 and "No series" in result.output
    assert _rows(tmp_path / "s.csv")[0]["status"] == "skipped"


def test_scan_directory_refuses_a_folder_with_no_file_before_writing(small_bundle, tmp_path):
    from isl_rt.errors import InputError

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    scorer = Scorer(params_from_bundle(small_bundle), None, None)  # never called
    with pytest.raises(InputError, match="holds no DICOM series or image folder to scan: no file is under it"):
        scan_directory(tmp_path / "empty", tmp_path / "out" / "s.csv", small_bundle, scorer, backend_name="none")
    assert not (tmp_path / "out").exists()


def test_a_run_killed_half_way_resumes_to_the_same_csv(small_bundle, messy_folder, tmp_path):
    params = params_from_bundle(small_bundle)

    def run(out, stop_after=None, resume=True):
        seen = []

        def on_series(event):
            seen.append(event)
            if stop_after is not None and event.row.get("status") == "ok" and sum(e.row.get("status") == "ok" for e in seen) == stop_after:
                raise KeyboardInterrupt

        with open_backends(small_bundle, "onnxruntime", threads=1) as pair:
            scorer = Scorer(params, pair.dedn, pair.drn)
            return scan_directory(messy_folder, out, small_bundle, scorer, backend_name=pair.name, resume=resume, on_series=on_series)

    whole = run(tmp_path / "whole.csv")
    assert whole.ok == 3
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut.csv", stop_after=1)
    assert sum(r["status"] == "ok" for r in _rows(tmp_path / "cut.csv")) == 1
    resumed = run(tmp_path / "cut.csv")
    assert resumed.ok == 2 and resumed.resumed >= 1

    def key(r):
        return (r["path"], r["SeriesInstanceUID"])

    def stable(rows):
        return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=key)

    assert stable(_rows(tmp_path / "cut.csv")) == stable(_rows(tmp_path / "whole.csv"))
    again = run(tmp_path / "cut.csv")
    assert again.ok == 0 and again.errors == 0


def test_resume_refuses_a_csv_another_bundle_wrote(small_bundle, messy_folder, tmp_path):
    out = tmp_path / "scores.csv"
    args = ["scan", str(messy_folder), "--out", str(out), "--threads", "1"]
    first = CliRunner().invoke(app, [*args, "--bundle", str(small_bundle.root)])
    assert first.exit_code == 0, first.output
    rows = out.read_text()
    run = json.loads((series_json_dir(out) / "_run.json").read_text())
    assert run["bundle"] == small_bundle.manifest.name and len(run["manifest_sha256"]) == 64
    # the same networks recalibrated: another manifest, other flags; resuming would mix them
    other = tmp_path / "recalibrated"
    shutil.copytree(small_bundle.root, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["threshold"]["scan_score"] = 0.0
    (other / "manifest.json").write_text(json.dumps(manifest))
    second = CliRunner().invoke(app, [*args, "--bundle", str(other)])
    assert second.exit_code == 1 and "Traceback" not in second.output
    assert "holds scores of bundle" in second.output and "--no-resume" in second.output
    assert out.read_text() == rows  # nothing lost, nothing mixed
    third = CliRunner().invoke(app, [*args, "--bundle", str(other), "--no-resume"])
    assert third.exit_code == 0, third.output
    assert all(r["flagged"] == "1" for r in _rows(out) if r["status"] == "ok")


def test_scanning_another_folder_into_the_same_csv_is_refused(small_bundle, phantom_cohort, tmp_path, monkeypatch):
    """`isl-rt scan DIR` without --out writes ./scores.csv and resumes it: a second folder scanned
    the same way must not add its rows to the first folder's CSV."""
    first, second = tmp_path / "ward a", tmp_path / "ward b"
    shutil.copytree(phantom_cohort / "series_0001", first / "series_0001")
    shutil.copytree(phantom_cohort / "series_0002", second / "series_0002")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = ["--bundle", str(small_bundle.root), "--threads", "1"]
    done = CliRunner().invoke(app, ["scan", str(first), *args])
    assert done.exit_code == 0, done.output
    out = work / "scores.csv"
    rows = out.read_text()
    run = json.loads((series_json_dir(out) / "_run.json").read_text())
    assert run["root"] == str(first.resolve())

    refused = CliRunner().invoke(app, ["scan", str(second), *args])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    message = " ".join(refused.output.split())  # the console wraps long lines
    assert (f"holds the scores of {first.resolve()}, not of {second.resolve()}: pass another --out to scan this folder, "
            "or delete that file (or pass --no-resume) to start it again.") in message
    assert out.read_text() == rows  # nothing mixed in

    # the same folder named another way (relative, through a link) is the same folder: it resumes
    (work / "link").symlink_to(first)
    again = CliRunner().invoke(app, ["scan", "link", *args])
    assert again.exit_code == 0, again.output
    assert "1 already in scores.csv" in again.output and out.read_text() == rows
    other = CliRunner().invoke(app, ["scan", str(second), *args, "--out", "ward-b.csv"])
    assert other.exit_code == 0, other.output
    assert [r["path"] for r in _rows(work / "ward-b.csv")] == [str(second / "series_0002")]

    # a CSV written before the scanned folder was recorded resumes from any folder, as it did,
    # and its run key then names the folder
    del run["root"]
    (series_json_dir(out) / "_run.json").write_text(json.dumps(run))
    older = CliRunner().invoke(app, ["scan", str(second), *args])
    assert older.exit_code == 0, older.output
    assert len(_rows(out)) == 2
    assert json.loads((series_json_dir(out) / "_run.json").read_text())["root"] == str(second.resolve())


def test_stride_picks_the_partition_and_a_csv_never_mixes_partitions(small_bundle, messy_folder, tmp_path):
    from dataclasses import replace

    from isl_rt.errors import InputError
    from isl_rt.kernels.partition import Partition
    from isl_rt.pipeline import with_stride

    k = small_bundle.manifest.partition.k  # 2: stride 2 is the bundle's own 2×2 cells
    args = ["scan", str(messy_folder), "--threads", "1", "--bundle", str(small_bundle.root)]
    plain, strided = tmp_path / "plain.csv", tmp_path / "strided.csv"
    assert CliRunner().invoke(app, [*args, "--out", str(plain)]).exit_code == 0
    result = CliRunner().invoke(app, [*args, "--out", str(strided), "--stride", str(k)])
    assert result.exit_code == 0, result.output
    assert f"{k * k} DeDN passes per slice (--stride {k})" in result.output

    def scores(path):
        return {r["SeriesInstanceUID"]: float(r["scan_score"]) for r in _rows(path) if r["status"] == "ok"}

    assert len(scores(strided)) == 3 and scores(strided) == pytest.approx(scores(plain), rel=1e-6)
    ok = next(r for r in _rows(strided) if r["status"] == "ok")
    detail = json.loads((series_json_dir(strided) / f"{safe_name(ok['SeriesInstanceUID'])}.json").read_text())
    assert detail["dedn_passes_per_slice"] == k * k
    params = params_from_bundle(small_bundle)
    assert with_stride(params, 0) is params
    for bad in ("1", str(k + 1)):
        wrong = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.csv"), "--stride", bad])
        assert wrong.exit_code == 1 and f"--stride must be 0 (the bundle's partition) or 2..{k}" in wrong.output
    # resuming a CSV with another partition (here one pass erasing the whole slice) would mix scores
    coarse = replace(params_from_bundle(small_bundle), partition=Partition.strided(k, 1))
    rows = plain.read_text()
    with open_backends(small_bundle, "onnxruntime", threads=1) as pair:
        with pytest.raises(InputError, match=rf"another partition \({k * k} DeDN passes per slice, this run 1\)"):
            scan_directory(messy_folder, plain, small_bundle, Scorer(coarse, pair.dedn, pair.drn), backend_name=pair.name)
    assert plain.read_text() == rows


def test_healthy_percentile():
    assert healthy_percentile(0.25, [0.1, 0.2, 0.3, 0.4]) == 50.0
    assert healthy_percentile(1.0, [0.1, 0.2]) == 100.0
    assert healthy_percentile(0.0, [0.1, 0.2]) == 0.0
    assert np.isnan(healthy_percentile(0.5, []))


def test_calibrate_writes_the_threshold_from_healthy_scans(small_bundle, phantom_cohort, tmp_path):
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(small_bundle.root, bundle_dir)
    out = tmp_path / "calibration.csv"
    result = CliRunner().invoke(app, ["calibrate", str(phantom_cohort), "--bundle", str(bundle_dir), "--labels",
                                      str(phantom_cohort / "labels.csv"), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    with (phantom_cohort / "labels.csv").open() as handle:
        healthy = {r["SeriesInstanceUID"] for r in csv.DictReader(handle) if r["label"] == "0"}
    scores = sorted(float(r["scan_score"]) for r in _rows(out) if r["SeriesInstanceUID"] in healthy)
    from isl_rt.bundle import load_bundle

    threshold = load_bundle(bundle_dir).require_threshold()
    assert threshold.n_healthy_scans == len(scores) == 2
    assert threshold.healthy_scores == pytest.approx(scores, rel=1e-5)
    assert threshold.scan_score == pytest.approx(max(scores), rel=1e-5)  # the "higher" 95% quantile of two


def test_calibrate_checks_the_labels_before_scanning(small_bundle, phantom_cohort, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("SeriesInstanceUID,label\n1.2.3,healthy\n")
    for labels, message in ((tmp_path / "missing.csv", "does not exist"), (bad, "labels must be 0 or 1")):
        out = tmp_path / "calibration.csv"
        result = CliRunner().invoke(app, ["calibrate", str(phantom_cohort), "--bundle", str(small_bundle.root),
                                          "--labels", str(labels), "--out", str(out)])
        assert result.exit_code == 1 and message in result.output
        assert not out.exists()  # refused before minutes of scanning, not after


def test_calibrate_says_why_there_is_nothing_to_calibrate_on(small_bundle, phantom_cohort, tmp_path):
    empty, junk = tmp_path / "empty", tmp_path / "junk"
    empty.mkdir()
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "scan.dcm").write_bytes(b"DICM" * 10)
    all_disorder = tmp_path / "labels.csv"
    with (phantom_cohort / "labels.csv").open() as handle:
        uids = [r["SeriesInstanceUID"] for r in csv.DictReader(handle)]
    all_disorder.write_text("SeriesInstanceUID,label\n" + "".join(f"{uid},1\n" for uid in uids))
    cases = ((empty, [], f"{empty} holds no DICOM series or image folder to scan"),
             (junk, [], f"no series in {junk} could be scored (2 rows in "),
             (phantom_cohort, ["--labels", str(all_disorder)], f"none of the 3 series scored in {phantom_cohort} is labelled 0"))
    for folder, extra, message in cases:
        bundle_dir = tmp_path / f"bundle-{folder.name}"
        shutil.copytree(small_bundle.root, bundle_dir)
        before = (bundle_dir / "manifest.json").read_text()
        result = CliRunner().invoke(app, ["calibrate", str(folder), "--bundle", str(bundle_dir), "--threads", "1",
                                          "--out", str(tmp_path / f"{folder.name}.csv"), *extra])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output and (bundle_dir / "manifest.json").read_text() == before


def test_onnxruntime_and_torch_backends_agree(small_bundle, phantom_cohort, tmp_path):
    assert small_bundle.torch_path("dedn") is not None and small_bundle.torch_path("drn") is not None
    params = params_from_bundle(small_bundle)
    series = {}
    for name in ("onnxruntime", "torch"):
        with open_backends(small_bundle, name, threads=1) as pair:
            scan_directory(phantom_cohort, tmp_path / f"{name}.csv", small_bundle, Scorer(params, pair.dedn, pair.drn),
                           backend_name=pair.name)
        series[name] = {r["SeriesInstanceUID"]: r for r in _rows(tmp_path / f"{name}.csv") if r["status"] == "ok"}
        for uid in series[name]:
            detail = json.loads((series_json_dir(tmp_path / f"{name}.csv") / f"{safe_name(uid)}.json").read_text())
            series[name][uid]["slices"] = np.array(detail["slice_scores"], dtype=np.float64)
    assert series["onnxruntime"].keys() == series["torch"].keys() and len(series["torch"]) == 3
    for uid, ort_row in series["onnxruntime"].items():
        torch_row = series["torch"][uid]
        assert abs(float(ort_row["scan_score"]) - float(torch_row["scan_score"])) <= 1e-4
        np.testing.assert_allclose(ort_row["slices"], torch_row["slices"], atol=1e-4, rtol=0)


def test_auto_prefers_onnxruntime_gpu_providers_when_installed(small_bundle, monkeypatch):
    import isl_rt.backends.onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend, "available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr("isl_rt.backends._tensorrt_usable", lambda: False)
    pair = open_backends(small_bundle, "auto")
    assert pair.name == "onnxruntime-cuda"
    assert pair.dedn.providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    from isl_rt.backends import openvino_installed

    assert open_backends(small_bundle, "auto").name == ("openvino" if openvino_installed() else "onnxruntime")


def test_scores_are_taken_inside_the_cranial_cavity(small_bundle, phantom_cohort):
    from dataclasses import replace

    from isl_rt import kernels
    from isl_rt.io import dicom

    params = params_from_bundle(small_bundle)
    assert params.cavity is not None and small_bundle.manifest.cavity is not None
    hu = dicom.load_volume(dicom.discover(phantom_cohort).series[0]).hu
    with open_backends(small_bundle, "onnxruntime", threads=1) as pair:
        inside = Scorer(params, pair.dedn, pair.drn).score(hu)
        whole = Scorer(replace(params, cavity=None), pair.dedn, pair.drn).score(hu)
    c = params.cavity
    assert c.air_margin == 0  # the phantom bundle's cavity is the kernel's alone
    mask = kernels.cavity(inside.x, c.channel, c.bone, c.margin, sides=c.sides, largest=c.largest)
    assert 0 < mask.mean() < 1
    np.testing.assert_array_equal(inside.difference, whole.difference * mask[:, None])
    assert not np.allclose(inside.slice_scores, whole.slice_scores)


def test_mask_cavity_takes_sides_and_largest():
    from isl_rt import kernels
    from isl_rt.bundle import CavityArgs
    from isl_rt.pipeline import mask_cavity

    # a ring open on its right side on rows 4..6, and a bar under it: sides 3 keeps the open
    # rows, largest drops what the bar encloses with the ring on three sides
    x = np.zeros((1, 2, 16, 12), np.float32)
    x[0, 1, 1, 1:11] = x[0, 1, 10, 1:11] = x[0, 1, 1:11, 1] = x[0, 1, 1:11, 10] = 1.0
    x[0, 1, 4:7, 10] = 0.0
    x[0, 1, 14, :] = x[0, 1, 11:15, 0] = 1.0
    for args in (CavityArgs(1, 0.5, 0), CavityArgs(1, 0.5, 0, 3), CavityArgs(1, 0.5, 0, 3, True)):
        dif = np.ones_like(x)
        mask = mask_cavity(x, dif, args)
        np.testing.assert_array_equal(mask, kernels.cavity(x, 1, 0.5, 0, sides=args.sides, largest=args.largest))
        np.testing.assert_array_equal(dif, np.broadcast_to(mask[:, None], x.shape))
    assert mask_cavity(x, np.ones_like(x), CavityArgs(1, 0.5, 0)).sum() == 8 * 8 - 3 * 8
    assert mask_cavity(x, np.ones_like(x), CavityArgs(1, 0.5, 0, 3)).sum() == 64 + 3 + 3 * 10
    assert mask_cavity(x, np.ones_like(x), CavityArgs(1, 0.5, 0, 3, True)).sum() == 64 + 3


def _head_and_holder(size: int = 64) -> np.ndarray:
    """One slice [1, S, S] in [0, 1]: a white skull ring round grey brain with a dark pocket (CSF)
    inside, air around it and a white head-holder arc on the right, as pre-windowed real CT shows."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - 32, xx - 28)
    x = np.zeros((1, size, size), np.float32)
    x[0][r < 22] = 1.0  # skull
    x[0][r < 19] = 0.45  # brain
    x[0][(np.abs(yy - 32) < 3) & (np.abs(xx - 28) < 3)] = 0.0  # CSF as dark as air, inside the skull
    holder = (np.abs(np.hypot(yy - 32, xx - 20) - 40) < 1.0) & (xx > 40)
    x[0][holder] = 1.0
    return x


def test_near_outside_air_finds_the_air_round_the_head_and_not_inside_it():
    from isl_rt.pipeline import near_outside_air

    x = _head_and_holder()
    air = near_outside_air(x, 0)[0]
    assert air[0, 0] and air[32, 55]  # the corner, and the gap between the head and the holder
    assert not air[32, 28] and not air[32, 20]  # the dark pocket inside the skull, the brain
    grown = near_outside_air(x, 3)[0]
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(yy - 32, xx - 28)
    # 3 steps of a 3×3 square: the outer skull, not the brain 5 px or more inside the skull's outer edge
    assert grown[(r >= 21) & (r < 25)].all() and not grown[r < 17].any()
    assert near_outside_air(x, 4)[0][(r >= 18.5) & (r < 19)].all()  # 4 steps reach the brain's rim
    assert not near_outside_air(np.ones_like(x), 4).any()  # no air, nothing near it


def test_mask_cavity_air_margin_leaves_out_what_lies_near_the_air_round_the_head():
    from isl_rt.bundle import CavityArgs
    from isl_rt.pipeline import mask_cavity, near_outside_air

    x = _head_and_holder()[:, None]  # [1, 1, S, S]
    plain = mask_cavity(x, np.ones_like(x), CavityArgs(0, 0.9, 0, 3))
    assert plain[0, 32, 55] == 1  # the gap between head and holder sees bone on three sides: cavity
    dif = np.ones_like(x)
    cut = mask_cavity(x, dif, CavityArgs(0, 0.9, 0, 3, False, 5))
    np.testing.assert_array_equal(cut, plain * ~near_outside_air(x[:, 0], 5))
    np.testing.assert_array_equal(dif[:, 0], cut)
    assert cut[0, 32, 55] == 0 and cut[0, 32, 20] == 1  # the gap goes, the brain stays


def test_a_bundle_takes_an_air_margin_and_must_be_calibrated_again(small_bundle, tmp_path):
    from isl_rt.bundle import BundleError, load_bundle, set_cavity_air_margin

    root = tmp_path / "bundle"
    shutil.copytree(small_bundle.root, root)
    assert small_bundle.manifest.cavity is not None and small_bundle.manifest.cavity.air_margin == 0
    assert small_bundle.manifest.threshold is not None
    bundle = set_cavity_air_margin(root, 4)
    assert bundle.manifest.cavity.air_margin == 4 and bundle.manifest.threshold is None  # scores changed: calibrate
    assert "none within 4 px of the air around the head" in bundle.manifest.cavity.describe()
    assert params_from_bundle(bundle).cavity.air_margin == 4
    assert json.loads((root / "manifest.json").read_text())["cavity"]["air_margin"] == 4
    with pytest.raises(BundleError, match="0 or more pixels"):
        set_cavity_air_margin(root, -1)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["cavity"]["air_margin"] = -2
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cavity.air_margin = -2, which is negative"):
        load_bundle(root)
    del manifest["cavity"]["air_margin"]  # a manifest from before the margin: none
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert load_bundle(root).manifest.cavity.air_margin == 0
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "b"), "--cavity-air-margin", "-1"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "--cavity-air-margin" in result.output


# ---- on screen: progress, the results table, stopping -----------------------------------------
def _plain_console(monkeypatch):
    """Rich takes these to mean a terminal even on a pipe; the tests want a pipe."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def test_scan_off_a_terminal_prints_a_line_per_series_and_ends_with_the_results_table(small_bundle, messy_folder,
                                                                                     tmp_path, monkeypatch):
    import re

    from isl_rt.outputs import result_order

    _plain_console(monkeypatch)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(messy_folder), "--out", str(out), "--bundle", str(small_bundle.root),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    lines = [line for line in result.stderr.splitlines() if line.startswith("scan ")]
    assert len(lines) == len(rows) == 6  # 3 series, a text file, a truncated file, an MR series
    assert [int(re.match(r"scan (\d+)/6: ", line).group(1)) for line in lines] == [1, 2, 3, 4, 5, 6]
    ok_lines = [line for line in lines if ": ok, scan score " in line]
    assert len(ok_lines) == 3 and all(re.search(r"series_000\d: ok, scan score \d+\.\d{4}", line) for line in ok_lines)
    assert all(re.search(r"\(\d+\.\d slices/s, \d+:\d\d left\)$", line) for line in ok_lines)
    assert ok_lines[-1].endswith(", 0:00 left)")
    assert "broken.dcm: error (" in result.stderr and "notes.txt: skipped (" in result.stderr
    # the table, on stdout: every row but the skipped items (only counted), in the order of the
    # report's index (flagged first, by score)
    assert "isl-rt scan" in result.stdout
    names = [Path(r["path"]).name for r in sorted(rows, key=result_order)]
    expected = [Path(r["path"]).name for r in sorted(rows, key=result_order) if r["status"] != "skipped"]
    shown = [name for line in result.stdout.splitlines() for name in names if f"│ {name} " in line]
    assert shown == expected and len(expected) == 4
    flagged = [Path(r["path"]).name for r in rows if r["flagged"] == "1"]
    assert shown[: len(flagged)] == sorted(flagged, key=lambda n: expected.index(n))
    assert "truncated" in result.stdout  # a row not scored says why


def test_result_order_lists_flagged_series_first_then_by_score():
    from isl_rt.outputs import result_order

    rows = [{"path": "a", "status": "ok", "scan_score": "3.0", "flagged": "0"},
            {"path": "b", "status": "skipped", "scan_score": "", "flagged": ""},
            {"path": "c", "status": "ok", "scan_score": "2.0", "flagged": "1"},
            {"path": "d", "status": "error", "scan_score": "", "flagged": ""},
            {"path": "e", "status": "ok", "scan_score": "5.0", "flagged": "1"},
            {"path": "f", "status": "rejected", "scan_score": "", "flagged": ""}]
    assert [r["path"] for r in sorted(rows, key=result_order)] == ["e", "c", "a", "d", "f", "b"]


def test_scan_progress_on_a_terminal_shows_series_rate_and_time_left():
    import io

    from rich.console import Console

    from isl_rt.cli.scan import _ScanProgress
    from isl_rt.pipeline import SeriesDone

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=120)
    with _ScanProgress(console) as progress:
        progress(SeriesDone(1, 4, {"path": "/d/a", "status": "ok", "scan_score": 0.5, "flagged": False}, 20.0, 140))
        progress.progress.refresh()
    text = screen.getvalue()
    assert "scan series" in text and "1/4" in text and "20.0 slices/s" in text and "0:07 left" in text
    assert "/d/a" not in text  # the bar, not a line per series
    assert SeriesDone(1, 4, {}, 0.0, 150).eta_seconds is None and SeriesDone(1, 4, {}, 10.0, 0).eta_seconds == 0


@pytest.mark.parametrize("signum, extra, hint", [
    (signal.SIGINT, ["--no-resume"], "run it again without --no-resume to resume"),  # Ctrl-C
    (signal.SIGTERM, [], "run the same command again to resume"),
])
def test_a_scan_stopped_by_a_signal_keeps_its_finished_rows_and_says_how_to_resume(
        small_bundle, messy_folder, tmp_path, monkeypatch, signum, extra, hint):
    import os

    from isl_rt.cli import scan as scan_cli

    _plain_console(monkeypatch)
    sent = []
    record = scan_cli._ScanProgress.__call__

    def stop_after_the_first_series(self, event):
        record(self, event)
        if event.row.get("status") == "ok" and not sent:
            sent.append(event.index)
            os.kill(os.getpid(), signum)  # as Ctrl-C or `kill` would, while the scan runs

    def not_ours(*_):  # reached only if the scan did not take SIGTERM itself
        raise AssertionError("SIGTERM reached the test process")

    previous = signal.signal(signal.SIGTERM, not_ours)
    try:
        monkeypatch.setattr(scan_cli._ScanProgress, "__call__", stop_after_the_first_series)
        out = tmp_path / "scores.csv"
        args = ["scan", str(messy_folder), "--out", str(out), "--bundle", str(small_bundle.root), "--threads", "1"]
        stopped = CliRunner().invoke(app, [*args, *extra])
        assert signal.getsignal(signal.SIGTERM) is not_ours  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.exit_code == 128 + signum, stopped.output
    kept = len(_rows(out))
    assert kept == sent[0] == 4  # the three items set aside, then the first series
    assert stopped.stderr.strip().splitlines()[-1] == f"stopped: {kept} finished rows are kept in {out}; {hint}."
    assert "Traceback" not in stopped.output and "Aborted" not in stopped.output

    monkeypatch.setattr(scan_cli._ScanProgress, "__call__", record)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "2 series scored" in again.stdout and f"{kept} already in {out}" in again.stdout
    assert len(_rows(out)) == 6


def test_sigterm_to_a_running_scan_process_keeps_its_rows(small_bundle, messy_folder, tmp_path, monkeypatch):
    """The same through a real `isl-rt scan` process, stopped by `kill` while it scans."""
    import os
    import subprocess
    import sys

    _plain_console(monkeypatch)
    out = tmp_path / "scores.csv"
    command = [sys.executable, "-c", "from isl_rt.cli import main; main()", "scan", str(messy_folder), "--out", str(out),
               "--bundle", str(small_bundle.root), "--threads", "1"]
    # run outside the checkout, so the installed package is imported (with its compiled extension), not the source tree
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                               cwd=tmp_path)
    seen = []
    try:
        for line in process.stderr:  # one line per series: stderr is a pipe, not a terminal
            seen.append(line)
            if ": ok, scan score " in line:
                process.send_signal(signal.SIGTERM)  # two series are left to score
                break
        stdout, rest = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = "".join(seen) + rest
    assert process.returncode == 143, stderr
    kept = len(_rows(out))
    assert 4 <= kept < 6
    assert stderr.strip().splitlines()[-1] == (f"stopped: {kept} finished rows are kept in {out}; "
                                               "run the same command again to resume.")
    assert "Traceback" not in stderr and "PASSED" not in stdout
