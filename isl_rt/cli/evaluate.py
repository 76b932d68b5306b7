"""`isl-rt evaluate`: metrics and the report of a scored cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isl_rt.cli._app import app, print_json, user_errors


@app.command()
@user_errors
def evaluate(
    scores: Annotated[Path, typer.Argument(help="scores.csv written by `isl-rt scan`.")],
    labels: Annotated[Path, typer.Argument(help="labels.csv with SeriesInstanceUID, label (0/1) and optionally disorder_type, size_class, urgency.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md, metrics.json and ROC PNGs.")],
    bootstrap: Annotated[int, typer.Option(help="Resamples for the 95% CIs.")] = 1000,
    fraction: Annotated[float, typer.Option(help="Share of the scans drawn in each resample.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of the summary.")] = False,
) -> None:
    """AUC overall, per disorder type, by size and urgency, with bootstrap CIs and ROC curves."""
    from isl_rt import evaluate as evaluate_lib

    result = evaluate_lib.evaluate(scores, labels, out, resamples=bootstrap, fraction=fraction, seed=seed)
    if as_json:
        print_json(result)
        return
    typer.echo(evaluate_lib.render_markdown(result))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'roc_by_disorder.png'}")
