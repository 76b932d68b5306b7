"""A few real head-CT slices of PHE-SICH-CT-IDS end to end: inspect, scan, slice-level evaluate
with the data set's own labels and masks. The data live beside the project, never in it:
``../shared/data/phe-sich-ct-ids`` from the repository root (``ISL_RT_REAL_DATA`` points elsewhere);
the test skips with the reason when they are absent."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app

DATA = Path(os.environ.get("ISL_RT_REAL_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "phe-sich-ct-ids"))
pytestmark = pytest.mark.skipif(not (DATA / "labels.csv").is_file(), reason=f"the real data set is absent ({DATA}/labels.csv)")

#: (patient, slice numbers): 0001 from slice 0 (lesion on 12-18), 0030 from slice 45 (lesion on 53-57)
PICK = {"0001": range(10, 15), "0030": range(51, 56)}


def test_real_slices_scan_and_evaluate(image_bundle, tmp_path):
    with (DATA / "labels.csv").open(newline="") as handle:
        labels = {(r["patient"], int(r["slice"])): r for r in csv.DictReader(handle)}
    images = tmp_path / "images"
    for patient, numbers in PICK.items():
        (images / patient).mkdir(parents=True)
        for n in numbers:  # links, not copies: the images stay where they are
            os.symlink(DATA / labels[(patient, n)]["image"], images / patient / Path(labels[(patient, n)]["image"]).name)
    chosen = [labels[(p, n)] for p, numbers in PICK.items() for n in numbers]
    runner = CliRunner()
    # the test bundle's S = 32 averages the thin white skull below its bone level, so it would find no
    # cranial cavity on 512×512 slices: score whole slices here (a real bundle's S = 128 finds it)
    bundle = tmp_path / "bundle"
    shutil.copytree(image_bundle.root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["cavity"] = None
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    inspected = runner.invoke(app, ["inspect", str(images), "--json"])
    assert inspected.exit_code == 0, inspected.output
    entries = json.loads(inspected.output)
    assert [(e["status"], e["kind"], e["series"], e["n_slices"], e["matrix"], e["channels"]) for e in entries] == [
        ("ok", "image", p, 5, [512, 512], 1) for p in PICK]

    out = tmp_path / "scan" / "s.csv"
    scanned = runner.invoke(app, ["scan", str(images), "--bundle", str(bundle), "--out", str(out),
                                  "--heatmaps", str(tmp_path / "heat"), "--threads", "1"])
    assert scanned.exit_code == 0, scanned.output
    with (out.parent / "s.slices.csv").open(newline="") as handle:
        slices = list(csv.DictReader(handle))
    assert [Path(r["source"]).name for r in slices] == [Path(r["image"]).name for r in chosen]

    report = tmp_path / "report"
    evaluated = runner.invoke(app, ["evaluate", str(out), str(DATA / "labels.csv"), "--level", "slice", "--label-column",
                                    "lesion", "--heatmaps", str(tmp_path / "heat"), "--out", str(report), "--bootstrap", "50"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((report / "metrics.json").read_text())
    lesions = [r for r in chosen if r["lesion"] == "1"]
    assert result["n_slices"] == 10 and result["n_lesion"] == len(lesions) == 6  # joined through the links
    assert result["problems"]["labelled_but_not_scored"] == len(labels) - 10
    loc = result["localisation"]
    assert loc["available"] and loc["series_without_heatmaps"] == []
    assert loc["n_lesion_slices"] == sum(bool(r["mask"]) for r in lesions)
    assert loc["n_positive_pixels"] == sum(int(r["mask_pixels"]) for r in lesions if r["mask"])
    assert loc["n_negative_pixels"] == 10 * 512 * 512 - loc["n_positive_pixels"]
    assert 0.0 <= loc["pixel_auroc"] <= 1.0 and 0 <= loc["hits"] <= loc["n_lesion_slices"]


def test_accuracy_real_runs_the_protocol_on_validation_patients(image_bundle, tmp_path, capsys):
    """benchmarks/accuracy_real.py end to end on two validation patients (the figures use all 20
    test patients and a real bundle): every method gets its AUCs, localisation on both mask forms."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_real.py"
    spec = importlib.util.spec_from_file_location("accuracy_real", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundle = tmp_path / "bundle"  # whole slices: at S = 32 the thin skull is not found (see above)
    shutil.copytree(image_bundle.root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["cavity"] = None
    manifest["slice_threshold"] = {"slice_score": 0.5, "target_specificity": 0.95, "healthy_quantiles": {"0.5": 0.1, "0.9": 0.3, "0.95": 0.5, "0.99": 0.7},
                                   "n_healthy_slices": 1, "n_series": 1}  # any threshold: the flags are counted
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "acc"
    assert module.main(["--bundle", str(bundle), "--data", str(DATA), "--part", "val", "--patients", "2",
                        "--resamples", "20", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    split = json.loads((out / "split" / "split.json").read_text())
    chosen = split["parts"]["val"]["groups"][:2]
    with (DATA / "labels.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["patient"] in chosen]
    assert metrics["slices"] == len(rows) and metrics["lesion_slices"] == sum(r["lesion"] == "1" for r in rows)
    assert set(metrics["methods"]) == {"isl", "dscore", "residual", "residual_patch", "residual_inset", "residual_adjacent", "bright", "cavity"}
    for row in metrics["methods"].values():
        assert 0.0 <= row["auc"] <= 1.0
    hull, pieces, drawn = (metrics["slice_report"][f]["localisation"] for f in ("hull", "slice-hull", "none"))
    assert hull["available"] and pieces["available"] and drawn["available"]
    # filling only adds pixels, and one hull of the whole slice's mask holds each part's hull
    assert pieces["n_positive_pixels"] >= hull["n_positive_pixels"] >= drawn["n_positive_pixels"] > 0
    assert "| isl |" in text and "level-matched AUC" in text
    # where the maxima lie: every lesion slice with a mask once per localiser and mask; the grown
    # mask holds the hull, so a hit on the hull is a hit on it
    with_mask = sum(r["lesion"] == "1" and bool(r["mask"]) for r in rows)
    for by_mask in metrics["maxima"].values():
        assert by_mask["slice-hull"]["n"] == by_mask["grown"]["n"] == with_mask
        assert by_mask["slice-hull"]["hits"] <= by_mask["grown"]["hits"]
    assert "Where the maximum lies" in text
    # the false positives' table counts every lesion-free slice once by level and once by distance
    fp = metrics["false_positives"]
    lesion_free = sum(r["lesion"] == "0" for r in rows)
    levels = [g for g in fp["groups"] if "third" in g]
    assert sum(fp["groups"][g]["n"] for g in levels) == lesion_free == sum(c["n"] for g, c in fp["groups"].items() if g not in levels)
    assert fp["flagged"] == sum(fp["groups"][g]["flagged"] for g in levels)
