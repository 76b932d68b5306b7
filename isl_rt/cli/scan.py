"""The scanning commands: `inspect`, `scan`, `demo`, `calibrate` and `phantom`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from isl_rt.backends.base import DEDN_BATCH
from isl_rt.cli._app import app, command_line, print_json, user_errors
from isl_rt.demo import DEMO_SEED
from isl_rt.errors import IslError


@app.command("inspect")
@user_errors
def inspect_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder tree of DICOM files and/or image folders.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON entry per series or skipped item.")] = False,
) -> None:
    """List the CT series and image series found under DIR (headers only) and what was skipped, and why."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from isl_rt.io.series import inspect_tree

    entries = inspect_tree(directory)
    if as_json:
        print_json(entries)
        return
    counts = {s: sum(e["status"] == s for e in entries) for s in ("ok", "skipped", "error")}
    table = Table(show_lines=False, pad_edge=False)
    table.add_column("status")
    table.add_column("path", overflow="fold", ratio=2)
    table.add_column("series", overflow="fold", ratio=1)
    table.add_column("slices", justify="right")
    table.add_column("matrix, spacing (mm) or channels", overflow="fold", ratio=1)
    table.add_column("notes", overflow="fold", ratio=3)
    style = {"ok": "green", "skipped": "yellow", "error": "red"}
    root = Path(directory)
    for e in entries:
        path = Path(e["path"])
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if e["status"] == "ok" and e["kind"] == "image":
            colour = {1: "gray", 3: "RGB"}.get(e["channels"], f"{e['channels']} channels")
            geometry = f"{e['matrix'][0]}×{e['matrix'][1]}, {colour} images"
            row = [Text(e["series"]), str(e["n_slices"]), geometry, Text("; ".join(e["warnings"]))]
        elif e["status"] == "ok":
            name = " ".join(str(v) for v in (e["SeriesNumber"], e["SeriesDescription"]) if v not in (None, ""))
            r, c = e["pixel_spacing"]
            geometry = f"{e['matrix'][0]}×{e['matrix'][1]}, {e['slice_spacing']:g}×{r:g}×{c:g}"
            row = [Text(name or "-"), str(e["n_slices"]), geometry, Text("; ".join(e["warnings"]))]
        else:
            files = f"{e['n_files']} files: " if e["n_files"] > 1 else ""
            row = ["", "", "", Text(files + e["reason"])]
        table.add_row(Text(e["status"], style=style[e["status"]]), Text(shown), *row)
    console = Console(soft_wrap=False)
    console.print(table)
    console.print(
        f"{counts['ok']} series ok, {counts['skipped']} skipped, "
        f"{counts['error']} error{'s' if counts['error'] != 1 else ''}",
        highlight=False,
    )


@app.command()
@user_errors
def phantom(
    out: Annotated[Path, typer.Argument(metavar="OUT_DIR", show_default=False, help="Folder for the cohort: new, empty, or a previous phantom cohort (replaced).")],
    scans: Annotated[int, typer.Option("--scans", help="Number of series to write.")] = 40,
    abnormal_fraction: Annotated[float, typer.Option("--abnormal-fraction", help="Fraction of series with a disorder (0-1).")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed writes the same cohort.")] = 7,
) -> None:
    """Write a synthetic head-CT cohort into OUT_DIR: DICOM series, labels.csv and lesion masks (masks/); inspect and scan of OUT_DIR find the series only."""
    import time

    from isl_rt.io.phantom import write_cohort

    start = time.perf_counter()
    summary = write_cohort(out, scans, abnormal_fraction, seed)
    typer.echo(
        f"phantom: {summary.series} series written to {summary.out} ({summary.abnormal} abnormal, "
        f"{summary.disorder_types} disorder types) in {time.perf_counter() - start:.1f} s; labels in "
        f"{summary.labels_csv}" + (f", lesion masks in {summary.masks_dir}" if summary.abnormal else "")
    )


#: rows of the results table `scan` ends with (flagged first); the CSV and the report hold them all
RESULTS_SHOWN = 30


class Engine(str, Enum):
    """Where `scan` scores the series."""

    local = "local"
    ray = "ray"


def _duration(seconds: float) -> str:
    """Seconds as H:MM:SS, or M:SS under an hour."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _shown_path(path: str, root: Path | None) -> str:
    """A row's path as a line shows it: under ``root`` relative to it, else its last part."""
    full = Path(path)
    if root is not None and full.is_relative_to(root) and full != root:
        return str(full.relative_to(root))
    return full.name or path


class _ScanProgress:
    """Progress of a scan on ``console`` (stderr): on a terminal a bar with series n/N, slices/s and
    the time left; elsewhere (a log file, a pipe) one plain line per series. Keeps the rows and
    writes each into the live report, when there is one."""

    def __init__(self, console: Any, *, report: Any = None, root: Path | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.rows: list[dict[str, Any]] = []
        self.report = report  # an isl_rt.report.Report to extend after each series, or None
        self.console = console
        self.root = root  # rows' paths are shown relative to it
        self.progress: Any = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("[bold]scan[/] series"), MofNCompleteColumn(), BarColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                     console=console, transient=True)
            self.task = self.progress.add_task("scan", total=None, rate="", eta="")

    def __call__(self, event: Any) -> None:
        from isl_rt.outputs import log_text

        self.rows.append(event.row)
        if self.report is not None:
            self.report.add(event.row)
            self.report.write_index()
        eta = event.eta_seconds
        if self.progress is not None:
            self.progress.update(self.task, total=event.total, completed=event.index,
                                 rate=f"{event.slices_per_second:.1f} slices/s",
                                 eta="" if eta is None else f"{_duration(eta)} left")
            return
        row = event.row
        status = row.get("status", "")
        result = status
        if status == "ok":
            flag = {True: ", FLAGGED", False: ""}.get(row.get("flagged"), ", no threshold")
            result = f"ok, scan score {float(row['scan_score']):.4f}{flag}"
        pace = f"{event.slices_per_second:.1f} slices/s" + ("" if eta is None else f", {_duration(eta)} left")
        name = log_text(_shown_path(str(row.get("path", "")), self.root))
        self.console.print(f"scan {event.index}/{event.total}: {name}: {result} ({pace})",
                           markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> "_ScanProgress":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _print_results(rows: list[dict[str, str]], *, title: str, scores_csv: Path, root: Path | None = None,
                   labels: dict[str, dict[str, str]] | None = None, limit: int | None = None) -> None:
    """The results table on stdout, in the report index's order (flagged first, then by scan
    score; errors and skipped items last: :func:`isl_rt.outputs.result_order`); with ``labels``
    (the demo's cohort) each series' disorder and size; at most ``limit`` rows, then how many more."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from isl_rt.outputs import log_text, result_order

    ordered = sorted(rows, key=result_order)
    shown = ordered if limit is None else ordered[:limit]
    table = Table(title=title)
    table.add_column("series", overflow="fold")
    if labels is not None:
        table.add_column("disorder")
        table.add_column("size")
    table.add_column("scan score", justify="right")
    table.add_column("flagged")
    table.add_column("top slice", justify="right")
    table.add_column("note", overflow="fold")
    for row in shown:
        ok = row["status"] == "ok"
        cells: list[Any] = [Text(log_text(_shown_path(row["path"], root)))]
        if labels is not None:
            label = labels.get(row.get("SeriesInstanceUID", ""), {})
            cells += [Text(label.get("disorder_type", "")), Text(label.get("size_class") or "-")]
        flag = {"1": Text("yes", style="red"), "0": Text("no")}.get(row.get("flagged", ""), Text("-"))
        cells += [f"{float(row['scan_score']):.4f}" if ok else row["status"], flag if ok else "",
                  row.get("top_slice", "") if ok else "", Text("" if ok else log_text(row.get("error", "")))]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    if len(shown) < len(ordered):
        console.print(f"… and {len(ordered) - len(shown)} more rows in {scores_csv}", highlight=False, markup=False)


@app.command()
@user_errors
def scan(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder tree of DICOM files, or of image folders (PNG/JPEG/TIFF, one folder = one series) for an image bundle.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Scores CSV, one row per series; <stem>.slices.csv (a row per slice) and per-series JSON in <stem>.series/ beside it.")] = Path("scores.csv"),
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime, onnxruntime-cuda, openvino, torch or torch-cuda.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="OpenVINO's DeDN precision: fp32, bf16 or int8; default the fastest that passed `isl-rt check-precision` here, else fp32.")] = "",
    batch_size: Annotated[int, typer.Option("--batch-size", help="DeDN images per inference call (whole slices of G images each).")] = DEDN_BATCH,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all (--engine ray: per actor, 0 = 1).")] = 0,
    heatmaps: Annotated[Path | None, typer.Option("--heatmaps", help="Folder for heat maps (NPZ), overlays of the top slices and slice-score curves.")] = None,
    dicom_out: Annotated[Path | None, typer.Option("--dicom-out", help="Folder for DICOM results per DICOM series (an image series has no DICOM source to refer to): a TID 1500 measurement report (Comprehensive 3D SR) and a Parametric Map of the heat map (needs the dicom-node extra).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip series already in --out (default; a CSV that another folder, bundle or partition wrote is refused) or start the CSV over.")] = True,
    stride: Annotated[int, typer.Option("--stride", help="0 = the bundle's partition (K×K single cells, the paper); s in 2..K = s² DeDN passes of non-adjacent cells per slice, faster (accuracy measured in benchmarks/RESULTS.md).")] = 0,
    report: Annotated[Path | None, typer.Option("--report", help="Folder for the HTML report, written as each series finishes; implies heat maps (in --heatmaps, else <stem>.heatmaps/ beside --out).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary and its rows as JSON.")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local: this process (the next series decoded while one is scored); ray: a pool of Ray actors, one backend pair each (the ray extra; every node sees DIR, the bundle and the output folders at the same paths).")] = Engine.local,
    address: Annotated[str, typer.Option("--address", help="--engine ray: local (start a Ray instance here), auto (the running cluster) or HOST:PORT.")] = "local",
    actors: Annotated[int, typer.Option("--actors", help="--engine ray: actors in the pool; 0 = as many as the cluster's CPUs (GPUs with --gpus-per-actor) hold at --threads each.")] = 0,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", help="--engine ray: GPUs reserved per actor (0.5 = two actors share a GPU); 0 = CPU actors.")] = 0.0,
    one_series_per_image: Annotated[bool, typer.Option("--one-series-per-image", help="Image folders: every image file is a series of its own (a row each, keyed by its path under DIR), for a folder of key images of many patients; rules that look at the neighbouring slice (the adjacent slice score) see no neighbour, so each image is scored alone. DICOM series are grouped as always.")] = False,
) -> None:
    """Score every series under DIR of the kind the bundle reads (axial CT DICOM or image folders): scan score, flag, top slice, APDS; a CSV row per series and one per slice. Ctrl-C or SIGTERM stops it keeping every finished row; the same command then resumes."""
    import time

    from rich.console import Console

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.evaluate import read_score_rows
    from isl_rt.interrupt import exit_status, sigterm_interrupts
    from isl_rt.io.dicom import check_folder
    from isl_rt.io.series import holds_files, nothing_to_scan
    from isl_rt.outputs import count_score_rows
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory, with_stride

    start = time.perf_counter()
    check_folder(directory)  # before the bundle loads: one sentence, as inspect says it
    if not holds_files(directory):  # before any output (CSVs, report, DICOM results) is made
        raise nothing_to_scan(directory)
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    params = with_stride(params_from_bundle(loaded), stride)
    results = None
    if dicom_out is not None and not loaded.manifest.input_spec.reads("hu"):
        raise IslError(f"--dicom-out writes DICOM results for DICOM series, but bundle '{loaded.manifest.name}' reads "
                       f"{loaded.manifest.input_spec.describe()}, which have no DICOM source to refer to: drop --dicom-out.")
    if dicom_out is not None:
        from isl_rt.dicom_results import DicomResultWriter, algorithm_of

        results = DicomResultWriter(dicom_out, algorithm_of(loaded))
    console = Console(stderr=True)
    passes = f"; {params.partition.groups} DeDN passes per slice (--stride {stride})" if stride else ""
    live = None
    if report is not None:
        from isl_rt.report import Report, default_heatmaps_dir

        heatmaps = heatmaps if heatmaps is not None else default_heatmaps_dir(out)
        live = Report(out, report)
    if engine is Engine.ray and one_series_per_image:
        raise IslError("--one-series-per-image works with --engine local only: drop one of them.")
    root = directory  # rows' paths are shown relative to it (they start with it as it was given)
    try:
        with sigterm_interrupts():
            if engine is Engine.ray:
                from isl_rt.ray_engine import ActorSpec, RayOptions, RayPool

                spec = ActorSpec(loaded.root.resolve(), backend, max(1, threads), precision, stride, batch_size,
                                 heatmaps, results, 3, Path.cwd())
                with RayPool(spec, RayOptions(address, actors, gpus_per_actor)) as pool:
                    console.print(f"bundle {loaded.manifest.name} ({loaded.root}); backend: {pool.description}{passes}", highlight=False, soft_wrap=True)
                    with _ScanProgress(console, report=live, root=root) as progress:
                        summary = pool.scan(directory, out, loaded, resume=resume, on_series=progress)
                backend_name = pool.backend_name
            else:
                pair = open_backends(loaded, backend, threads=threads, precision=precision)
                console.print(f"bundle {loaded.manifest.name} ({loaded.root}); backend: {pair.description}{passes}", highlight=False, soft_wrap=True)
                with pair, _ScanProgress(console, report=live, root=root) as progress:
                    scorer = Scorer(params, pair.dedn, pair.drn, dedn_batch=batch_size)
                    summary = scan_directory(directory, out, loaded, scorer, backend_name=pair.name, resume=resume,
                                             heatmaps=heatmaps, results=results, on_series=progress,
                                             one_series_per_image=one_series_per_image)
                backend_name = pair.name
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (isl_rt.interrupt): the rows written so far stand
        again = "run the same command again to resume" if resume else "run it again without --no-resume to resume"
        typer.echo(f"stopped: {count_score_rows(out)} finished rows are kept in {out}; {again}.", err=True)
        raise typer.Exit(code=exit_status(stop)) from None
    rows = progress.rows
    errors = [r for r in rows if r.get("status") == "error"]
    if as_json:
        print_json({"out": str(out), "backend": backend_name, "engine": engine.value, "ok": summary.ok, "errors": summary.errors, "rejected": summary.rejected,
                     "skipped": summary.skipped, "resumed": summary.resumed, "slices": summary.slices, "seconds": summary.seconds,
                     "slices_per_second": summary.slices_per_second, "stage_seconds": summary.stage_seconds,
                     "rows": rows})
    else:
        from isl_rt.outputs import log_text  # a path or error from the data must not start a line of its own

        for row in errors:
            typer.echo(f"error: {log_text(row['path'])}: {log_text(row['error'])}", err=True)
        # this run's rows and those of the runs it resumed; skipped items (not series) are only counted
        results_rows = [r for r in read_score_rows(out) if r["status"] != "skipped"]
        if results_rows:
            _print_results(results_rows, title=f"isl-rt scan ({loaded.manifest.name})", scores_csv=out, root=root,
                           limit=RESULTS_SHOWN)
        typer.echo(
            f"{summary.ok} series scored ({summary.slices} slices, {summary.slices_per_second:.1f} slices/s), "
            f"{summary.errors} error rows, {summary.rejected} rejected (not a usable head CT), {summary.skipped} skipped "
            f"(not series this bundle reads), {summary.resumed} already in {out}"
        )
    if live is not None:
        from isl_rt.cli.report import echo_report

        live.add_missing(read_score_rows(out))  # the rows of earlier runs this one resumed
        echo_report(live.write_index(), err=as_json)
    if summary.ok == 0 and summary.resumed == 0:
        raise IslError(f"No series under {directory} could be scanned; see the error and skipped rows in {out}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=as_json)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo cohort, scores.csv, per-series JSON, heat maps and the HTML report.")] = Path("isl-rt-demo"),
    scans: Annotated[int, typer.Option("--scans", help="Series in the demo cohort (about half with a disorder).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Cohort seed (the default was never used for training).")] = DEMO_SEED,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime, onnxruntime-cuda, openvino, torch or torch-cuda.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="OpenVINO's DeDN precision: fp32, bf16 or int8; default the fastest that passed `isl-rt check-precision` here, else fp32.")] = "",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
) -> None:
    """Generate a small phantom cohort, scan it with the shipped bundle, print the scores and the AUC, write the HTML report."""
    import time

    from rich.console import Console

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.cli.report import echo_report
    from isl_rt.demo import run_demo
    from isl_rt.pipeline import Scorer, params_from_bundle

    start = time.perf_counter()
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    pair = open_backends(loaded, backend, threads=threads, precision=precision)
    console = Console(stderr=True)
    console.print(f"demo: {scans} phantom series (seed {seed}) -> {out}; bundle {loaded.manifest.name}; {pair.description}", highlight=False, soft_wrap=True)
    with pair, _ScanProgress(console) as progress:
        result = run_demo(out, scans=scans, seed=seed, bundle=loaded, backend_name=pair.name, on_series=progress,
                          scorer_factory=lambda: Scorer(params_from_bundle(loaded), pair.dedn, pair.drn))
    _print_results(result.rows, title=f"isl-rt demo ({loaded.manifest.name})", scores_csv=result.scores_csv,
                   labels=result.labels)
    auc = "n/a (one class only)" if result.auc is None else f"{result.auc:.3f}"
    typer.echo(f"cohort AUC {auc} over {sum(r['status'] == 'ok' for r in result.rows)} series; "
               f"{result.slices_per_second:.1f} slices/s; scores in {result.scores_csv}, labels in {result.labels_csv}")
    echo_report(result.report)
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")


@app.command()
@user_errors
def calibrate(
    directory: Annotated[Path, typer.Argument(metavar="HEALTHY_DIR", help="DICOM tree or image folders of held-out data (never used for training).", show_default=False)],
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder whose thresholds to calibrate (written into its manifest).")],
    target_specificity: Annotated[float, typer.Option(help="Share of the healthy scans (and slices) that must stay below the threshold.")] = 0.95,
    labels: Annotated[Path | None, typer.Option("--labels", help="labels.csv (SeriesInstanceUID,label): only series labelled 0 are used; or a per-slice labels CSV (image or series,slice; a 0/1 label): only slices labelled 0 set the slice threshold, and the scan threshold comes from series whose slices are all labelled 0, if any.")] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="The 0/1 column of a per-slice labels CSV (e.g. lesion).")] = "label",
    out: Annotated[Path, typer.Option("--out", help="Scores CSV of the calibration data (its slices CSV beside it).")] = Path("calibration-scores.csv"),
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
    match_level: Annotated[bool, typer.Option("--match-level", help="Image bundles, on the bundle's own training site's healthy series only: measure the presentation of its data first (the median gray inside the cranial cavity and its spread), which every image series scanned with the bundle is mapped to, so another site's window does not read as disorder; then calibrate. At a new site leave it off: calibrate its thresholds only.")] = False,
    smooth: Annotated[float | None, typer.Option("--smooth", help="With --match-level: the σ in pixels of the Gaussian every image series is smoothed with before the networks (takes out a JPEG history's block edges; 0 = none). Default: the bundle's own.")] = None,
    scan_fusion: Annotated[str, typer.Option("--scan-fusion", help="Fuse the scan score from parts, comma-separated: slice (the mean slice score), bright:WINDOW:T[:INSET] or dark:WINDOW:T[:INSET] (the mean largest patch brighter or darker than the dedisorder image by more than T in WINDOW, on an adjacent slice too); each is put on its healthy scale, fitted here on the healthy scans, and the largest is the scan score. 'none' goes back to the mean slice score. Without it, a bundle's fusion is refitted.")] = "",
) -> None:
    """Scan held-out healthy data and set the bundle's thresholds: scan scores of healthy scans, slice scores of healthy slices."""
    import time

    from isl_rt.backends import open_backends
    from isl_rt.bundle import calibrate_bundle, load_bundle, set_scan_fusion
    from isl_rt.evaluate import read_labels, read_score_rows
    from isl_rt.evaluate_slices import is_slice_labels, join_slices, read_slice_labels, read_slice_rows
    from isl_rt.io.dicom import check_folder
    from isl_rt.io.series import holds_files, nothing_to_scan
    from isl_rt.outputs import slices_csv_path
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    start = time.perf_counter()
    if smooth is not None and not match_level:
        raise IslError("--smooth is set with --match-level (it changes the presentation the thresholds are calibrated on).")
    if smooth is not None and not 0.0 <= smooth <= 4.0:
        raise IslError(f"--smooth is a σ in pixels between 0 and 4, got {smooth}.")
    check_folder(directory)  # before the bundle's manifest is touched
    if not holds_files(directory):
        raise nothing_to_scan(directory)
    per_slice = None if labels is None or not is_slice_labels(labels) else read_slice_labels(labels, label_column)
    healthy = None if labels is None or per_slice is not None else {
        uid for uid, row in read_labels(labels).items() if row["label"] == "0"}
    loaded = load_bundle(bundle)
    level_text = ""
    if match_level:
        from dataclasses import replace

        from isl_rt.bundle import set_image_level
        from isl_rt.pipeline import fit_image_level

        if loaded.manifest.input_spec.kind != "image":
            raise IslError(f"--match-level is for bundles of pre-windowed images; {loaded.root} reads HU of DICOM CT.")
        level = fit_image_level(directory, loaded)
        own = loaded.manifest.image_level
        level = replace(level, smooth=(own.smooth if own is not None else 0.0) if smooth is None else smooth)
        loaded = set_image_level(loaded.root, level)
        level_text = f"; brain level {level.median:.4g} (median of {level.n_series} series)"

    if scan_fusion:
        loaded = set_scan_fusion(loaded.root, parse_scan_fusion(scan_fusion, loaded.manifest.windows[0].name))
    pair = open_backends(loaded, "auto", threads=threads)
    with pair:
        summary = scan_directory(directory, out, loaded, Scorer(params_from_bundle(loaded), pair.dedn, pair.drn),
                                 backend_name=pair.name, resume=False)
    rows = read_score_rows(out)
    ok = {r["series"]: float(r["scan_score"]) for r in rows
          if r["status"] == "ok" and (healthy is None or r["series"] in healthy)}
    if not ok:
        raise IslError(no_healthy_series(directory, labels if healthy is not None else None, rows, out))
    if per_slice is None:  # every slice of a healthy scan is a healthy slice
        slice_scores = [float(r["slice_score"]) for r in read_slice_rows(slices_csv_path(out))
                        if r["series"] in ok and r["slice_score"]]  # a slice not scored has no score to calibrate on
        healthy_series = sorted(ok)
        scan_scores: list[float] | None = [ok[key] for key in healthy_series]
        slice_series = len(ok)
    else:
        joined, _ = join_slices(slices_csv_path(out), per_slice)
        joined = [s for s in joined if s.series in ok]
        slice_scores = [s.score for s in joined if s.label == 0]
        slice_series = len({s.series for s in joined if s.label == 0})
        counts: dict[str, int] = {}
        for r in read_slice_rows(slices_csv_path(out)):
            if r["slice_score"]:  # the scored slices (join_slices leaves out the others)
                counts[r["series"]] = counts.get(r["series"], 0) + 1
        healthy_series = sorted(key for key in ok if sum(s.series == key and s.label == 0 for s in joined) == counts.get(key, -1))
        scan_scores = [ok[key] for key in healthy_series] or None  # no lesion-free series: keep the scan threshold
    fitted, fusion_text = None, ""
    if loaded.manifest.scan_fusion is not None:
        if scan_scores is None:
            fusion_text = "; the scan fusion's healthy scales are not fitted (no series with only lesion-free slices)"
        else:
            import numpy as np

            from isl_rt.bundle import fit_scan_fusion
            from isl_rt.outputs import safe_name
            from isl_rt.pipeline import fused_scan_score, fusion_args, series_json_dir, series_part_scores

            parts = [series_part_scores(series_json_dir(out) / f"{safe_name(key)}.json")[1].tolist() for key in healthy_series]
            fitted = fit_scan_fusion(loaded.manifest.scan_fusion, parts)
            runtime = fusion_args(fitted, loaded.manifest.windows)
            assert runtime is not None
            scan_scores = [float(fused_scan_score(np.asarray(p), runtime)) for p in parts]  # type: ignore[arg-type]
            fusion_text = f"; scan fusion fitted on {len(parts)} healthy scans"
    calibrated = calibrate_bundle(loaded.root, scan_scores, target_specificity,
                                  healthy_slice_scores=slice_scores, slice_series=slice_series, scan_fusion=fitted)
    if fitted is not None:  # the scan ran before the scales existed: its CSV and JSON say the fused scores now
        from isl_rt.pipeline import restate_fused_scores

        restate_fused_scores(out, calibrated)
    m = calibrated.manifest
    t, st = m.threshold, m.slice_threshold
    assert st is not None
    scan_text = ("no scan threshold (no series with only lesion-free slices)" if t is None else
                 f"scan score > {t.scan_score:.6g} ({t.n_healthy_scans} healthy scans"
                 + (")" if scan_scores is not None else "; kept, no series with only lesion-free slices here)"))
    typer.echo(f"{summary.ok} series scanned ({summary.slices} slices, {summary.errors} error rows); specificity "
               f"{target_specificity:g}: {scan_text}; slice score > {st.slice_score:.6g} ({st.n_healthy_slices} healthy "
               f"slices of {st.n_series} series){fusion_text}{level_text}; written to {calibrated.root}")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")


def no_healthy_series(directory: Path, labels: Path | None, rows: list[dict[str, str]], out: Path) -> str:
    """Why ``calibrate`` has no healthy series to calibrate on, in one sentence naming the folder."""
    scored = sum(r["status"] == "ok" for r in rows)
    if scored and labels is not None:
        return f"calibrate: none of the {scored} series scored in {directory} is labelled 0 in {labels}; nothing to calibrate on."
    if not rows:
        return f"calibrate: {directory} holds no DICOM series or image folder to scan; nothing to calibrate on."
    reasons: dict[str, int] = {}
    for r in rows:
        reason = r.get("error") or r["status"]
        reasons[reason] = reasons.get(reason, 0) + 1
    listed = "; ".join(f"{n} × {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    return (f"calibrate: no series in {directory} could be scored ({len(rows)} rows in {out}: {listed}"
            f"{'; ...' if len(reasons) > 3 else ''}); nothing to calibrate on.")


def parse_scan_fusion(text: str, first_window: str) -> Any:
    """``--scan-fusion``: ``none`` (None) or comma-separated parts ``slice``,
    ``bright:WINDOW:T[:INSET]``, ``dark:WINDOW:T[:INSET]`` (an empty WINDOW: the bundle's first)
    as a tuple of :class:`isl_rt.bundle.FusionPart`."""
    from isl_rt.bundle import FUSION_PART_KINDS, FusionPart

    if text == "none":
        return None
    usage = "slice, bright:WINDOW:T[:INSET] or dark:WINDOW:T[:INSET]"
    parts = []
    for item in text.split(","):
        kind, *rest = item.strip().split(":")
        if kind not in FUSION_PART_KINDS or (kind == "slice") != (not rest) or len(rest) > 3 or (rest and len(rest) < 2):
            raise IslError(f"--scan-fusion {text!r}: the part {item!r} is not one of {usage} (or 'none').")
        if kind == "slice":
            parts.append(FusionPart("slice"))
            continue
        try:
            threshold = float(rest[1])
        except ValueError:
            raise IslError(f"--scan-fusion {text!r}: the threshold {rest[1]!r} of {item!r} is not a number.") from None
        inset = rest[2] if len(rest) > 2 and rest[2] else "0"
        if not inset.isdigit():
            raise IslError(f"--scan-fusion {text!r}: the inset {inset!r} of {item!r} is not a whole number of pixels.")
        parts.append(FusionPart(kind, rest[0] or first_window, threshold, int(inset)))
    return tuple(parts)
