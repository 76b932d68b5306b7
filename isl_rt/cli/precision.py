"""The accuracy-check commands: `check-precision` (a reduced OpenVINO precision against FP32
ONNX Runtime, recorded for `--backend auto`) and `compare-scores` (the scan-level check on any
two scored cohorts)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from isl_rt.cli._app import app, command_line, print_json, user_errors
from isl_rt.errors import IslError


class OpenVinoPrecision(str, Enum):
    """What ``--backend openvino`` runs the DeDN in."""

    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


def echo_scans(scans: Any) -> None:
    aucs = "" if scans.auc_reference is None else f", AUC {scans.auc_candidate:.4f} vs {scans.auc_reference:.4f}"
    typer.echo(f"  check scans ({scans.series} series): {'ok' if scans.passed else 'FAILED'} (scan scores: max change "
               f"{scans.max_score_rel:.3%}, mean {scans.mean_score_rel:.3%}{aucs}){'' if scans.passed else ': ' + scans.reason}")


def echo_check(report: Any) -> None:
    """The per-output and scan-level lines of an :class:`isl_rt.accuracy.CheckReport`."""
    for c in report.outputs:
        stats = "" if c.stats is None else (f"max {c.stats.max_abs:.3g}, mean {c.stats.mean_abs:.3g}, "
                                            f"median {c.stats.median_abs:.3g}, p99 {c.stats.p99_abs:.3g}")
        typer.echo(f"  check {c.name}: {'ok' if c.passed else 'FAILED'} ({stats}){'' if c.passed else ': ' + c.reason}")
    echo_scans(report.scans)


@app.command("check-precision")
@user_errors
def check_precision_command(
    precision: Annotated[OpenVinoPrecision, typer.Option("--precision", help="The OpenVINO precision to check (int8 is quantized first when not cached).")] = OpenVinoPrecision.int8,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    series: Annotated[int, typer.Option("--series", help="Phantom series in the check cohort (half with a disorder).")] = 12,
    slices: Annotated[int, typer.Option("--slices", help="Slices per series around the lesion or the middle; 0 = whole series.")] = 8,
    stride: Annotated[int, typer.Option("--stride", help="Check the strided partition of `scan --stride S` instead (not recorded for auto).")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the check report as JSON.")] = False,
) -> None:
    """Check an OpenVINO precision against ONNX Runtime FP32 (per output; scan scores within 1 %, AUC within 0.002) and record it for --backend auto."""
    import time

    from isl_rt.accuracy import check_precision
    from isl_rt.backends.openvino import cpu_info, open_openvino_pair, prepare_networks, write_check
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.pipeline import params_from_bundle, with_stride

    start = time.perf_counter()
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    params = with_stride(params_from_bundle(loaded), stride)
    pair = open_openvino_pair(loaded, precision.value, threads=threads)
    typer.echo(f"checking {pair.description} against ONNX Runtime FP32 on {series} phantom series", err=as_json)
    report = check_precision(loaded, pair, series=series, slices=slices, threads=threads, params=params)
    report.extra.update(device=cpu_info().name, dedn_runs=getattr(pair.dedn, "runs", ""))
    recorded = None
    if stride == 0:
        recorded = write_check(prepare_networks(loaded, precision.value), report.to_dict())
    if as_json:
        print_json({**report.to_dict(), "recorded": None if recorded is None else str(recorded)})
    else:
        echo_check(report)
        where = f"recorded in {recorded}" if recorded else "not recorded (--stride)"
        typer.echo(f"{precision.value} {'passed' if report.passed else 'FAILED'}: {where}; "
                   f"--backend auto {'may' if report.passed else 'will not'} use it")
    if not report.passed:
        raise IslError(f"OpenVINO {precision.value} differs from ONNX Runtime FP32 beyond tolerance: {report.reason}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=as_json)


@app.command("compare-scores")
@user_errors
def compare_scores_command(
    candidate: Annotated[Path, typer.Argument(metavar="CANDIDATE_CSV", help="scores.csv of the reduced precision.", show_default=False)],
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE_CSV", help="scores.csv of the same series with ONNX Runtime FP32.", show_default=False)],
    labels: Annotated[Path | None, typer.Option("--labels", help="labels.csv (SeriesInstanceUID,label) for the AUC check.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """The scan-level accuracy check on any scored cohort: scan scores within 1 %, AUC within 0.002."""
    import time

    from isl_rt.accuracy import compare_score_files

    start = time.perf_counter()
    scans = compare_score_files(candidate, reference, labels)
    if as_json:
        print_json(scans.to_dict())
    else:
        echo_scans(scans)
    if not scans.passed:
        raise IslError(f"{candidate} differs from {reference} beyond tolerance: {scans.reason}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=as_json)
