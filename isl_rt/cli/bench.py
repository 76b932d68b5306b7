"""`isl-rt bench`: throughput of a bundle on this machine, one configuration or a sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

from isl_rt.backends.base import DEDN_BATCH
from isl_rt.cli._app import app, command_line, user_errors
from isl_rt.errors import IslError

#: --slices when neither --slices nor --duration is given
DEFAULT_SLICES = 64


def parse_list(option: str, text: str, convert: Callable[[str], Any], what: str) -> list[Any]:
    """The comma-separated values of ``option``, converted; a sentence naming the option otherwise."""
    values = []
    for word in text.split(","):
        try:
            values.append(convert(word.strip()))
        except ValueError:
            raise IslError(f"{option} takes {what} separated by commas, got {text!r}.") from None
    if len(set(values)) != len(values):
        raise IslError(f"{option} lists a value twice: {text!r}.")
    return values


def _whole(minimum: int) -> Callable[[str], int]:
    def convert(word: str) -> int:
        value = int(word)
        if value < minimum:
            raise ValueError(word)
        return value

    return convert


def _precision(word: str) -> str:
    if word not in ("fp32", "bf16", "int8"):
        raise ValueError(word)
    return word


@app.command("bench")
@user_errors
def bench(
    directory: Annotated[Path | None, typer.Argument(metavar="DIR", help="Folder of DICOM series or image folders to scan; default a built-in phantom CT series.", show_default=False)] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Backends, comma-separated: auto, tensorrt, onnxruntime, onnxruntime-cuda, openvino, torch, torch-cuda.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="DeDN precisions, comma-separated: fp32, bf16, int8 (OpenVINO); each is combined with the backends that run it. Default: each backend's own.")] = "",
    batch_size: Annotated[str, typer.Option("--batch-size", help="DeDN images per inference call, comma-separated.")] = str(DEDN_BATCH),
    stride: Annotated[str, typer.Option("--stride", help="Partition strides, comma-separated: 0 = the bundle's K×K cells, s = s² passes of non-adjacent cells (as scan --stride).")] = "0",
    threads: Annotated[str, typer.Option("--threads", help="CPU inference threads, comma-separated; 0 = all.")] = "0",
    duration: Annotated[float, typer.Option("--duration", help="Seconds of interleaved rounds (instead of --slices).", show_default=False)] = 0.0,
    slices: Annotated[int, typer.Option("--slices", help=f"Slices each configuration scans at least (whole series; default {DEFAULT_SLICES}).", show_default=False)] = 0,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed series per configuration before timing.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per configuration (one per line) instead of the table.")] = False,
) -> None:
    """Measure how fast the bundle scans here: slices/s, series/s, latency, where the time goes, peak memory and the DeDN's GFLOP/s against a measured matrix-multiply rate. Comma lists sweep every combination, measured round-robin."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from isl_rt.bench import run_bench, sweep
    from isl_rt.bundle import default_bundle_path, load_bundle

    start = time.perf_counter()
    if duration < 0 or slices < 0:
        raise IslError("--duration and --slices must be above 0.")
    if duration > 0 and slices > 0:
        raise IslError("Give --duration S or --slices N, not both.")
    if duration == 0 and slices == 0:
        slices = DEFAULT_SLICES
    configs = sweep(
        parse_list("--backend", backend, str, "backend names"),
        parse_list("--precision", precision, _precision, "fp32, bf16 or int8") if precision else [""],
        parse_list("--batch-size", batch_size, _whole(1), "whole numbers from 1"),
        parse_list("--stride", stride, _whole(0), "whole numbers from 0"),
        parse_list("--threads", threads, _whole(0), "whole numbers from 0"),
    )
    if directory is not None:
        from isl_rt.io.dicom import check_folder

        check_folder(directory)
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=console, transient=True)
    task = progress.add_task("", total=None)

    def on_progress(event: Any) -> None:
        c = event.config
        progress.update(task, completed=event.done, total=event.total or None,
                        description=f"{c.backend} {c.precision or ''} batch {c.batch_size} stride {c.stride}")

    with progress:
        run = run_bench(loaded, configs, directory, slices=slices, duration=duration, warmup=warmup, on_progress=on_progress)
    records = run.records()
    if as_json:
        for record in records:
            typer.echo(json.dumps(record))
    else:
        wide = Console(soft_wrap=False)
        print_table(wide if wide.is_terminal else Console(soft_wrap=False, width=140), records)
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=as_json)


def print_table(console: Any, records: list[dict[str, Any]]) -> None:
    """The comparison of a sweep as two tables (speed; where the time and memory go), then the
    machine and what each configuration ran."""
    from rich.table import Table

    first = records[0]
    speed = Table(title=f"isl-rt bench: bundle {first['bundle']['name']}; {first['input']}; {first['rounds']} round(s) after "
                        f"{first['warmup_series']} warm-up series per configuration", title_justify="left", pad_edge=False)
    for name in ("#", "backend", "batch", "stride", "threads", "slices/s", "× #1 (range)", "series/s",
                 "ms/slice p50/p90/p99", "s/series p50/p90/p99"):
        speed.add_column(name, justify="left" if name == "backend" else "right", no_wrap=name != "backend")
    cost = Table(title="where the time and memory go", title_justify="left", pad_edge=False)
    for name in ("#", "decode %", "kernels %", "DeDN %", "DRN %", "outputs %", "peak RSS MiB (+series)", "DeDN GFLOP/s",
                 "matmul GFLOP/s", "DeDN/matmul"):
        cost.add_column(name, justify="right", no_wrap=True)
    for i, r in enumerate(records, 1):
        low, high = r["relative_to_first_range"]
        sl, se = r["latency_per_slice_ms"], r["latency_per_series_ms"]
        speed.add_row(str(i), f"{r['backend']} {r['precision']}", str(r["batch_size"]), str(r["stride"]),
                      str(r["threads"] or "all"), f"{r['slices_per_s']:.2f}", f"{r['relative_to_first']:.2f} ({low:.2f}-{high:.2f})",
                      f"{r['series_per_s']:.3f}", f"{sl['median']:.0f}/{sl['p90']:.0f}/{sl['p99']:.0f}",
                      f"{se['median'] / 1000:.1f}/{se['p90'] / 1000:.1f}/{se['p99'] / 1000:.1f}")
        share = r["stage_share"]
        ratio = r["dedn_share_of_matmul"]
        cost.add_row(str(i), *(f"{100 * share[s]:.1f}" for s in ("decode", "kernels", "dedn", "drn", "outputs")),
                     f"{r['peak_rss_mib']:.0f} (+{r['series_rss_growth_mib']:.0f})", _rate(r["dedn_gflops"]), _rate(r["matmul_gflops"]),
                     "-" if ratio is None else f"{ratio:.2f}")
    console.print(speed)
    console.print(cost)
    m = first["machine"]
    gpu = f"GPU {m['gpu']} (compute {m['gpu_compute_capability']}, driver {m['gpu_driver']})" if m["gpu"] else "no GPU"
    console.print(f"machine: {m['cpu']}, {m['cpus']} CPUs ({' '.join(m['cpu_flags']) or 'flags unknown'}), {gpu}, "
                  f"load {m['loadavg_1min']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), highlight=False)
    for i, r in enumerate(records, 1):
        console.print(f"#{i}: {r['backend_description']}; {r['dedn_passes_per_slice']} DeDN passes per slice; "
                      f"matmul: {r['matmul_measured']}", highlight=False)
    console.print(f"DeDN: {first['dedn_gflop_per_image']} GFLOP per image ({first['dedn_flops_method']}). "
                  "× #1: slices/s over configuration #1's in the same round, median and range over rounds.", highlight=False)


def _rate(gflops: float | None) -> str:
    if gflops is None:
        return "-"
    return f"{gflops / 1000:.2f} T" if gflops >= 1000 else f"{gflops:.1f}"
