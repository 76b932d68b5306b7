"""Writing the report folder: the index, a page per scored series, their images and our own
stylesheet and scripts (package data, copied into ``assets/``).

Layout of ``DIR``::

    index.html              every row of the scores CSV
    assets/                 report.css, index.js, series.js
    thumbs/<key>.png        the top slice with its heat map, small
    series/<key>.html       one page per scored series
    series/<key>/sNNN.png   its slices at the source matrix (8-bit, display window applied)
    series/<key>/hNNN.png   its heat-map overlays (transparent PNG on the same grid)

``<key>`` is the file-name-safe form of the SeriesInstanceUID (:func:`isl_rt.outputs.safe_name`);
nothing else from the data reaches a file name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from isl_rt.outputs import csv_cell, write_atomic
from isl_rt.report import pages, pictures, source

ASSETS = ("report.css", "index.js", "series.js")


@dataclass
class ReportSummary:
    """What a report holds."""

    index: Path
    pages: int = 0
    #: series pages that show scores only (the source slices could not be read again)
    without_slices: int = 0
    #: series pages that show slices without heat maps
    without_heat: int = 0
    errors: int = 0
    skipped: int = 0


def default_heatmaps_dir(scores_csv: Path) -> Path:
    """Where ``scan --report`` writes heat maps when ``--heatmaps`` is not given: ``<stem>.heatmaps/``."""
    scores_csv = Path(scores_csv)
    return scores_csv.parent / f"{scores_csv.stem}.heatmaps"


def truth_text(label: Mapping[str, str]) -> str:
    """A labels-CSV row as a short text: "healthy", "hydrocephalus (large)", or "label 1"."""
    disorder = label.get("disorder_type", "")
    if label.get("label") == "0":
        return disorder or "label 0"
    if disorder:
        size = label.get("size_class", "")
        return f"{disorder} ({size})" if size else disorder
    return f"label {label.get('label', '')}"


class Report:
    """A report folder for one scores CSV, written series by series.

    ``add(row)`` writes the page and images of one row (nothing but an index entry for error
    and skipped rows); ``write_index()`` rewrites the index from every row added so far, so a
    report written while a scan runs is readable after each series.
    """

    def __init__(self, scores_csv: Path, out: Path, *, labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.scores_csv = Path(scores_csv)
        self.out = Path(out)
        self.labels = labels
        self.entries: dict[str, pages.IndexEntry] = {}
        self._runs: dict[str, tuple[str, float | None]] = {}
        self._page_problems: dict[str, tuple[bool, bool]] = {}
        (self.out / "series").mkdir(parents=True, exist_ok=True)
        (self.out / "thumbs").mkdir(exist_ok=True)
        assets = self.out / "assets"
        assets.mkdir(exist_ok=True)
        shipped = resources.files("isl_rt.report").joinpath("assets")
        for name in ASSETS:
            write_atomic(assets / name, shipped.joinpath(name).read_bytes())

    def add(self, row: Mapping[str, str]) -> pages.IndexEntry:
        """Write what the report shows of one scores-CSV row and remember it for the index."""
        key = source.series_key(row)
        entry = pages.IndexEntry(key=key, row={k: csv_cell(v) for k, v in row.items()})
        if self.labels is not None:
            label = self.labels.get(entry.row.get("series") or entry.row.get("SeriesInstanceUID", ""))
            entry.truth = truth_text(label) if label else "not in the labels"
        if entry.status == "ok":
            self._series(entry)
        self.entries[key] = entry
        return entry

    def add_missing(self, rows: Iterable[Mapping[str, str]]) -> None:
        """:meth:`add` each of ``rows`` not added yet (the rows a resumed scan kept)."""
        for row in rows:
            if source.series_key(row) not in self.entries:
                self.add(row)

    def _series(self, entry: pages.IndexEntry) -> None:
        row = entry.row
        info = source.read_series_json(self.scores_csv, row)
        entry.description = str(info.get("SeriesDescription") or "")
        entry.series_number = "" if info.get("SeriesNumber") in (None, "") else str(info.get("SeriesNumber"))
        metadata = info.get("metadata") if isinstance(info.get("metadata"), dict) else {}
        entry.study_date = pages.study_date(metadata.get("StudyDate"))
        slices = source.read_slices(self.scores_csv, row)
        if slices is None:
            entry.notes.append(f"No page: {source.series_json_path(self.scores_csv, row)} holds no slice scores.")
            return
        self._runs[entry.key] = (str(info.get("bundle") or ""), slices.scan_threshold)
        notes: list[str] = []
        display = source.load_display(row, info)
        pixels = display.pixels
        if display.note:
            notes.append(display.note)
        if pixels is not None and pixels.shape[0] != slices.n:
            notes.append(f"The source now holds {pixels.shape[0]} slices, not the {slices.n} that were scored, "
                         "so this page shows the scores only.")
            pixels = None
        heat: np.ndarray | None = None
        if pixels is not None:
            heat, heat_note = source.load_heat(self.scores_csv, info)
            heat_note = heat_note or ("" if heat is None else source.check_heat(heat, pixels))
            if heat_note:
                notes.append(heat_note)
                heat = None
        folder = self.out / "series" / entry.key
        slice_links: list[str] = []
        heat_links: list[str] = []
        peaks: list[float | None] = []
        if pixels is not None:
            folder.mkdir(exist_ok=True)
            for i in range(slices.n):
                (folder / f"s{i:03d}.png").write_bytes(pictures.slice_png(pixels[i]))
                slice_links.append(f"{entry.key}/s{i:03d}.png")
                if heat is not None:
                    (folder / f"h{i:03d}.png").write_bytes(pictures.heat_png(heat[i]))
                    heat_links.append(f"{entry.key}/h{i:03d}.png")
                    peaks.append(pictures.heat_peak(heat[i]))
            top = int(np.argmax(slices.scores))
            (self.out / "thumbs" / f"{entry.key}.png").write_bytes(
                pictures.thumbnail_png(pixels[top], None if heat is None else heat[top]))
            entry.thumbnail = f"thumbs/{entry.key}.png"
        page = pages.SeriesPage(
            entry=entry,
            info=info,
            n_slices=slices.n,
            scores=pages.finite_list(slices.scores),
            apds=pages.finite_list(slices.apds),
            flagged=[bool(f) for f in slices.flagged],
            positions_mm=None if slices.positions_mm is None else pages.finite_list(slices.positions_mm),
            scan_threshold=slices.scan_threshold,
            slice_threshold=slices.slice_threshold,
            slices=slice_links,
            heats=heat_links,
            heat_peaks=peaks,
            window=display.window,
            aspect=display.aspect,
            facts=display.facts,
            notes=notes,
        )
        write_atomic(self.out / "series" / f"{entry.key}.html", pages.series_page(page).encode("utf-8"))
        entry.page = f"series/{entry.key}.html"
        self._page_problems[entry.key] = (pixels is None, pixels is not None and heat is None)

    def write_index(self) -> ReportSummary:
        """(Re)write ``index.html`` from every row added so far."""
        bundles = sorted({b for b, _ in self._runs.values() if b})
        thresholds = sorted({t for _, t in self._runs.values() if t is not None})
        facts = pages.RunFacts(
            scores_csv=str(self.scores_csv),
            bundles=bundles,
            thresholds=[pages.number(t, 6) for t in thresholds],
            written=time.strftime("%Y-%m-%d %H:%M:%S"),
            has_labels=self.labels is not None,
        )
        index = self.out / "index.html"
        write_atomic(index, pages.index_page(list(self.entries.values()), facts).encode("utf-8"))
        summary = ReportSummary(index=index)
        for entry in self.entries.values():
            if entry.status == "skipped":
                summary.skipped += 1
            elif entry.status != "ok":
                summary.errors += 1
            elif entry.page:
                summary.pages += 1
                no_slices, no_heat = self._page_problems.get(entry.key, (False, False))
                summary.without_slices += no_slices
                summary.without_heat += no_heat
        return summary


def write_report(
    scores_csv: Path,
    out: Path,
    *,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    on_row: Callable[[int, int], Any] | None = None,
) -> ReportSummary:
    """The whole report of ``scores_csv`` into ``out``; ``on_row(done, total)`` after each row."""
    from isl_rt.evaluate import read_score_rows

    rows = read_score_rows(source.require_scores_csv(scores_csv))
    report = Report(scores_csv, out, labels=labels)
    for done, row in enumerate(rows, start=1):
        report.add(row)
        if on_row is not None:
            on_row(done, len(rows))
    return report.write_index()
