"""`isl-rt build-engine`: TensorRT engines of a bundle for the GPU here."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from isl_rt.cli._app import app, command_line, user_errors
from isl_rt.errors import IslError


class Precision(str, Enum):
    """Engine precision for ``build-engine``."""

    fp16 = "fp16"
    fp32 = "fp32"


@app.command("build-engine")
@user_errors
def build_engine(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Model bundle folder (or its manifest.json).", show_default=False)],
    precision: Annotated[Precision, typer.Option("--precision", help="fp16: FP16 tensor cores (FP32 normalisations); fp32: IEEE FP32, TF32 off.")] = Precision.fp16,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest DeDN batch (images) the engine accepts; at least one slice (G images).")] = 64,
    workspace: Annotated[int, typer.Option("--workspace", help="TensorRT builder workspace in MB.")] = 4096,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="TensorRT timing cache file: read if it exists, written after the build.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Engine folder; default <cache>/<key> ($ISL_RT_ENGINE_CACHE or ~/.cache/isl-rt/engines).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then run the accuracy check against ONNX Runtime FP32 (per output, and scan scores and AUC on a phantom cohort).")] = False,
) -> None:
    """Build TensorRT engines of a bundle for the GPU here, into the engine cache that --backend auto/tensorrt reads."""
    import time

    from isl_rt.accuracy import check_tensorrt
    from isl_rt.backends.tensorrt_engines import build_engines
    from isl_rt.bundle import load_bundle
    from isl_rt.cli.precision import echo_check

    start = time.perf_counter()
    loaded = load_bundle(bundle)
    result = build_engines(loaded, precision=precision.value, max_batch=max_batch, workspace_mb=workspace,
                           timing_cache=timing_cache, out=out)
    record = result.record
    typer.echo(f"engines for {loaded.manifest.name} in {result.folder} ({result.seconds:.1f} s, {record.builder['fp16_method']})")
    for field_name, value in record.key.describe().items():
        typer.echo(f"  {field_name}: {value}")
    if check:
        report = check_tensorrt(loaded, result.folder)
        echo_check(report)
        if not report.passed:
            raise IslError(f"The engines in {result.folder} differ from ONNX Runtime FP32 beyond tolerance: {report.reason}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")
