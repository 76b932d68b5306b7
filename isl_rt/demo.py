"""`isl-rt demo`: the whole product on the embedded default, in a few minutes on a CPU.

Writes a small phantom cohort (its own seed, never used for training; about half the series
with a disorder), scans it with the shipped bundle, and joins the scores with the cohort's
labels: the rows of its series with their labels (printed as a table by the CLI) and the cohort
AUC; and writes the HTML report of the scan (with heat maps and each series' label) into
``out/report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from isl_rt import metrics
from isl_rt.evaluate import read_labels, read_score_rows
from isl_rt.errors import IslError

if TYPE_CHECKING:
    from isl_rt.report import ReportSummary

#: the demo cohort's seed; the shipped bundle was trained on studies seeded 1000..1099 (DeDN) and 3000..3039 (DRN)
DEMO_SEED = 20241122


@dataclass(frozen=True)
class DemoResult:
    #: the scores-CSV rows of the cohort's series (the cohort's labels.csv and masks are not series)
    rows: list[dict[str, str]]
    #: the cohort's labels by SeriesInstanceUID (label, disorder_type, size_class, ...)
    labels: dict[str, dict[str, str]]
    auc: float | None
    scores_csv: Path
    labels_csv: Path
    slices_per_second: float
    backend: str
    report: ReportSummary


def run_demo(
    out: Path,
    *,
    scans: int,
    seed: int,
    bundle: Any,
    scorer_factory: Callable[[], Any],
    backend_name: str,
    on_series: Callable[[Any], None] | None = None,
) -> DemoResult:
    """Write the cohort under ``out/cohort``, scan it into ``out/scores.csv`` (heat maps in
    ``out/heatmaps``), join the labels and write the report into ``out/report``.

    ``scorer_factory`` returns a ready :class:`isl_rt.pipeline.Scorer` (its backends active).
    """
    from isl_rt.io.phantom import write_cohort
    from isl_rt.pipeline import scan_directory
    from isl_rt.report import write_report

    out = Path(out)
    cohort = out / "cohort"
    write_cohort(cohort, scans, 0.5, seed)
    scores_csv = out / "scores.csv"
    summary = scan_directory(cohort, scores_csv, bundle, scorer_factory(), backend_name=backend_name,
                             resume=False, heatmaps=out / "heatmaps", on_series=on_series)
    labels_csv = cohort / "labels.csv"
    labels = read_labels(labels_csv)
    report = write_report(scores_csv, out / "report", labels=labels)
    scored = [r for r in read_score_rows(scores_csv) if r["SeriesInstanceUID"] in labels]
    ok = [(labels[r["SeriesInstanceUID"]]["label"], float(r["scan_score"])) for r in scored if r["status"] == "ok"]
    y = np.array([int(label) for label, _ in ok])
    auc = None
    if y.size and 0 < y.sum() < y.size:
        auc = metrics.auc(y, np.array([score for _, score in ok]))
    if not ok:
        raise IslError(f"The demo scanned no series of {cohort}; see the error rows in {scores_csv}.")
    return DemoResult(rows=scored, labels=labels, auc=auc, scores_csv=scores_csv, labels_csv=labels_csv,
                      slices_per_second=summary.slices_per_second, backend=backend_name, report=report)
