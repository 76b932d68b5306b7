"""`isl-rt info`: the installation, and with --bundle a model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from isl_rt.cli._app import app, print_json, user_errors


@app.command()
@user_errors
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Validate this model bundle (folder or manifest.json) and summarise its manifest.")] = None,
) -> None:
    """Version, native and CUDA extension status, OpenMP threads and loadable backends; with --bundle, check a model bundle."""
    from isl_rt import info as info_lib

    if bundle is not None:
        from isl_rt.bundle import load_bundle

        summary = load_bundle(bundle).summary()
        if as_json:
            print_json(summary)
        else:
            echo_bundle(summary)
            typer.echo("bundle OK: manifest valid, sha256 of both networks match")
        return

    report = info_lib.collect()
    if as_json:
        print_json(report)
        return
    typer.echo(f"isl-rt {report['isl_rt']}  (Python {report['python']}, {report['platform']}, {report['cpu_count']} CPUs)")
    for name, ext in report["extensions"].items():
        if ext["built"]:
            details = ", ".join(f"{k}={v}" for k, v in ext.items() if k != "built")
            typer.echo(f"  isl_rt.{name}: built ({details})")
        else:
            typer.echo(f"  isl_rt.{name}: not built ({ext['error']})")
    for name, backend in report["backends"].items():
        if backend["available"]:
            extra = f", providers={backend['providers']}" if "providers" in backend else ""
            if "precisions" in backend:
                extra = f", {backend['device']}, precisions {'/'.join(backend['precisions'])}, nncf {backend['nncf'] or 'not installed'}"
                extra += f"; {backend['note']}" if backend["note"] else ""
            typer.echo(f"  backend {name}: available ({backend.get('version')}{extra})")
        else:
            typer.echo(f"  backend {name}: not installed ({backend.get('install', backend.get('error'))})")


def echo_bundle(summary: dict[str, Any]) -> None:
    from isl_rt.bundle import CavitySpec
    from isl_rt.kernels import IMAGE_HU_SCALE

    typer.echo(f"bundle {summary['name']} at {summary['bundle']} (format {summary['format_version']}, preset {summary['preset']}, S={summary['size']})")
    typer.echo(f"  input: {summary['input']['kind']}, {summary['input']['description']}")
    typer.echo(f"  windows: {', '.join(summary['windows'])}")
    part, canny = summary["partition"], summary["canny"]
    typer.echo(f"  partition: K={part['k']}, {part['groups']} groups; canny sigma {canny['sigma']:g}, low {canny['low']:g}, high {canny['high']:g}")
    cavity, heat = summary["cavity"], summary["heatmap"]
    scale = IMAGE_HU_SCALE if summary["input"]["kind"] == "image" else None  # image value times the scale
    region = "whole slice" if cavity is None else f"cranial cavity ({CavitySpec(**cavity).describe(scale)})"
    typer.echo(f"  scored region: {region}; heat map t {heat['threshold']:g}, box {heat['box']}, gamma {heat['gamma']:g}")
    if "slice_score" in summary:
        typer.echo(f"  slice score: {summary['slice_score']['description']}")
    if summary.get("scan_fusion"):
        typer.echo(f"  scan score: {summary['scan_fusion']['description']}")
    if summary.get("image_level"):
        typer.echo(f"  brain level: {summary['image_level']['description']}")
    for key, text in summary["files"].items():
        typer.echo(f"  {key}: {text}")
    t = summary["threshold"]
    if t is None:
        typer.echo("  threshold: not calibrated")
    else:
        q = ", ".join(f"q{k} {v:.4g}" for k, v in t["healthy_quantiles"].items())
        typer.echo(f"  threshold: scan score > {t['scan_score']:.4g} (specificity {t['target_specificity']:g} on {t['n_healthy_scans']} healthy scans; {q})")
    st = summary["slice_threshold"]
    if st is None:
        typer.echo("  slice threshold: not calibrated")
    else:
        q = ", ".join(f"q{k} {v:.4g}" for k, v in st["healthy_quantiles"].items())
        typer.echo(f"  slice threshold: slice score > {st['slice_score']:.4g} (specificity {st['target_specificity']:g} on "
                   f"{st['n_healthy_slices']} healthy slices of {st['n_series']} series; {q})")
    tr = summary["training"]
    epochs = ", ".join(f"{k} {v}" for k, v in tr["epochs"].items())
    typer.echo(f"  trained on: {tr['data']} ({tr['series']} series, {tr['slices']} slices), seed {tr['seed']}, features {tr['feature_network']}, epochs: {epochs}")
    if tr.get("drn_data"):
        typer.echo(f"  DRN trained on: {tr['drn_data']}")
    if tr.get("notes"):
        typer.echo("  notes:")
        for line in tr["notes"].splitlines():
            typer.echo(f"    {line}")
    typer.echo(f"  versions: {', '.join(f'{k} {v}' for k, v in summary['versions'].items())}")
