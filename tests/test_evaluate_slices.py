"""`isl-rt evaluate --level slice`: the join, the AUC, size groups and localisation, on hand-made
files whose every figure is computed by hand (or by scikit-learn) here."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from isl_rt import metrics
from isl_rt.cli import app
from isl_rt.errors import InputError
from isl_rt.evaluate_slices import evaluate_slices, read_slice_labels

H = W = 8
#: (series, slice, score, flagged, label, mask box (y0, y1, x0, x1) or None)
SLICES = [
    ("s1", 0, 0.1, "0", 0, None),
    ("s1", 1, 0.9, "1", 1, (2, 4, 2, 4)),  # 4 px, medium
    ("s1", 2, 0.4, "0", 0, None),
    ("s1", 3, 0.6, "1", 1, (4, 7, 4, 7)),  # 9 px, large
    ("s2", 0, 0.3, "0", 1, (5, 6, 5, 6)),  # 1 px, small
    ("s2", 1, 0.8, "1", 1, None),  # a lesion without a mask
]


def _heat():
    """Heat maps of s1 (s2 has none): the maximum inside the scored region is in the mask of
    slice 1 (a higher value outside the region must not count) and outside the mask of slice 3."""
    rng = np.random.default_rng(0)
    heat = rng.uniform(0, 0.5, (4, H, W)).astype(np.float16)
    heat[1, 3, 3] = 0.9
    heat[1, 0, 0] = 1.0  # outside the region
    heat[3, 1, 1] = 0.95
    region = np.zeros((4, H, W), np.uint8)
    region[:, 1:7, 1:7] = 1
    return heat, region


@pytest.fixture()
def cohort(tmp_path):
    images = tmp_path / "images"
    labels_dir = tmp_path / "labels"
    (labels_dir / "masks").mkdir(parents=True)
    slice_rows = [["series", "slice", "source", "slice_score", "apds", "flagged"]]
    label_rows = [["image", "lesion", "mask"]]
    for series, index, score, flagged, label, box in SLICES:
        source = images / series / f"{index}.png"
        slice_rows.append([series, index, str(source), score, 0.0, flagged])
        mask = ""
        if box is not None:
            m = np.zeros((H, W), np.uint8)
            y0, y1, x0, x1 = box
            m[y0:y1, x0:x1] = 255
            mask = f"masks/{series}_{index}.png"
            Image.fromarray(m).save(labels_dir / mask)
        label_rows.append([os.path.relpath(source, labels_dir), label, mask])
    slice_rows.append(["s3", 0, str(images / "s3" / "0.png"), 0.5, 0.0, "0"])  # scored, not labelled
    label_rows.append(["../images/s9/0.png", 0, ""])  # labelled, not scored
    for path, rows in ((tmp_path / "s.slices.csv", slice_rows), (labels_dir / "labels.csv", label_rows)):
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    (tmp_path / "s.csv").write_text("path,series,SeriesInstanceUID,scan_score,status\n")
    heat, region = _heat()
    (tmp_path / "heat" / "s1").mkdir(parents=True)
    np.savez_compressed(tmp_path / "heat" / "s1" / "heatmaps.npz", heat=heat, region=region)
    return tmp_path


def test_slice_report_against_hand_computed_figures(cohort):
    result = evaluate_slices(cohort / "s.slices.csv", cohort / "labels" / "labels.csv", cohort / "report",
                             label_column="lesion", heatmaps=cohort / "heat", resamples=200)
    assert result["n_slices"] == 6 and result["n_lesion"] == 4 and result["n_healthy"] == 2 and result["n_series"] == 2
    assert result["auc"] == pytest.approx(7 / 8)  # lesions .9 .6 .3 .8 against .1 .4
    assert result["bundle_threshold"] == {"sensitivity": 0.75, "specificity": 1.0}
    assert result["problems"]["scored_but_not_labelled"] == 1 and result["problems"]["labelled_but_not_scored"] == 1
    sizes = result["by_size"]
    assert {k: (v["n"], v["auc"], v["area_pixels"]) for k, v in sizes.items()} == {
        "small": (1, 0.5, [1, 1]), "medium": (1, 1.0, [4, 4]), "large": (1, 1.0, [9, 9]), "no mask": (1, 1.0, None)}
    assert sizes["medium"]["hit_rate"] == 1.0 and sizes["large"]["hit_rate"] == 0.0 and sizes["small"]["hit_rate"] is None

    loc = result["localisation"]
    assert loc["available"] and loc["series_without_heatmaps"] == ["s2"]
    assert loc["hits"] == 1 and loc["n_lesion_slices"] == 2 and loc["hit_rate"] == 0.5
    # the miss: slice 3's maximum at (1, 1), its mask from (4, 4)
    assert loc["n_miss_distances"] == 1 and loc["miss_distance_median"] == pytest.approx(np.sqrt(18))
    assert "a median of 4.2 pixels (source grid)" in (cohort / "report" / "report.md").read_text()
    heat, region = _heat()
    truth, values, lesion_truth, lesion_values = [], [], [], []
    for index, (_, _, _, _, label, box) in enumerate(SLICES[:4]):
        mask = np.zeros((H, W), bool)
        if box is not None:
            mask[box[0]:box[1], box[2]:box[3]] = True
        inside = region[index] > 0
        truth += list(mask[inside])
        values += list(heat[index][inside].astype(np.float64))
        if label:
            lesion_truth += list(mask[inside])
            lesion_values += list(heat[index][inside].astype(np.float64))
    assert loc["pixel_auroc"] == pytest.approx(roc_auc_score(truth, values), abs=1e-12)
    assert loc["pixel_auroc_lesion_slices"] == pytest.approx(roc_auc_score(lesion_truth, lesion_values), abs=1e-12)
    assert loc["n_positive_pixels"] == 4 + 9 and loc["mask_pixels_outside_region"] == 0
    written = json.loads((cohort / "report" / "metrics.json").read_text())
    assert written["auc"] == result["auc"]
    assert (cohort / "report" / "roc.png").is_file() and (cohort / "report" / "roc_by_size.png").is_file()
    report = (cohort / "report" / "report.md").read_text()
    assert "heat maps missing** for 1 series" in report and "AUC 0.875" in report


def test_cli_finds_the_slices_csv_beside_the_scores_csv(cohort):
    result = CliRunner().invoke(app, ["evaluate", str(cohort / "s.csv"), str(cohort / "labels" / "labels.csv"),
                                      "--level", "slice", "--label-column", "lesion", "--out", str(cohort / "r"),
                                      "--bootstrap", "50", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["auc"] == pytest.approx(7 / 8) and data["localisation"]["available"] is False
    assert "--heatmaps" in data["localisation"]["reason"]


def test_series_and_slice_labels_and_no_slice_threshold(cohort):
    labels = cohort / "by_index.csv"
    rows = ["series,slice,label"] + [f"{s},{i},{label}" for s, i, _, _, label, _ in SLICES]
    labels.write_text("\n".join(rows) + "\n")
    text = (cohort / "s.slices.csv").read_text().splitlines()
    (cohort / "unflagged.slices.csv").write_text("\n".join([text[0]] + [line.rsplit(",", 1)[0] + "," for line in text[1:]]) + "\n")
    result = evaluate_slices(cohort / "unflagged.slices.csv", labels, cohort / "r2", resamples=50)
    assert result["auc"] == pytest.approx(7 / 8) and result["bundle_threshold"] is None
    assert list(result["by_size"]) == ["no mask"]  # no mask column: one group
    assert result["by_size"]["no mask"]["sensitivity_at_bundle"] is None
    assert "none (the bundle has no slice threshold)" in (cohort / "r2" / "report.md").read_text()


@pytest.mark.parametrize(("content", "message"), [
    ("image,label\na.png,1\na.png,0\n", "line 3: a.png is labelled again"),
    ("image,label\na.png,2\n", "label '2' is not 0"),
    ("image,lesion\na.png,1\n", "lacks the column\\(s\\) label"),
    ("name,label\na.png,1\n", "names neither an image path"),
    ("series,slice,label\ns1,first,1\n", "is not a slice index"),
    ("series,slice,label\ns1,0,1\ns1,0,1\n", "series s1 slice 0 is labelled again"),
    ("series,slice,lesion\ns1,0,1\n", "has no label column 'label'"),
])
def test_bad_labels_are_refused_in_one_sentence(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_slice_labels(path)


def test_pixel_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    heat = rng.choice(np.array([0, 0.25, 0.5, 0.5009765625, 1.0, 3.0], np.float16), size=5000)
    heat[:10] = -0.0
    lesion = rng.random(5000) < 0.2
    acc = metrics.PixelAuc()
    acc.add(heat[:2000], lesion[:2000])
    acc.add(heat[2000:], lesion[2000:])
    assert acc.auc() == pytest.approx(roc_auc_score(lesion, heat.astype(np.float64)), abs=1e-12)
    assert np.isnan(metrics.PixelAuc().auc())
    with pytest.raises(InputError):
        acc.add(np.array([-1.0]), np.array([True]))


def test_heat_hit():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    heat = np.zeros((4, 4))
    assert not metrics.heat_hit(heat, mask)  # nothing localised
    heat[1, 2] = 0.5
    assert metrics.heat_hit(heat, mask)
    heat[3, 3] = 0.7
    assert not metrics.heat_hit(heat, mask)


def test_heat_distance():
    mask = np.zeros((6, 6), bool)
    mask[4, 1:3] = True
    heat = np.zeros((6, 6))
    assert metrics.heat_distance(heat, mask) is None  # nothing localised
    heat[4, 2] = 0.5
    assert metrics.heat_distance(heat, mask) == 0.0
    heat[1, 5] = 0.7  # 3 rows up, 3 columns right of (4, 2)
    assert metrics.heat_distance(heat, mask) == pytest.approx(np.sqrt(18))
    assert metrics.heat_distance(heat, np.zeros((6, 6), bool)) is None


def test_bootstrap_by_group_widens_the_interval_of_repeated_items():
    rng = np.random.default_rng(1)
    y = np.repeat(rng.integers(0, 2, 40), 10)
    s = np.repeat(rng.normal(size=40), 10) + y * 0.5
    groups = np.repeat(np.arange(40), 10)
    by_item = metrics.bootstrap_auc(y, s, resamples=300)
    by_group = metrics.bootstrap_auc(y, s, resamples=300, groups=groups)
    assert by_group.high - by_group.low > 1.5 * (by_item.high - by_item.low)
    with pytest.raises(InputError, match="group ids"):
        metrics.bootstrap_auc(y, s, groups=groups[:5])


def test_fill_mask_fills_each_part_to_its_convex_hull():
    from isl_rt.errors import InputError
    from isl_rt.evaluate_slices import fill_mask

    ring = np.zeros((20, 20), dtype=bool)
    ring[2:9, 2:9] = True
    ring[4:7, 4:7] = False  # an oedema ring: the haematoma inside is not drawn
    ring[4:7, 8] = False  # open on one side
    dot = np.zeros_like(ring)
    dot[15, 15] = True
    mask = ring | dot
    filled = fill_mask(mask, "hull")
    assert filled[2:9, 2:9].all() and filled[15, 15]
    assert filled.sum() == 49 + 1  # nothing between the two parts is filled
    assert fill_mask(mask, "none") is mask
    with pytest.raises(InputError):
        fill_mask(mask, "round")


def test_slice_hull_fills_a_ring_drawn_in_pieces():
    from isl_rt.evaluate_slices import fill_mask

    ring = np.zeros((20, 20), dtype=bool)
    ring[2:12, 2:12] = True
    ring[4:10, 4:10] = False  # the blood inside the ring is not drawn
    ring[2:12, 6:8] = False  # and the ring is drawn as a left and a right piece
    assert not fill_mask(ring, "hull")[6, 6]  # each piece's own hull leaves the blood out
    filled = fill_mask(ring, "slice-hull")
    assert filled[2:12, 2:12].all() and filled.sum() == 100  # one hull of both pieces: the 10x10 square
    empty = np.zeros((5, 5), dtype=bool)
    assert not fill_mask(empty, "slice-hull").any()
