"""`isl-rt scan` on image folders: rows, the slices CSV, heat maps, resume, the input kind."""

import csv
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from isl_rt.backends import open_backends
from isl_rt.bundle import calibrate_bundle, image_windows, load_bundle
from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.io.series import discover_series, load_series
from isl_rt.outputs import safe_name, slices_csv_path
from isl_rt.pipeline import Scorer, model_input, params_from_bundle, scan_directory, series_json_dir

pytest.importorskip("torch")  # the image bundle is trained and exported here


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def image_tree(tmp_path, image_writer):
    """Folders of brain-window PNGs: ``a`` (5 slices), ``b`` (4 slices, a text file and a
    truncated PNG beside them), ``mixed`` (64×64 and 48×48 images) and ``c/d`` (3 slices)."""
    write_image_series, brain_window_png = image_writer.series, image_writer.png
    root = tmp_path / "images"
    files = {"a": write_image_series(root / "a", 5, seed=1), "b": write_image_series(root / "b", 4, seed=2),
             "c__d": write_image_series(root / "c" / "d", 3, seed=3)}
    (root / "b" / "notes.txt").write_text("not an image")
    whole = (root / "b" / "1.png").read_bytes()
    (root / "b" / "9.png").write_bytes(whole[: len(whole) // 2])  # truncated
    write_image_series(root / "mixed", 2, seed=4)
    brain_window_png(root / "mixed" / "3.png", 5, size=48)
    return root, files


def _scan(bundle, root, out, **kwargs):
    with open_backends(bundle, "onnxruntime", threads=1) as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn)
        return scan_directory(root, out, bundle, scorer, backend_name=pair.name, **kwargs)


def test_image_tree_scans_with_a_row_for_everything(image_bundle, image_tree, tmp_path):
    root, files = image_tree
    out = tmp_path / "out" / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(root), "--out", str(out), "--bundle", str(image_bundle.root),
                                      "--threads", "1", "--heatmaps", str(tmp_path / "heat")])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    by_status = {s: {r["path"].removeprefix(str(root) + "/"): r for r in rows if r["status"] == s} for s in ("ok", "error", "skipped")}
    assert set(by_status["ok"]) == {"a", "b", "c/d"}
    assert set(by_status["error"]) == {"b/9.png", "mixed"} and set(by_status["skipped"]) == {"b/notes.txt"}
    assert len(rows) == 6  # nothing lost, nothing twice
    assert "not a readable image" in by_status["error"]["b/9.png"]["error"]
    assert "differ in size or channel count: 64×64 gray (2 files), 48×48 gray (1 file)" in by_status["error"]["mixed"]["error"]
    assert "not a DICOM file" in by_status["skipped"]["b/notes.txt"]["error"]

    slices = _rows(slices_csv_path(out))
    threshold = image_bundle.manifest.threshold.scan_score
    for name, expected in files.items():
        row = by_status["ok"][name.replace("__", "/")]
        assert row["series"] == name and row["SeriesInstanceUID"] == "" and int(row["n_slices"]) == len(expected)
        mine = [r for r in slices if r["series"] == name]
        assert [int(r["slice"]) for r in mine] == list(range(len(expected)))
        assert [r["source"] for r in mine] == [os.path.abspath(p) for p in expected]  # natural order: 1, 2, ..., 10
        scores = np.array([float(r["slice_score"]) for r in mine if r["slice_score"]])  # "": not scored, reason given
        assert all(bool(r["slice_score"]) != bool(r["reason"]) for r in mine) and len(scores) == int(row["n_scored"])
        assert np.mean(scores) == pytest.approx(float(row["scan_score"]), rel=1e-6)
        assert row["flagged"] == ("1" if float(row["scan_score"]) > threshold else "0")
        assert all(r["flagged"] == "" for r in mine)  # the bundle has no slice threshold
        detail = json.loads((series_json_dir(out) / f"{safe_name(name)}.json").read_text())
        assert detail["kind"] == "image" and detail["slice_sources"] == [r["source"] for r in mine]
        np.testing.assert_allclose([s for s in detail["slice_scores"] if s is not None], scores, rtol=1e-6)
        np.testing.assert_allclose(np.array(detail["slice_apds"], dtype=np.float64),
                                   [float(r["apds"] or "nan") for r in mine], rtol=1e-6)
        with np.load(tmp_path / "heat" / safe_name(name) / "heatmaps.npz") as npz:
            assert npz["heat"].shape == (len(expected), 64, 64) and npz["region"].shape == (len(expected), 64, 64)
            assert 0 < npz["region"].mean() < 1  # the cavity inside the white skull, not the whole slice
    detail_b = json.loads((series_json_dir(out) / "b.json").read_text())
    assert any("9.png" in w for w in detail_b["warnings"])
    # the HTML report finds the JSON, slices and heat maps of image series too
    from isl_rt.report import write_report

    report = write_report(out, tmp_path / "report")
    assert (report.pages, report.without_slices, report.without_heat, report.errors, report.skipped) == (3, 0, 0, 2, 1)


def test_scan_computes_the_input_training_computes(image_bundle, image_tree):
    from isl_rt.training.data import PrepParams, prepare

    root, _ = image_tree
    params = params_from_bundle(image_bundle)
    [item] = [s for s in discover_series(root).series if s.key == "a"]
    x = model_input(load_series(item), params)
    trained = prepare(root / "a", PrepParams(size=params.size))
    np.testing.assert_array_equal(x, trained.x)
    assert trained.params.windows == tuple(image_bundle.manifest.windows)


def test_conversions_between_image_kinds(image_bundle, tmp_path, image_writer):
    brain_window_png = image_writer.png
    params = params_from_bundle(image_bundle)
    gray8 = [brain_window_png(tmp_path / "g8" / f"{i}.png", i) for i in range(2)]
    for i in range(2):
        brain_window_png(tmp_path / "g16" / f"{i}.png", i, bits=16)
        brain_window_png(tmp_path / "rgb" / f"{i}.png", i, rgb=True)
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 200
    (tmp_path / "colour").mkdir()
    Image.fromarray(colour).save(tmp_path / "colour" / "0.png")
    series = {s.key: load_series(s) for s in discover_series(tmp_path).series}
    reference = model_input(series["g8"], params)
    assert series["g16"].bit_depth == 16 and np.array_equal(series["g16"].pixels[:, 0], np.stack(gray8))
    np.testing.assert_array_equal(model_input(series["g16"], params), reference)  # 16 bits: the same [0, 1] values
    np.testing.assert_array_equal(model_input(series["rgb"], params), reference)  # gray saved as RGB
    with pytest.raises(InputError, match="colour \\(RGB\\) images, but the bundle's networks read gray images"):
        model_input(series["colour"], params)
    rgb_params = replace(params, windows=np.asarray([(w.level, w.width) for w in image_windows(3)], np.float32))
    with pytest.raises(InputError, match="1 channel\\(s\\), but the bundle's networks read pre-windowed RGB images"):
        model_input(series["g8"], rgb_params)


def test_kind_mismatch_is_refused_in_one_sentence(image_bundle, small_bundle, image_tree, phantom_cohort, tmp_path, image_writer):
    root, _ = image_tree
    for bundle, data, words in ((small_bundle, root, "image series"), (image_bundle, phantom_cohort, "DICOM CT series")):
        out = tmp_path / f"{bundle.manifest.name}.csv"
        result = CliRunner().invoke(app, ["scan", str(data), "--out", str(out), "--bundle", str(bundle.root)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"holds 3 {words}" in result.output and "pass a bundle trained on such data" in result.output
        assert not out.exists()
    # a tree of both kinds: the HU bundle scores the DICOM series; the image series get a skipped row
    mixed = tmp_path / "mixed"
    shutil.copytree(phantom_cohort, mixed, ignore=shutil.ignore_patterns("masks"))
    image_writer.series(mixed / "pngs", 2, seed=9)
    summary = _scan(small_bundle, mixed, tmp_path / "mixed.csv")
    assert summary.ok == 3
    [row] = [r for r in _rows(tmp_path / "mixed.csv") if r["path"].endswith("pngs")]
    assert row["status"] == "skipped" and "an image series, but bundle" in row["error"] and "HU of DICOM CT" in row["error"]
    dicom_slices = [r for r in _rows(slices_csv_path(tmp_path / "mixed.csv"))]
    assert len(dicom_slices) == sum(int(r["n_slices"]) for r in _rows(tmp_path / "mixed.csv") if r["status"] == "ok")
    assert all(r["source"].count(".") > 3 for r in dicom_slices)  # SOPInstanceUIDs


def test_resume_keeps_the_slices_csv_consistent(image_bundle, image_tree, tmp_path):
    root, _ = image_tree
    whole = tmp_path / "whole.csv"
    _scan(image_bundle, root, whole)

    def stable(path):
        return sorted(tuple(v for k, v in r.items() if k != "seconds") for r in _rows(path))

    # a crash after the slice rows of a series but before its scores row
    cut = tmp_path / "cut.csv"
    _scan(image_bundle, root, cut)
    lines = cut.read_text().splitlines(keepends=True)
    ok_line = next(i for i, line in enumerate(lines) if ",ok," in line)
    cut.write_text("".join(lines[:ok_line] + lines[ok_line + 1:]))
    again = _scan(image_bundle, root, cut)
    assert again.ok == 1 and again.resumed == 5
    assert stable(cut) == stable(whole) and stable(slices_csv_path(cut)) == stable(slices_csv_path(whole))
    # a slices CSV cut inside a series (a crash in its write): that series is scanned again
    text = slices_csv_path(cut).read_text()
    slices_csv_path(cut).write_text(text[: text.rindex("\n", 0, len(text) - 1) - 5])
    again = _scan(image_bundle, root, cut)
    assert again.ok == 1
    assert stable(cut) == stable(whole) and stable(slices_csv_path(cut)) == stable(slices_csv_path(whole))
    # no slices CSV at all: every series again, none twice
    slices_csv_path(cut).unlink()
    again = _scan(image_bundle, root, cut)
    assert again.ok == 3 and stable(slices_csv_path(cut)) == stable(slices_csv_path(whole))
    assert stable(cut) == stable(whole)


def test_slice_threshold_flags_slices(image_bundle, image_tree, tmp_path):
    root, _ = image_tree
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(image_bundle.root, bundle_dir)
    first = tmp_path / "first.csv"
    _scan(image_bundle, root, first)
    scores = [float(r["slice_score"]) for r in _rows(slices_csv_path(first)) if r["slice_score"]]
    cut = float(np.quantile(scores, 0.5, method="higher"))
    bundle = calibrate_bundle(bundle_dir, None, 0.5, healthy_slice_scores=scores, slice_series=3)
    t = bundle.manifest.slice_threshold
    assert t.slice_score == cut and t.n_healthy_slices == len(scores) > 0 and t.n_series == 3
    assert bundle.manifest.threshold == image_bundle.manifest.threshold  # kept
    out = tmp_path / "second.csv"
    _scan(load_bundle(bundle_dir), root, out)
    rows = _rows(slices_csv_path(out))
    assert {r["flagged"] for r in rows if r["slice_score"]} == {"0", "1"}
    assert all(r["flagged"] == ("1" if float(r["slice_score"]) > cut else "0") for r in rows if r["slice_score"])
    assert all(r["flagged"] == "" and r["reason"].startswith("not scored: ") for r in rows if not r["slice_score"])
    info = CliRunner().invoke(app, ["info", "--bundle", str(bundle_dir)])
    assert "input: image, pre-windowed gray images" in info.output
    assert f"slice threshold: slice score > {cut:.4g}" in info.output
    assert "bone >= 0.975 of full scale in channel 'gray'" in info.output


def test_calibrate_on_lesion_free_slices(image_bundle, image_tree, tmp_path):
    root, files = image_tree
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(image_bundle.root, bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["threshold"] = None  # as for a data set without healthy scans
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    labels = tmp_path / "labels" / "slices.csv"
    labels.parent.mkdir()
    lines = ["image,lesion"]
    lesion = {files["a"][1], files["b"][0], files["b"][3]}
    for paths in files.values():
        lines += [f"{os.path.relpath(p, labels.parent)},{int(p in lesion)}" for p in paths]
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "calibration.csv"
    result = CliRunner().invoke(app, ["calibrate", str(root), "--bundle", str(bundle_dir), "--labels", str(labels),
                                      "--label-column", "lesion", "--out", str(out), "--threads", "1",
                                      "--target-specificity", "0.8"])
    assert result.exit_code == 0, result.output
    healthy_rows = [r for r in _rows(slices_csv_path(out))
                    if r["source"] not in {os.path.abspath(p) for p in lesion} and r["slice_score"]]
    healthy = sorted(float(r["slice_score"]) for r in healthy_rows)
    m = load_bundle(bundle_dir).manifest
    assert m.slice_threshold.n_healthy_slices == len(healthy) > 0
    assert m.slice_threshold.n_series == len({r["series"] for r in healthy_rows})  # series with a scored healthy slice
    assert m.slice_threshold.slice_score == pytest.approx(float(np.quantile(healthy, 0.8, method="higher")), rel=1e-6)
    # c/d has only lesion-free slices: it alone sets the scan threshold
    [cd] = [float(r["scan_score"]) for r in _rows(out) if r["series"] == "c__d"]
    assert m.threshold.n_healthy_scans == 1 and m.threshold.scan_score == pytest.approx(cd, rel=1e-6)
    assert "slice score >" in result.output


def test_inspect_reports_image_folders_beside_dicom(image_tree, dicom_factory):
    root, files = image_tree
    written = dicom_factory.series(root / "ct", n=4)
    result = CliRunner().invoke(app, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    entries = {(e["kind"], e["status"], e["path"].removeprefix(str(root) + "/")): e for e in json.loads(result.output)}
    assert set(entries) == {("image", "ok", "a"), ("image", "ok", "b"), ("image", "ok", "c/d"), ("hu", "ok", "ct"),
                            ("image", "error", "b/9.png"), ("image", "error", "mixed"), ("hu", "skipped", "b/notes.txt")}
    assert entries[("hu", "ok", "ct")]["SeriesInstanceUID"] == written.series_uid
    a = entries[("image", "ok", "a")]
    assert (a["series"], a["n_slices"], a["matrix"], a["channels"]) == ("a", 5, [64, 64], 1)
    assert entries[("image", "ok", "b")]["n_slices"] == 4 and "9.png" in entries[("image", "ok", "b")]["warnings"][0]
    table = CliRunner().invoke(app, ["inspect", str(root)])
    assert "4 series ok, 1 skipped, 2 errors" in table.output


def test_image_discovery_walks_the_tree_as_dicom_discovery_does(tmp_path, image_writer):
    root = tmp_path / "root"
    image_writer.series(root / "a", 2, seed=1)
    os.mkfifo(root / "a" / "3.png")  # never opened: reading it would block forever
    image_writer.series(tmp_path / "outside", 2, seed=2)
    (root / "ext").symlink_to(tmp_path / "outside")  # a linked folder is followed, once
    (root / "again").symlink_to(root / "a")
    found = discover_series(root)
    assert [(s.kind, s.key, s.n_slices) for s in found.series] == [("image", "a", 2), ("image", "ext", 2)]
    reasons = {p.path.name: p.reason for p in found.set_aside}
    assert set(reasons) == {"3.png", "again"} and "never opened" in reasons["3.png"]
    assert [r.status for r in found.set_aside] == ["skipped", "skipped"]


def test_dicom_results_are_refused_for_an_image_bundle(image_bundle, image_tree, tmp_path):
    root, _ = image_tree
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(app, ["scan", str(root), "--out", str(out), "--bundle", str(image_bundle.root),
                                      "--dicom-out", str(tmp_path / "dcm")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no DICOM source" in result.output and not out.exists() and not (tmp_path / "dcm").exists()


# ---------------------------------------------------------------- key images and loose images


def _real_bundle():
    from isl_rt.bundle import default_bundle_path

    return default_bundle_path("head-ct-real-tiny")


def _scan_cli(root, out, bundle_root, *extra):
    result = CliRunner().invoke(app, ["scan", str(root), "--out", str(out), "--bundle", str(bundle_root),
                                      "--threads", "1", *extra])
    return result, (_rows(out) if out.exists() else [])


def test_a_single_head_png_is_scored_and_a_blank_or_noise_image_refused(tmp_path, image_writer):
    root = tmp_path / "key"
    image_writer.png(root / "head" / "key.png", 5, size=256)
    (root / "blank").mkdir()
    Image.fromarray(np.full((256, 256), 50, np.uint8)).save(root / "blank" / "0.png")
    (root / "noise").mkdir()
    noise = (np.random.default_rng(0).random((256, 256)) * 230).astype(np.uint8)
    Image.fromarray(noise).save(root / "noise" / "0.png")
    out = tmp_path / "scores.csv"
    result, rows = _scan_cli(root, out, _real_bundle())
    assert result.exit_code == 0, result.output
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == {"head", "blank", "noise"}
    head = by_name["head"]
    assert head["status"] == "ok" and head["n_slices"] == "1" and head["scan_score"] != "", head
    assert [r["slice"] for r in _rows(slices_csv_path(out)) if r["series"] == "head"] == ["0"]
    detail = json.loads((series_json_dir(out) / "head.json").read_text())
    assert any(w.startswith("1 image, fewer than a whole head CT") for w in detail["warnings"])
    assert by_name["blank"]["status"] == "rejected" and "uniform" in by_name["blank"]["error"]
    # noise, mapped onto the bundle's presentation first, still shows no head
    assert by_name["noise"]["status"] == "rejected" and "head shows on 0 of its 1 images" in by_name["noise"]["error"]
    assert "1 of its 1 images" not in by_name["noise"]["error"] and "at least 1 needed" in by_name["noise"]["error"]


def test_a_single_file_dicom_head_is_scored(tmp_path, dicom_factory):
    dicom_factory.head_series(tmp_path / "one", n=1, size=128, pixel_mm=1.6)
    dicom_factory.head_series(tmp_path / "two", n=2, size=128, pixel_mm=1.6)
    out = tmp_path / "out" / "scores.csv"
    result, rows = _scan_cli(tmp_path, out, _real_bundle())
    assert result.exit_code == 0, result.output
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert {k: (r["status"], r["n_slices"]) for k, r in by_name.items()} == {"one": ("ok", "1"), "two": ("ok", "2")}
    detail = json.loads((series_json_dir(out) / f"{safe_name(by_name['one']['series'])}.json").read_text())
    assert any(w.startswith("1 slice, fewer than a whole head CT") for w in detail["warnings"])
    assert any(w.startswith("single-slice series") for w in detail["warnings"])


def test_one_series_per_image_gives_a_row_per_image_and_resumes(tmp_path, image_writer):
    root = tmp_path / "loose"
    image_writer.png(root / "patient-a.png", 5, size=256)
    image_writer.png(root / "patient-b.png", 6, size=256)
    image_writer.png(root / "sub" / "c.png", 7, size=224)
    found = discover_series(root, one_series_per_image=True)
    assert [(s.key, s.n_slices, s.path.name) for s in found.series] == [
        ("patient-a.png", 1, "patient-a.png"), ("patient-b.png", 1, "patient-b.png"), ("sub/c.png", 1, "c.png")]
    assert [s.key for s in discover_series(root).series] == ["loose", "sub"]  # the default: a folder is a series
    out = tmp_path / "scores.csv"
    result, rows = _scan_cli(root, out, _real_bundle(), "--one-series-per-image")
    assert result.exit_code == 0, result.output
    assert sorted((r["series"], r["status"], r["n_slices"]) for r in rows) == [
        ("patient-a.png", "ok", "1"), ("patient-b.png", "ok", "1"), ("sub/c.png", "ok", "1")]
    slices = _rows(slices_csv_path(out))
    assert sorted((r["series"], r["slice"]) for r in slices) == [("patient-a.png", "0"), ("patient-b.png", "0"), ("sub/c.png", "0")]
    assert {r["source"] for r in slices} == {os.path.abspath(p) for p in (root / "patient-a.png", root / "patient-b.png", root / "sub" / "c.png")}
    # resume: nothing again; a new image: only it
    image_writer.png(root / "patient-d.png", 8, size=256)
    result, rows = _scan_cli(root, out, _real_bundle(), "--one-series-per-image")
    assert result.exit_code == 0, result.output
    assert "1 series scored" in result.output and "3 already in" in result.output
    assert sorted(r["series"] for r in rows) == ["patient-a.png", "patient-b.png", "patient-d.png", "sub/c.png"]
    assert "--one-series-per-image" in CliRunner().invoke(app, ["scan", "--help"]).output
