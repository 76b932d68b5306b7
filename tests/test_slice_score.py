"""What scores a slice: the DRN (the paper) or the signed reconstruction residual."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.backends import open_backends
from isl_rt.bundle import SliceScoreSpec, load_bundle, set_slice_score
from isl_rt.cli import app
from isl_rt.errors import BundleError
from isl_rt.io.series import discover_series, load_series
from isl_rt.pipeline import MIN_REGION_FRACTION, Scorer, params_from_bundle, residual_scores


def test_residual_scores_count_bright_residual_inside_the_region():
    x = np.zeros((2, 2, 4, 4), dtype=np.float32)
    x_dd = np.zeros_like(x)
    x[0, 0, 0, 0] = 0.5  # brighter than painted by 0.5: counts
    x[0, 0, 1, 1] = 0.05  # by 0.05 only: below the threshold
    x_dd[0, 0, 2, 2] = 0.9  # darker than painted: never counts
    x[0, 1, 3, 3] = 0.9  # in the other channel: not the scored one
    x[1, 0, 0, 0] = x[1, 0, 3, 3] = 0.6
    region = np.ones((2, 4, 4), dtype=np.float32)
    region[1, 3, 3] = 0  # outside the cavity
    scores, positive = residual_scores(x, x_dd, region, (0, 0.1))
    assert scores.dtype == np.float32 and scores.tolist() == [1 / 16, 1 / 16]
    assert positive[0, 0, 0, 0] == pytest.approx(0.5) and positive[0, 0, 2, 2] == 0 and positive[1, 0, 3, 3] == 0
    assert residual_scores(x, x_dd, None, (0, 0.1))[0].tolist() == [1 / 16, 2 / 16]


def test_the_largest_measure_scores_the_largest_four_connected_patch():
    x = np.zeros((3, 1, 6, 6), dtype=np.float32)
    x_dd = np.zeros_like(x)
    x[0, 0, 0, 0:3] = 0.5  # a patch of 3
    x[0, 0, 4, 4] = x[0, 0, 5, 5] = 0.5  # touching corners only: two patches of 1 (4-connected)
    x[1, 0, 1:3, 1:3] = 0.5  # a 2x2 patch (4) ...
    x[1, 0, 5, 0:5] = 0.5  # ... and a line of 5, which is the largest
    x[1, 0, 5, 2] = 0.05  # below the threshold: the line is broken into 2 and 2
    # slice 2: nothing bright
    scores, positive = residual_scores(x, x_dd, None, (0, 0.1, "largest"))
    assert scores.dtype == np.float32 and scores.tolist() == pytest.approx([3 / 36, 4 / 36, 0.0])
    assert residual_scores(x, x_dd, None, (0, 0.1, "area"))[0].tolist() == pytest.approx([5 / 36, 8 / 36, 0.0])
    assert np.array_equal(positive, residual_scores(x, x_dd, None, (0, 0.1))[1])
    region = np.ones((3, 6, 6), dtype=bool)
    region[0, 0, 1] = False  # cuts the patch of 3 into 1 and 1
    assert residual_scores(x, x_dd, region, (0, 0.1, "largest"))[0][0] == pytest.approx(1 / 36)


def test_the_inset_leaves_out_the_pixels_along_the_region_border():
    from isl_rt.pipeline import inset_region

    region = np.zeros((1, 12, 12), dtype=bool)
    region[0, 1:11, 1:11] = True  # a 10x10 region
    assert inset_region(region, 0).sum() == 100 and inset_region(region, 1).sum() == 64
    assert inset_region(region, 2)[0, 3:9, 3:9].all() and inset_region(region, 2).sum() == 36
    full = np.ones((1, 6, 6), dtype=bool)
    assert inset_region(full, 1).sum() == 16  # outside the slice counts as outside
    x = np.zeros((1, 1, 12, 12), dtype=np.float32)
    x[0, 0, 1, 1:11] = 0.5  # a bright line along the border: the DeDN's error at the skull
    x[0, 0, 5:7, 5:7] = 0.5  # a compact bright patch well inside
    x_dd = np.zeros_like(x)
    assert residual_scores(x, x_dd, region, (0, 0.1, "largest"))[0][0] == pytest.approx(10 / 144)
    scores, positive = residual_scores(x, x_dd, region, (0, 0.1, "largest", 2))
    assert scores[0] == pytest.approx(4 / 144) and positive[0, 0, 1].sum() == 0 and positive[0, 0, 5:7, 5:7].all()
    assert residual_scores(x, x_dd, None, (0, 0.1, "largest", 2))[0][0] == pytest.approx(10 / 144)  # no region, no inset


def test_adjacent_counts_only_pixels_bright_on_the_slice_before_or_after():
    from isl_rt.pipeline import adjacent_support

    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    x[0:2, 0, 1:3, 1:3] = 0.5  # a 2x2 patch on slices 0 and 1: a volume
    x[1, 0, 5:8, 5:8] = 0.5  # a 3x3 patch on slice 1 alone: a speck of the DeDN
    x[2, 0, 0:2, 0] = 0.5  # on slice 2, one pixel of it also on slice 3 ...
    x[3, 0, 1, 0] = 0.5  # ... below it
    x[3, 0, 6, 6] = 0.5  # slice 3 only
    x_dd = np.zeros_like(x)
    scores, positive = residual_scores(x, x_dd, None, (0, 0.1, "largest", 0, True))
    assert scores.tolist() == pytest.approx([4 / 64, 4 / 64, 1 / 64, 1 / 64])
    assert residual_scores(x, x_dd, None, (0, 0.1, "largest", 0, False))[0].tolist() == pytest.approx([4 / 64, 9 / 64, 2 / 64, 1 / 64])
    assert positive[1, 0, 5:8, 5:8].sum() == 0 and positive[3, 0, 6, 6] == 0  # the heat map shows what counts
    assert positive[0, 0, 1:3, 1:3].sum() == pytest.approx(2.0)
    one = np.zeros((1, 3, 3), dtype=bool)
    one[0, 1, 1] = True
    assert np.array_equal(adjacent_support(one), one)  # a series of one slice: scored as the slice alone
    assert adjacent_support(np.zeros((0, 3, 3), dtype=bool)).shape == (0, 3, 3)


@pytest.fixture()
def residual_bundle(small_bundle, tmp_path):
    root = tmp_path / "residual"
    shutil.copytree(small_bundle.root, root)
    return set_slice_score(root, SliceScoreSpec("residual", 0.1, "brain"))


def test_a_residual_bundle_scores_slices_by_the_residual_without_the_drn(residual_bundle, small_bundle, phantom_cohort):
    assert residual_bundle.manifest.threshold is None and residual_bundle.manifest.slice_threshold is None
    assert residual_bundle.manifest.files == small_bundle.manifest.files
    [item, *_] = discover_series(phantom_cohort).of_kind("hu")
    series = load_series(item)
    with open_backends(residual_bundle, "onnxruntime", threads=1) as pair:
        scores = Scorer(params_from_bundle(residual_bundle), pair.dedn, pair.drn).score_series(series)
    assert "drn" not in scores.seconds
    expected, positive = residual_scores(scores.x, scores.inpainted, scores.region, (0, 0.1))
    # slices without a cranial cavity (the phantom's skull base) are not scored: NaN, not the 0 of an empty residual
    unscored = scores.region.mean(axis=(1, 2)) < MIN_REGION_FRACTION
    assert unscored.any() and not unscored.all()
    np.testing.assert_array_equal(np.isnan(scores.slice_scores), unscored)
    np.testing.assert_array_equal(scores.slice_scores[~unscored], expected[~unscored])
    assert all(scores.reason(i).startswith("not scored: ") == bool(u) for i, u in enumerate(unscored))
    assert np.nanmax(scores.slice_scores) > 0  # the tiny DeDN leaves bright residue somewhere
    with open_backends(small_bundle, "onnxruntime", threads=1) as pair:
        drn = Scorer(params_from_bundle(small_bundle), pair.dedn, pair.drn).score_series(series)
    np.testing.assert_array_equal(drn.inpainted, scores.inpainted)  # the same DeDN pass
    assert not np.array_equal(drn.slice_scores, scores.slice_scores)


def test_the_slice_score_is_recorded_shown_and_checked(residual_bundle, tmp_path):
    shown = CliRunner().invoke(app, ["info", "--bundle", str(residual_bundle.root)])
    assert shown.exit_code == 0
    assert "slice score: residual: share of the slice where window 'brain' is brighter" in shown.output
    with pytest.raises(BundleError, match="window 'bone2'"):
        set_slice_score(residual_bundle.root, SliceScoreSpec("residual", 0.1, "bone2"))
    manifest = residual_bundle.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["slice_score"]["threshold"] = 1.5
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"slice_score threshold 1.5, which is not in \(0, 1\)"):
        load_bundle(residual_bundle.root)


def test_a_manifest_without_a_measure_reads_as_area_and_the_measure_is_written(residual_bundle):
    assert residual_bundle.manifest.slice_score_spec.measure == "area"
    manifest = residual_bundle.root / "manifest.json"
    data = json.loads(manifest.read_text())
    assert data["slice_score"]["measure"] == "area"
    del data["slice_score"]["measure"]  # as bundles written before the measure existed
    manifest.write_text(json.dumps(data))
    assert load_bundle(residual_bundle.root).manifest.slice_score_spec.measure == "area"
    assert load_bundle(residual_bundle.root).manifest.slice_score_spec.inset == 0
    patch = set_slice_score(residual_bundle.root, SliceScoreSpec("residual", 0.1, "brain", "largest", 3))
    assert json.loads(manifest.read_text())["slice_score"]["inset"] == 3
    assert params_from_bundle(patch).residual == (0, pytest.approx(0.1), "largest", 3, False)
    assert load_bundle(residual_bundle.root).manifest.slice_score_spec.adjacent is False
    both = set_slice_score(residual_bundle.root, SliceScoreSpec("residual", 0.1, "brain", "largest", 3, True))
    assert json.loads(manifest.read_text())["slice_score"]["adjacent"] is True
    assert params_from_bundle(both).residual == (0, pytest.approx(0.1), "largest", 3, True)
    assert "and at the same place on an adjacent slice" in both.manifest.slice_score_spec.describe()
    assert "less 3 px along its border" in patch.manifest.slice_score_spec.describe()
    assert "largest 4-connected patch" in patch.manifest.slice_score_spec.describe()
    with pytest.raises(BundleError, match="measure 'biggest'"):
        set_slice_score(residual_bundle.root, SliceScoreSpec("residual", 0.1, "brain", "biggest"))
    with pytest.raises(BundleError, match="inset -1"):
        set_slice_score(residual_bundle.root, SliceScoreSpec("residual", 0.1, "brain", "largest", -1))
    data = json.loads(manifest.read_text())
    data["slice_score"]["inset"] = 1.5
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="inset"):
        load_bundle(residual_bundle.root)
    data["slice_score"]["inset"], data["slice_score"]["adjacent"] = 3, "yes"
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="adjacent"):
        load_bundle(residual_bundle.root)


def test_the_slice_score_option_reads_the_measure():
    from isl_rt.cli.train import _parse_slice_score

    assert _parse_slice_score("residual") == SliceScoreSpec("residual", 0.1, "", "largest")
    assert _parse_slice_score("residual:0.2:gray:area") == SliceScoreSpec("residual", 0.2, "gray", "area")
    assert _parse_slice_score("residual::gray:") == SliceScoreSpec("residual", 0.1, "gray", "largest")
    assert _parse_slice_score("residual:0.1:gray:largest:4") == SliceScoreSpec("residual", 0.1, "gray", "largest", 4)
    assert _parse_slice_score("residual:0.1:gray:largest:4:adjacent") == SliceScoreSpec("residual", 0.1, "gray", "largest", 4, True)
    assert _parse_slice_score("residual:0.1:gray::4:") == SliceScoreSpec("residual", 0.1, "gray", "largest", 4, False)


@pytest.mark.parametrize("value", ["dnr", "residual:x", "residual:0.1:brain:more", "residual:0.1:brain:area:x", "residual:0.1:brain:area:1:2", "residual:0.1:brain:area:1:yes",
                                   "residual:0.1:brain:area:1:adjacent:3",
                                   "residual:0.1:brain:area:-1", "drn:0.1"])
def test_export_refuses_a_bad_slice_score_in_one_sentence(value, tmp_path):
    pytest.importorskip("torch")
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "b"), "--slice-score", value])
    assert result.exit_code == 1 and "Traceback" not in result.output and "--slice-score" in result.output


def test_no_path_turns_a_missing_cranial_cavity_into_a_score(image_bundle, image_writer, tmp_path):
    """A slice whose cranial cavity is not found has no score anywhere (slices CSV, per-series JSON,
    scan score), only its reason; a series with too few such slices is rejected, not scored 0."""
    import csv
    import json

    from PIL import Image

    from isl_rt.backends import open_backends
    from isl_rt.outputs import safe_name, slices_csv_path
    from isl_rt.pipeline import scan_directory, series_json_dir

    root = tmp_path / "tree"
    # heads whose cavity the 32-px bundle finds, and two black slices (no head, no cavity) between them
    for i, seed in enumerate((7001, 7005, 7007, 7008)):
        image_writer.png(root / "partly" / f"{2 * i + 1}.png", seed)
    for name in ("2.png", "4.png"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "partly" / name)
    # heads the input gate accepts but whose skull the bundle's cavity rule does not close at 32 px
    for i, seed in enumerate((7000, 7002, 7003, 7004, 7009, 7011)):
        image_writer.png(root / "nocavity" / f"{i + 1}.png", seed)
    out = tmp_path / "scores.csv"
    with open_backends(image_bundle, "onnxruntime", threads=1) as pair:
        summary = scan_directory(root, out, image_bundle, Scorer(params_from_bundle(image_bundle), pair.dedn, pair.drn),
                                 backend_name=pair.name)
    assert summary.ok == 1 and summary.rejected == 1
    with out.open(newline="") as handle:
        rows = {r["series"]: r for r in csv.DictReader(handle)}
    with slices_csv_path(out).open(newline="") as handle:
        every_slice = list(csv.DictReader(handle))
    slices = [r for r in every_slice if r["series"] == "partly"]
    row = rows["partly"]
    assert row["status"] == "ok" and row["n_slices"] == "6" and row["n_scored"] == "4"
    blank = [r for r in slices if r["slice"] in ("1", "3")]
    assert all(r["slice_score"] == r["apds"] == r["flagged"] == "" for r in blank)
    assert all(r["reason"] == "not scored: no cranial cavity found (no skull enclosing brain on this slice)" for r in blank)
    scored = [float(r["slice_score"]) for r in slices if r["slice"] not in ("1", "3")]
    assert all(r["reason"] == "" for r in slices if r["slice"] not in ("1", "3"))
    assert float(row["scan_score"]) == pytest.approx(float(np.mean(scored)), rel=1e-6)
    assert row["top_slice"] not in ("1", "3")
    detail = json.loads((series_json_dir(out) / f"{safe_name('partly')}.json").read_text())
    assert [s is None for s in detail["slice_scores"]] == [False, True, False, True, False, False]
    assert [a is None for a in detail["slice_apds"]] == [False, True, False, True, False, False]
    refused = rows["nocavity"]
    assert refused["status"] == "rejected" and refused["scan_score"] == "" and refused["n_scored"] == ""
    assert "only 0 of its 6 slices show a cranial cavity the bundle can find" in refused["error"]
    assert not [r for r in every_slice if r["series"] == "nocavity"]
