"""The HTML report without a browser: what `scan --report` and `report` write, escaping, file
names, the notes for missing heat maps or sources, and the pieces (heat colours, windows,
image series). The browser drives the pages in test_report_browser.py."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.report import pages, pictures, source


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _series_data(page: Path) -> dict:
    """The JSON block a series page hands its script."""
    match = re.search(r'<script id="series-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    assert match, page
    return json.loads(match.group(1))


def _copy_scan(scan: dict, to: Path) -> Path:
    """A copy of the scan outputs (CSV, series JSON, heat maps) under ``to``; returns the CSV."""
    out = scan["scores"].parent
    for name in ("scores.csv", "scores.series", "scores.heatmaps"):
        src = out / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, to / name)
    return to / "scores.csv"


def test_scan_report_writes_a_page_per_scored_series_with_its_slices_and_heat(scanned_report):
    report, rows = scanned_report["report"], _rows(scanned_report["scores"])
    slices_csv = scanned_report["scores"].with_name("scores.slices.csv")
    assert f"open {(report / 'index.html').resolve()}" in scanned_report["output"]
    assert "report: 2 series pages, 1 error rows, 1 skipped" in scanned_report["output"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2 and {r["status"] for r in rows} == {"ok", "error", "skipped"}
    index = (report / "index.html").read_text()
    for row in ok:
        key = source.series_key(row)
        page = report / "series" / f"{key}.html"
        data = _series_data(page)
        n = int(row["n_slices"])
        assert data["n"] == n == 12 and data["start"] == int(row["top_slice"])
        assert [Path(s).name for s in data["slices"]] == [f"s{i:03d}.png" for i in range(n)]
        assert [Path(h).name for h in data["heats"]] == [f"h{i:03d}.png" for i in range(n)]
        for link in data["slices"] + data["heats"]:
            assert (page.parent / link).is_file(), link
        with Image.open(page.parent / data["slices"][0]) as im:
            assert im.size == (512, 512) and im.mode == "L"  # the source matrix
        with Image.open(page.parent / data["heats"][0]) as im:
            assert im.size == (512, 512) and im.mode == "RGBA"
        info = json.loads(source.series_json_path(scanned_report["scores"], row).read_text())
        assert data["scores"] == pytest.approx(info["slice_scores"])
        assert data["apds"] == pytest.approx(info["slice_apds"])
        # the curve and the slice flags use the bundle's slice threshold, as the slices CSV does, never
        # the scan threshold (the shipped bundle's two differ: 0.72 and 1.99)
        assert info["slice_threshold"] is not None and info["slice_threshold"] != pytest.approx(info["threshold"])
        assert data["slice_threshold"] == pytest.approx(info["slice_threshold"]) and "threshold" not in data
        csv_flags = [r["flagged"] == "1" for r in _rows(slices_csv) if r["series"] == row["series"]]
        assert data["flagged"] == csv_flags == [s > info["slice_threshold"] for s in info["slice_scores"]]
        assert csv_flags != [s > info["threshold"] for s in info["slice_scores"]]  # the scan threshold flags others
        assert f'href="series/{key}.html"' in index and (report / "thumbs" / f"{key}.png").is_file()
    for name in ("report.css", "index.js", "series.js"):
        assert (report / "assets" / name).is_file()


def test_index_lists_flagged_first_then_by_score_with_errors_and_skipped_last(scanned_report):
    rows = _rows(scanned_report["scores"])
    html = (scanned_report["report"] / "index.html").read_text()
    order = re.findall(r'<tr class="row-(\w+)[^"]*" data-status="\w+" data-flagged="(\d?)"', html)
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -float(r["scan_score"]))
    assert [s for s, _ in order] == ["ok"] * len(ok) + ["error", "skipped"]
    assert [f for _, f in order[: len(ok)]] == [r["flagged"] for r in ok]
    assert ok[0]["flagged"] == "1", "the shipped bundle should flag a large haemorrhage"
    assert "truncated" in html and "skipped: " in html  # the reasons are shown


def test_nothing_from_the_data_reaches_markup_or_file_names_unescaped(scanned_report):
    report = scanned_report["report"]
    markup = scanned_report["markup"]
    texts = [p.read_text() for p in report.rglob("*.html")]
    assert markup not in "".join(texts)
    assert any(pages.esc(markup) in t for t in texts)  # shown, as text
    ours = {'<script src="assets/index.js">', '<script src="../assets/series.js">',
            '<script id="series-data" type="application/json">'}
    for text in texts:
        assert pages.esc(pages.CONTENT_SECURITY_POLICY) in text  # nothing but our own files loads or runs
        assert set(re.findall(r"<script[^>]*>", text)) <= ours, "a script element that is not ours"
        assert "<img src=x" not in text
    for path in report.rglob("*"):
        assert re.fullmatch(r"[A-Za-z0-9._/-]+", str(path.relative_to(report))), path


def test_pages_number_slices_from_0_as_the_csvs_and_title_each_series(scanned_report):
    report = scanned_report["report"]
    index = (report / "index.html").read_text()
    for row in (r for r in _rows(scanned_report["scores"]) if r["status"] == "ok"):
        page = (report / "series" / f"{source.series_key(row)}.html").read_text()
        top, n = int(row["top_slice"]), int(row["n_slices"])
        data = _series_data(report / "series" / f"{source.series_key(row)}.html")
        assert data["start"] == top
        assert f"top slice {top} (slices 0–{n - 1})" in page
        assert f'data-slice="{top}"' in page and f'min="0" max="{n - 1}" value="{top}"' in page
        assert '<tr data-slice="0" ' in page and f'<tr data-slice="{n}" ' not in page
        # the index's top-slice cell is the CSV's top_slice, as it is
        cell = re.search(rf'href="series/{re.escape(source.series_key(row))}.html">.*?</td>(.*?)</tr>', index, re.S)
        assert cell and f'<td class="num" data-v="{float(top)!r}">{top}</td>' in cell.group(1)
        # APDS in ppm, never in e-notation
        shown = re.sub(r"<[^>]*>", " ", cell.group(1))
        assert f" {pages.apds_text(row['apds'])} " in shown and "e-0" not in shown
        assert f"Mean APDS</dt><dd>{pages.apds_text(row['apds'])} ppm" in page
        assert "What the numbers mean" in page and pages.esc("0 to 11 in the series' order") in page
    # the titles: series number, description, study date and source folder, markup escaped
    assert "series 2 · Head 5.0 BONEPLUS · study 2020-03-12 · bleed" in index
    assert f"series 2 · {pages.esc(scanned_report['markup'])} · study " in index
    assert " · plain</a>" in index


def test_slice_chart_png_beside_the_heat_maps_draws_the_slice_threshold(scanned_report):
    """``slice_scores.png`` (pipeline.write_heatmaps) draws its red line at the slice threshold."""
    row = next(r for r in _rows(scanned_report["scores"]) if r["flagged"] == "1")
    info = json.loads(source.series_json_path(scanned_report["scores"], row).read_text())
    with Image.open(scanned_report["scores"].with_name("scores.heatmaps") / source.series_key(row) / "slice_scores.png") as im:
        pixels = np.asarray(im.convert("RGB"))
    red_rows = np.flatnonzero((np.all(pixels == (214, 39, 40), axis=-1)).sum(axis=1) > pixels.shape[1] // 2)
    assert red_rows.size > 0
    scores = np.asarray(info["slice_scores"], dtype=np.float64)

    def row_of(value: float) -> float:  # plots.line_chart's geometry: 540 px high, 40 above and 55 below the plot
        return 40 + 445 - (value - scores.min()) / (scores.max() - scores.min()) * 445

    assert abs(red_rows.mean() - row_of(info["slice_threshold"])) <= 2
    assert abs(red_rows.mean() - row_of(info["threshold"])) > 10


def test_series_title_and_readable_numbers():
    entry = pages.IndexEntry(key="k", row={"path": "/data/pat 7/CT1/", "SeriesInstanceUID": "1.2"},
                             description="Head <b>", series_number="3", study_date=pages.study_date("20240131"))
    assert pages.series_title(entry) == "series 3 · Head <b> · study 2024-01-31 · CT1"
    assert pages.series_title(pages.IndexEntry(key="k", row={"path": "/x/case_9"})) == "case_9"
    assert pages.series_title(pages.IndexEntry(key="k", row={"SeriesInstanceUID": "1.2.3"})) == "1.2.3"
    assert pages.study_date("2024") == "2024" and pages.study_date(None) == ""
    assert [pages.readable(x) for x in (0, 5e-4, 0.0123, 58.309, 4567.8, None)] == ["0", "< 0.001", "0.0123", "58.3", "4568", ""]
    assert pages.apds_text(5.83090714e-05) == "58.3" and pages.apds_text("") == ""


def test_json_script_cannot_be_closed_by_the_data():
    block = pages.json_script("d", {"text": "</script><script>alert(1)</script> & <!--"})
    assert block.count("</script>") == 1 and block.endswith("</script>") and "<!--" not in block
    inner = block[len('<script id="d" type="application/json">'):-len("</script>")]
    assert json.loads(inner) == {"text": "</script><script>alert(1)</script> & <!--"}


def test_report_command_rebuilds_the_report_from_the_csv(scanned_report, tmp_path):
    out = tmp_path / "again"
    result = CliRunner().invoke(app, ["report", str(scanned_report["scores"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "report: 2 series pages, 1 error rows, 1 skipped" in result.output and "PASSED" in result.output
    first = sorted(p.name for p in scanned_report["report"].rglob("*"))
    assert sorted(p.name for p in out.rglob("*")) == first


def test_report_without_heat_maps_shows_the_slices_and_says_why(scanned_report, tmp_path):
    scores = _copy_scan(scanned_report, tmp_path)
    shutil.rmtree(tmp_path / "scores.heatmaps")
    result = CliRunner().invoke(app, ["report", str(scores), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "2 series pages (2 without heat maps)" in result.output
    for page in (tmp_path / "r" / "series").glob("*.html"):
        data = _series_data(page)
        assert len(data["slices"]) == 12 and data["heats"] == []
        assert "heat maps of this series could not be read" in page.read_text()
        assert 'id="heat"' not in page.read_text() and 'id="heat-on"' not in page.read_text()


def test_report_of_a_scan_without_heatmaps_names_the_option(scanned_report, tmp_path):
    scores = _copy_scan(scanned_report, tmp_path)
    for path in (tmp_path / "scores.series").glob("1.*.json"):
        info = json.loads(path.read_text())
        info["heatmaps"] = None
        path.write_text(json.dumps(info))
    out = tmp_path / "r"
    assert CliRunner().invoke(app, ["report", str(scores), "--out", str(out)]).exit_code == 0
    assert all("scan again with --report DIR" in p.read_text() for p in (out / "series").glob("*.html"))


def test_report_whose_source_is_gone_shows_the_scores_and_says_so(scanned_report, tmp_path):
    scores = _copy_scan(scanned_report, tmp_path)
    rows = _rows(scores)
    for row in rows:
        row["path"] = row["path"].replace(str(scanned_report["dicom"]), str(tmp_path / "moved"))
    with scores.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(app, ["report", str(scores), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "2 without slices (source not readable)" in result.output
    for page in (tmp_path / "r" / "series").glob("*.html"):
        data = _series_data(page)
        assert data["slices"] == [] and len(data["scores"]) == 12
        assert "no longer at" in page.read_text() and "this page shows the scores only" in page.read_text()


def test_report_with_labels_shows_each_series_label(scanned_report, tmp_path):
    rows = [r for r in _rows(scanned_report["scores"]) if r["status"] == "ok"]
    labels = tmp_path / "labels.csv"
    labels.write_text("SeriesInstanceUID,label,disorder_type,size_class\n"
                      f"{rows[0]['SeriesInstanceUID']},1,intraparenchymal_haemorrhage,large\n")
    out = tmp_path / "r"
    assert CliRunner().invoke(app, ["report", str(scanned_report["scores"]), "--out", str(out), "--labels", str(labels)]).exit_code == 0
    index = (out / "index.html").read_text()
    assert ">Label</button>" in index and "intraparenchymal_haemorrhage (large)" in index and "not in the labels" in index


def test_report_of_a_missing_csv_is_one_sentence(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "is not a file: pass the scores CSV" in result.output
    assert "Traceback" not in result.output


# ---- the pieces ------------------------------------------------------------------------------
def test_heat_overlay_is_transparent_without_heat_and_opaque_at_the_peak():
    assert not pictures.heat_rgba(np.zeros((4, 4), np.float32)).any()
    heat = np.zeros((8, 8), np.float32)
    heat[2, 3] = 1e-3
    heat[5, 5] = 1e-3 * pictures.HEAT_FLOOR / 2  # below the floor: not drawn
    rgba = pictures.heat_rgba(heat)
    assert rgba[2, 3, 3] == round(255 * 0.85) and rgba[5, 5, 3] == 0 and rgba[0, 0].sum() == 0
    assert tuple(rgba[2, 3, :3]) == (255, 255, 204)  # pale yellow at the peak


def test_display_window_is_the_bundles_brain_window():
    info = {"windows": [{"name": "bone", "level": 600, "width": 2800}, {"name": "brain", "level": 40, "width": 80}]}
    assert source.display_window(info) == ("brain", 40.0, 80.0)
    assert source.display_window({"windows": [{"name": "w", "level": 50, "width": 100}]}) == ("w", 50.0, 100.0)
    assert source.display_window({}) == source.FALLBACK_WINDOW
    hu = np.array([[-1000, 0, 40, 80, 3000]], np.int16)
    assert source.window_hu(hu, 40, 80).tolist() == [[0, 0, 128, 255, 255]]


def test_image_series_are_shown_as_stored(tmp_path):
    folder = tmp_path / "images" / "case 1"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((6, 5), 40 * i, np.uint8)).save(folder / f"img{i}.png")
    display = source.load_display({"path": str(folder), "SeriesInstanceUID": "case_1"}, {})
    assert display.note == "" and display.window == "as stored (8-bit images)"
    assert display.pixels.shape == (3, 6, 5) and display.pixels[:, 0, 0].tolist() == [0, 40, 80]


def test_read_slices_flags_slices_above_the_slice_threshold_not_the_scan_threshold(tmp_path):
    scores = tmp_path / "s.csv"
    row = {"SeriesInstanceUID": "1.2.3", "path": "x"}
    (tmp_path / "s.series").mkdir()
    path = source.series_json_path(scores, row)
    path.write_text(json.dumps(
        {"slice_scores": [0.1, 0.9, 0.5, None], "slice_apds": [1e-5, 2e-5, 3e-5, None], "threshold": 0.95,
         "slice_threshold": 0.3, "slice_positions_mm": [0, 5, 10, 15]}))
    table = source.read_slices(scores, row)
    assert table.flagged.tolist() == [False, True, True, False]  # a slice not scored is never flagged
    assert (table.slice_threshold, table.scan_threshold) == (0.3, 0.95)
    assert table.positions_mm.tolist() == [0, 5, 10, 15]
    # a JSON from before the slice threshold: no slice is flagged, never by the scan threshold
    path.write_text(json.dumps({"slice_scores": [0.1, 0.9], "threshold": 0.5}))
    table = source.read_slices(scores, row)
    assert table.flagged.tolist() == [False, False] and table.slice_threshold is None and table.scan_threshold == 0.5
    assert source.read_slices(scores, {"SeriesInstanceUID": "9.9"}) is None
