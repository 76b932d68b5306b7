"""benchmarks/unscored_phantom.py in its quick mode: the same series scored with every slice (the
old rule) and with slices without a cranial cavity not scored."""

import json


def test_unscored_phantom_quick(small_bundle, phantom_cohort, tmp_path, capsys, load_benchmark):
    module = load_benchmark("unscored_phantom")
    assert module.main(["--cohort", str(phantom_cohort), "--before", str(small_bundle.root), "--quick",
                        "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    before, after = (json.loads(line) for line in lines[:2])
    assert before["every_slice"] and not after["every_slice"]
    assert before["series"] == after["series"] == 3 and before["slices"] == after["slices"]
    assert before["not_scored"] == 0 < after["not_scored"]  # the phantom's vertex slices have no cavity
    assert "auc" in before and "auc" in after
    assert any(line.startswith("| slices without a cavity not scored |") for line in lines)
