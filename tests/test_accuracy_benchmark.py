"""benchmarks/accuracy.py end to end on the small bundle and a three-series cohort."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")  # the small bundle is trained and exported here


def test_accuracy_tables_land_between_the_markers(load_benchmark, small_bundle, phantom_cohort, tmp_path, capsys):
    accuracy = load_benchmark("accuracy")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Kernels\n\nkept\n")
    args = ["--cohort", str(phantom_cohort), "--bundle", str(small_bundle.root), "--out", str(tmp_path / "acc"),
            "--resamples", "20", "--results", str(results)]
    assert accuracy.main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    methods = {line["method"]: line for line in lines if line["kind"] == "method"}
    assert set(methods) == {"isl", "d_score", "strided", "residual", "residual_patch", "residual_inset", "residual_adjacent"} and all(m["n"] == 3 for m in methods.values())
    partition = next(line for line in lines if line["kind"] == "partition")
    assert partition["slices"] > 0 and partition["slices_per_s"]["isl"] > 0
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Kernels\n\nkept\n")
    assert text.count(accuracy.MARK_START) == 1 and "### Partition ablation" in text and "| d_score |" in text and "| residual_patch |" in text
    # a second run resumes from per_series.jsonl and replaces the section instead of adding one
    rows = (tmp_path / "acc" / "per_series.jsonl").read_text()
    assert accuracy.main(args) == 0
    assert (tmp_path / "acc" / "per_series.jsonl").read_text() == rows
    assert results.read_text().count(accuracy.MARK_START) == 1
    # the isl table is made from the per-series isl scores (for this bundle, without a fusion: its scan scores)
    isl = {r["uid"]: r["isl"] for r in map(json.loads, rows.splitlines())}
    scores = (tmp_path / "acc" / "scores_isl.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0]: float(line.split(",")[1]) for line in scores} == pytest.approx(isl, rel=1e-8)
    # the rows belong to this bundle: a run with another stride (or bundle) refuses to mix into them
    with pytest.raises(SystemExit, match="another run.*stride.*remove it or pass another --out"):
        accuracy.main([*args, "--stride", "4"])
    assert (tmp_path / "acc" / "per_series.jsonl").read_text() == rows
