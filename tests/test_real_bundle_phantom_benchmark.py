"""benchmarks/real_bundle_phantom.py: the shipped real-data bundle scans a phantom cohort (DICOM CT)
through its brain window, and the tables come out per disorder type."""

import json


def test_the_real_bundle_scans_a_phantom_cohort_and_reports_each_type(phantom_cohort, tmp_path, capsys, load_benchmark):
    module = load_benchmark("real_bundle_phantom")
    out = tmp_path / "out"
    assert module.main(["--cohort", str(phantom_cohort), "--out", str(out), "--threads", "1", "--resamples", "20"]) == 0
    text = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rows"]) == 3 and metrics["not_scored"] == []
    assert {r["label"] for r in metrics["rows"]} == {0, 1}
    for row in metrics["rows"]:
        assert row["top"] >= row["scan"] >= 0.0 and row["level_shift"] is not None
    assert "3 of 3 series scored (3 scanned in this run" in text
    assert "| scan score (mean slice score) |" in text and "| top slice score |" in text
    assert "| any slice above the bundle's slice threshold: share of series (healthy series: " in text
    # an interrupted run continues: a second run scans nothing again; a site's own threshold from the
    # healthy series of a calibration cohort (here the same one) keeps every healthy series below it
    assert module.main(["--cohort", str(phantom_cohort), "--out", str(out), "--threads", "1", "--resamples", "20",
                        "--calibration-cohort", str(phantom_cohort)]) == 0
    text = capsys.readouterr().out
    assert "3 of 3 series scored (0 scanned in this run" in text
    assert "The site's threshold: top slice score" in text and "from the 2 healthy series of" in text
    assert "| top slice above the site's threshold: share of series (healthy series: 0.00) |" in text
