"""`isl-rt demo` on a tiny cohort with the small test bundle."""

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app

pytest.importorskip("torch")  # the small bundle is trained and exported here


def test_demo_prints_the_table_and_the_auc(small_bundle, tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--scans", "2", "--bundle", str(small_bundle.root), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "cohort AUC" in result.output and "PASSED" in result.output
    assert "series_0001" in result.output and "healthy" in result.output
    assert (tmp_path / "demo" / "scores.csv").is_file() and (tmp_path / "demo" / "cohort" / "labels.csv").is_file()
    index = tmp_path / "demo" / "report" / "index.html"
    assert f"open {index.resolve()}" in result.output and "report: 2 series pages," in result.output
    assert len(list((tmp_path / "demo" / "report" / "series").glob("*.html"))) == 2
    assert ">Label</button>" in index.read_text()  # the cohort's labels beside the scores


def test_demo_without_a_bundle_names_the_fix(tmp_path, monkeypatch):
    from isl_rt import bundle as bundle_lib

    def missing(name=bundle_lib.DEFAULT_BUNDLE):
        raise bundle_lib.BundleError(f"The shipped bundle {name!r} is not installed; pass --bundle PATH or reinstall isl-rt.")

    monkeypatch.setattr(bundle_lib, "default_bundle_path", missing)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and "--bundle PATH" in result.output
