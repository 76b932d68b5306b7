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
