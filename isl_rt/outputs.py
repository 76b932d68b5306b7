"""Scan outputs: the scores CSV (a row per series, written as each series finishes), the slices
CSV (a row per slice of each scored series), per-series JSON, atomic writes and resume.

A row is one ``write`` of a whole line followed by flush and fsync, so a crash loses at most the
series in flight; a partial last line left by a crash is cut off when the file is reopened.
File names built from DICOM tags go through :func:`safe_name` first; every CSV cell through
:func:`csv_cell` (no formula a spreadsheet would run, no control character), and text from the
data on a log line through :func:`log_text` (it cannot start a line of its own).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from isl_rt.errors import InputError

SCORE_COLUMNS: tuple[str, ...] = (
    "path",
    #: the series key: SeriesInstanceUID of DICOM, the folder's series id of images
    "series",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "n_slices",
    #: the slices that were scored (a slice without a cranial cavity is not: see the slices CSV's reason)
    "n_scored",
    "scan_score",
    "healthy_percentile",
    "flagged",
    "top_slice",
    "max_slice_score",
    "apds",
    "seconds",
    "status",
    "error",
)

#: ``<stem>.slices.csv``: one row per slice; ``slice`` is the 0-based index in the series' order
#: (DICOM: along the slice normal from the skull base; images: natural name order), ``source`` the
#: slice's SOPInstanceUID (DICOM) or image path, ``flagged`` empty without a slice threshold; a
#: slice that was not scored has empty ``slice_score``, ``apds`` and ``flagged`` and says why in
#: ``reason`` (empty for a scored slice).
SLICE_COLUMNS: tuple[str, ...] = ("series", "slice", "source", "slice_score", "apds", "flagged", "reason")

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


def slices_csv_path(out_csv: Path) -> Path:
    """Where the per-slice rows of the scores CSV ``out_csv`` go: ``<stem>.slices.csv`` beside it."""
    out_csv = Path(out_csv)
    return out_csv.parent / f"{out_csv.stem}.slices.csv"


def safe_name(text: str, *, max_length: int = 96) -> str:
    """A file-name-safe version of ``text`` (a UID or folder name from the data).

    Keeps ``[0-9A-Za-z._-]``; anything else, a leading dot, an empty result or an over-long
    name is replaced by a readable prefix plus a short hash of the original, so two different
    inputs never map to the same name and no path separator ever survives.
    """
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    if cleaned == text and 0 < len(text) <= max_length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    prefix = cleaned[: max_length - 13].strip("_.") or "x"
    return f"{prefix}-{digest}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_folder(staging: Path, folder: Path) -> None:
    """Move a finished ``staging`` folder (a sibling of ``folder``) to ``folder``, replacing an older one."""
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, default=_json_default) + "\n").encode())


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def row_key(row: Mapping[str, Any]) -> str:
    """What identifies a row's item across runs: its SeriesInstanceUID, else its path and, when it
    names one, its series (two broken series in one folder are two items), as the CSV holds them."""
    uid = csv_cell(row.get("SeriesInstanceUID") or "")
    if uid:
        return uid
    key = f"path:{csv_cell(row.get('path', ''))}"
    series = csv_cell(row.get("series") or "")
    return f"{key}|series:{series}" if series else key


#: the order of statuses where results are listed (the report's index, the tables of scan and demo)
STATUS_ORDER = {"ok": 0, "error": 1, "skipped": 2}


def result_order(row: Mapping[str, Any]) -> tuple[int, int, float]:
    """Sort key of scores-CSV rows as results are listed: scored series first, flagged before not
    flagged, each by scan score, highest first; then errors and rejected series, then skipped items."""
    try:
        score = float(row.get("scan_score") or "nan")
    except ValueError:
        score = math.nan
    status = str(row.get("status") or "error")
    flagged = str(row.get("flagged")) in ("1", "True")  # as the CSV holds it, or as a scan's row has it
    return (STATUS_ORDER.get(status, 1), 0 if flagged else 1, math.inf if math.isnan(score) else -score)


def count_score_rows(path: Path) -> int:
    """How many rows a scores CSV holds (0 when it does not exist yet)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    except FileNotFoundError:
        return 0


def rewrite_score_rows(path: Path, rows: Iterable[Mapping[str, Any]], columns: Iterable[str] = SCORE_COLUMNS) -> None:
    """Write a whole scores CSV atomically: its header and ``rows`` (cells as :class:`ScoreTable` writes them)."""
    columns = tuple(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c, "")) for c in columns])
    write_atomic(Path(path), buffer.getvalue().encode())


class ScoreTable:
    """The scores CSV, appended to row by row; with ``resume`` the rows already there are kept
    and their series reported by :meth:`done`."""

    def __init__(self, path: Path, *, resume: bool = True, columns: Iterable[str] = SCORE_COLUMNS) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.rows: list[dict[str, str]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self.rows = self._read_existing()
        else:
            write_atomic(self.path, self._format(dict(zip(self.columns, self.columns))).encode())
        self._done = {row_key(r) for r in self.rows}
        self._handle = open(self.path, "ab")

    def _read_existing(self) -> list[dict[str, str]]:
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):  # a crash cut the last row: drop it, keep the rest
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(cut)
            data = data[:cut]
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        if tuple(reader.fieldnames or ()) != self.columns:
            raise InputError(
                f"{self.path} has columns {reader.fieldnames} which are not the ones isl-rt writes; "
                "choose another --out or pass --no-resume to overwrite it."
            )
        return list(reader)

    def _format(self, row: Mapping[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([csv_cell(row.get(c, "")) for c in self.columns])
        return buffer.getvalue()

    def done(self, key: str) -> bool:
        return key in self._done

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row durably (one write, flush, fsync)."""
        self.append_many([row])

    def append_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write rows durably in one write (flush, fsync): a crash leaves all of them, none, or a
        cut last line that reopening removes."""
        rows = list(rows)
        if not rows:
            return
        self._handle.write("".join(self._format(row) for row in rows).encode())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        for row in rows:
            stored = {c: csv_cell(row.get(c, "")) for c in self.columns}
            self.rows.append(stored)
            self._done.add(row_key(stored))

    def retain(self, keep: Callable[[dict[str, str]], bool]) -> int:
        """Keep only the rows ``keep`` accepts, rewriting the file atomically; returns how many went."""
        kept = [r for r in self.rows if keep(r)]
        dropped = len(self.rows) - len(kept)
        if dropped:
            self._handle.close()
            rewrite_score_rows(self.path, kept, self.columns)
            self.rows = kept
            self._done = {row_key(r) for r in kept}
            self._handle = open(self.path, "ab")
        return dropped

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ScoreTable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reconcile_slices(scores: ScoreTable, slices: ScoreTable) -> None:
    """Make a resumed scores CSV and its slices CSV agree: a series stays done only when the slices
    CSV holds exactly its ``n_slices`` rows; otherwise its scores row goes (it is scanned again),
    and slice rows of series without an ok scores row go too (a crash between the two writes)."""
    counts = Counter(r["series"] for r in slices.rows)
    complete: set[str] = set()
    incomplete: set[str] = set()
    for r in scores.rows:
        if r.get("status") != "ok":
            continue
        if r["series"] and str(counts.get(r["series"], 0)) == r.get("n_slices"):
            complete.add(r["series"])
        else:
            incomplete.add(row_key(r))
    scores.retain(lambda r: row_key(r) not in incomplete)
    slices.retain(lambda r: r["series"] in complete)


#: what a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"): such a text cell gets a
#: leading ``'``; TAB and CR never reach that test, :data:`_CONTROL` escapes them first
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: a number as csv_cell writes one (ints, ``{:.9g}`` floats, inf and nan): kept as it is, sign and all
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)")
#: characters that are not text: C0 controls (NUL, TAB, LF, CR, ESC...), DEL, C1 controls, and the
#: Unicode line and paragraph separators some viewers break lines at
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def csv_cell(value: Any) -> str:
    """A row value as the CSVs store it ("" for None, "1"/"0" for booleans, floats to 9 digits).

    The cells hold text from the data (UIDs, folder and file names, error messages that quote
    them), so a text cell is made inert for a spreadsheet: control characters (NUL, newlines,
    TAB, ESC...) become ``\\xNN`` text, and a cell that would start a formula (``=``, ``+``,
    ``-``, ``@``) gets a leading ``'`` (OWASP), unless it is a number: ``-0.5`` stays a number. The
    rule reads the text, not the column, so a numeric cell read back from our own CSV and written
    again (resume, :meth:`ScoreTable.retain`) keeps its value, and a number in a text column is
    harmless as it is.

    Applying it twice changes nothing (``csv_cell(csv_cell(v)) == csv_cell(v)``): rows read back
    from the CSV and fresh rows give the same :func:`row_key`. The price of that: it is not
    one-to-one on hostile text (``=1`` and ``'=1``, NUL and the four characters ``\\x00`` give
    the same cell); UIDs (digits and dots) and ordinary names are kept exactly.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.9g}"  # round-trips float32 scores exactly
    # a file name that is not valid UTF-8 reaches Python with surrogate escapes: written as \xNN
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = _CONTROL.sub(_escape_control, text)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text
    return text


def log_text(value: Any) -> str:
    """``value`` for a log or console line: as it is when it is printable, else quoted with its
    newlines and other control characters escaped (``repr``), so text from the data (a Series UID,
    a folder name, an error message quoting one) cannot start a line of its own."""
    text = str(value)
    return text if text.isprintable() else repr(text)
