"""`isl-rt evaluate`: metrics and the report of a scored cohort, per scan or per slice."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from isl_rt.cli._app import app, print_json, user_errors


class Level(str, Enum):
    scan = "scan"
    slice = "slice"


@app.command()
@user_errors
def evaluate(
    scores: Annotated[Path, typer.Argument(metavar="SCORES_CSV", show_default=False, help="scores.csv written by `isl-rt scan` (with --level slice: it or its <stem>.slices.csv).")],
    labels: Annotated[Path, typer.Argument(metavar="LABELS_CSV", show_default=False, help="Scan level: labels.csv with SeriesInstanceUID, label (0/1) and optionally disorder_type, size_class, urgency. Slice level: a row per slice with an image path (column image, relative to the CSV) or series and slice columns, a 0/1 label and optionally a mask column.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md, metrics.json and ROC PNGs.")],
    level: Annotated[Level, typer.Option("--level", help="scan: a label per series; slice: a label per slice, with localisation where masks and heat maps exist.")] = Level.scan,
    heatmaps: Annotated[Path | None, typer.Option("--heatmaps", help="Slice level: the folder `isl-rt scan --heatmaps` wrote, for localisation.")] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="Slice level: the column holding the 0/1 label (e.g. lesion).")] = "label",
    mask_fill: Annotated[str, typer.Option("--mask-fill", help="Slice level: lesion masks as drawn (none), each part filled to its convex hull (hull: for masks that trace a rim, as PHE-SICH-CT-IDS's often trace the oedema around a haematoma), or all of a slice's mask filled to one convex hull (slice-hull: for rims drawn in pieces).")] = "none",
    bootstrap: Annotated[int, typer.Option(help="Resamples for the 95% CIs.")] = 1000,
    fraction: Annotated[float, typer.Option(help="Share of the scans (slice level: of the series) drawn in each resample.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of the summary.")] = False,
) -> None:
    """AUC with bootstrap CIs, operating points and ROC curves: per scan (by disorder, size, urgency) or per slice (by lesion size, with localisation)."""
    if level is Level.slice:
        from isl_rt import evaluate_slices
        from isl_rt.evaluate import is_scores_csv
        from isl_rt.outputs import slices_csv_path

        slices_csv = slices_csv_path(scores) if is_scores_csv(scores) else scores
        result = evaluate_slices.evaluate_slices(slices_csv, labels, out, label_column=label_column, heatmaps=heatmaps,
                                                 resamples=bootstrap, fraction=fraction, seed=seed, mask_fill=mask_fill)
        if as_json:
            print_json(result)
            return
        typer.echo(evaluate_slices.render_markdown(result))
        typer.echo(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'roc_by_size.png'}")
        return
    from isl_rt import evaluate as evaluate_lib

    result = evaluate_lib.evaluate(scores, labels, out, resamples=bootstrap, fraction=fraction, seed=seed)
    if as_json:
        print_json(result)
        return
    typer.echo(evaluate_lib.render_markdown(result))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'roc_by_disorder.png'}")
