"""`isl-rt evaluate` on a hand-made labelled cohort."""

import csv
import json

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.evaluate import evaluate
from isl_rt.outputs import ScoreTable

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _cohort(tmp_path, *, with_error=True):
    """12 healthy scans around 1.0, 12 disorder scans of two types higher, one error row, one
    scan without label and one label without scan."""
    import numpy as np

    rng = np.random.default_rng(0)
    labels = [("uid", "label", "disorder_type", "size_class", "urgency")]
    scores = tmp_path / "scores.csv"
    with ScoreTable(scores) as table:
        for i in range(12):
            table.append({"SeriesInstanceUID": f"h{i}", "scan_score": 1.0 + 0.3 * rng.normal(), "flagged": False, "status": "ok"})
            labels.append((f"h{i}", 0, "healthy", "", ""))
        for i in range(12):
            kind, size, urgency = ("subdural", "large", "high") if i % 2 else ("lacune", "small", "low")
            shift = 1.2 if kind == "subdural" else 0.4
            table.append({"SeriesInstanceUID": f"d{i}", "scan_score": 1.0 + shift + 0.3 * rng.normal(), "flagged": True, "status": "ok"})
            labels.append((f"d{i}", 1, kind, size, urgency))
        if with_error:
            table.append({"SeriesInstanceUID": "bad", "path": "/x", "status": "error", "error": "truncated file"})
            table.append({"path": "/notes.txt", "status": "skipped", "error": "skipped: not a DICOM file"})
        table.append({"SeriesInstanceUID": "nolabel", "scan_score": 2.0, "status": "ok"})
    labels.append(("unscored", 1, "subdural", "large", "high"))
    labels_csv = tmp_path / "labels.csv"
    with labels_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("SeriesInstanceUID",) + labels[0][1:])
        writer.writerows(labels[1:])
    return scores, labels_csv


def test_report_json_and_plots(tmp_path):
    scores, labels = _cohort(tmp_path)
    result = evaluate(scores, labels, tmp_path / "eval", resamples=200)
    with scores.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok" and r["SeriesInstanceUID"] != "nolabel"]
    y = [0 if r["SeriesInstanceUID"].startswith("h") else 1 for r in rows]
    s = [float(r["scan_score"]) for r in rows]
    assert result["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s))
    assert set(result["by_disorder"]) == {"subdural", "lacune"}
    assert result["by_disorder"]["subdural"]["auc"] > result["by_disorder"]["lacune"]["auc"]
    assert set(result["by_size"]) == {"large", "small"} and set(result["by_urgency"]) == {"high", "low"}
    assert result["bundle_threshold"] == {"sensitivity": 1.0, "specificity": 1.0}
    low, high = result["auc_ci95"]
    assert low <= result["auc"] <= high
    assert result["problems"]["error_rows"] == ["bad: truncated file"]
    assert result["problems"]["skipped_rows"] == ["/notes.txt: skipped: not a DICOM file"]
    assert result["problems"]["missing_in_labels"] == ["nolabel"]
    assert result["problems"]["missing_in_scores"] == ["unscored"]
    out = tmp_path / "eval"
    assert json.loads((out / "metrics.json").read_text())["auc"] == pytest.approx(result["auc"])
    report = (out / "report.md").read_text()
    assert "By lesion size" in report and "truncated file" in report
    for png in ("roc.png", "roc_by_disorder.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_cli_evaluate_json(tmp_path):
    scores, labels = _cohort(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", str(scores), str(labels), "--out", str(tmp_path / "e"), "--bootstrap", "50", "--json"])
    assert result.exit_code == 0, result.output
    assert 0.5 < json.loads(result.output)["auc"] <= 1.0


def test_one_class_only_is_a_clear_error(tmp_path):
    scores = tmp_path / "scores.csv"
    with ScoreTable(scores) as table:
        table.append({"SeriesInstanceUID": "h0", "scan_score": 1.0, "status": "ok"})
    labels = tmp_path / "labels.csv"
    labels.write_text("SeriesInstanceUID,label\nh0,0\n")
    with pytest.raises(InputError, match="0 disorder scans"):
        evaluate(scores, labels, tmp_path / "e")
    result = CliRunner().invoke(app, ["evaluate", str(scores), str(labels), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "needs healthy and disorder scans" in result.output


def test_missing_columns_and_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks the column"):
        evaluate(bad, bad, tmp_path / "e")
    with pytest.raises(InputError, match="does not exist"):
        evaluate(tmp_path / "none.csv", bad, tmp_path / "e")


def test_a_series_labelled_twice_differently_is_refused(tmp_path):
    """It was accepted, the last row winning, so a labelling mistake changed the AUC silently."""
    scores, labels_csv = _cohort(tmp_path)
    with labels_csv.open("a") as handle:
        handle.write("h3,1,subdural,large,high\n")
    with pytest.raises(InputError, match="labels series h3 both 0 and 1"):
        evaluate(scores, labels_csv, tmp_path / "e")
    result = CliRunner().invoke(app, ["evaluate", str(scores), str(labels_csv), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "keep one row per series" in result.output and "Traceback" not in result.output
