"""The `isl-rt` command line: parse, call the library, print.

Every command is a small function; a user error (:class:`IslError`) prints one sentence and
exits 1, with no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

import typer

from isl_rt.bundle import DEFAULT_HEATMAP
from isl_rt.demo import DEMO_SEED
from isl_rt.errors import IslError

app = typer.Typer(
    name="isl-rt",
    help="Find any disorder in head CT with models trained on healthy scans only (ISL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(func: F) -> F:
    """Turn an IslError into its sentence on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except IslError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root() -> None:
    """Find any disorder in head CT with models trained on healthy scans only (ISL)."""


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
@_user_errors
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
            _print_json(summary)
        else:
            _echo_bundle(summary)
            typer.echo("bundle OK: manifest valid, sha256 of both networks match")
        return

    report = info_lib.collect()
    if as_json:
        _print_json(report)
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
            typer.echo(f"  backend {name}: available ({backend.get('version')}{extra})")
        else:
            typer.echo(f"  backend {name}: not installed ({backend.get('install', backend.get('error'))})")


@app.command()
@_user_errors
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
        _print_json(result)
        return
    typer.echo(evaluate_lib.render_markdown(result))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'roc_by_disorder.png'}")


@app.command("inspect")
@_user_errors
def inspect_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder tree of DICOM files.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON entry per series or skipped item.")] = False,
) -> None:
    """List the CT series found under DIR (headers only) and what was skipped, and why."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from isl_rt.io.dicom import inspect_tree

    entries = inspect_tree(directory)
    if as_json:
        _print_json(entries)
        return
    counts = {s: sum(e["status"] == s for e in entries) for s in ("ok", "skipped", "error")}
    table = Table(show_lines=False, pad_edge=False)
    table.add_column("status")
    table.add_column("path", overflow="fold", ratio=2)
    table.add_column("series", overflow="fold", ratio=1)
    table.add_column("slices", justify="right")
    table.add_column("matrix, spacing (mm)", overflow="fold", ratio=1)
    table.add_column("notes", overflow="fold", ratio=3)
    style = {"ok": "green", "skipped": "yellow", "error": "red"}
    root = Path(directory)
    for e in entries:
        path = Path(e["path"])
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        if e["status"] == "ok":
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


# ---- training, export and the model bundle ------------------------------------------------------
# torch and onnx are imported inside these commands only (the `train` extra); without them a
# command prints one sentence naming the extra and the rest of the CLI works as before.
from enum import Enum  # noqa: E402  (kept inside this block, which is inserted as one piece)

train_app = typer.Typer(
    name="train",
    help="Train the ISL networks on healthy scans (needs the train extra of isl-rt: torch and onnx).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(train_app, name="train")


class _Preset(str, Enum):
    tiny = "tiny"
    base = "base"
    full = "full"


class _Adversarial(str, Enum):
    nsgan = "nsgan"
    hinge = "hinge"


class _DisLoss(str, Enum):
    inverse = "inverse"
    hinge = "hinge"


class _Disorder(str, Enum):
    lesion = "lesion"
    blob = "blob"


class _DRNInput(str, Enum):
    difference = "difference"
    slice = "slice"


def _require_train_extra() -> None:
    """IslError naming the extra when torch or onnx cannot be imported."""
    import importlib
    import importlib.util

    for module in ("torch", "onnx"):
        try:
            found = importlib.util.find_spec(module) is not None
            if found:
                importlib.import_module(module)
        except ImportError:
            found = False
        if not found:
            raise IslError(f"This command needs {module}, which is not installed here: pip install 'isl-rt[train]'.")


def _command_line() -> str:
    return " ".join(["isl-rt", *sys.argv[1:]])


def _parse_windows(text: str) -> tuple[Any, ...]:
    from isl_rt.bundle import WindowSpec

    windows = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            name, level, width = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise IslError(f"--windows item {item.strip()!r} is not NAME:LEVEL:WIDTH (e.g. brain:40:80).") from None
        if len(parts) != 3 or not name or width <= 0:
            raise IslError(f"--windows item {item.strip()!r} is not NAME:LEVEL:WIDTH with a positive width.")
        windows.append(WindowSpec(name, level, width))
    return tuple(windows)


def _parse_floats(text: str, count: int, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise IslError(f"{option} takes {count} comma-separated numbers, got {text!r}.")
    return values


class _TrainingView:
    """Renders the training loops' progress events as rich progress bars on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    @staticmethod
    def _format(losses: dict[str, float]) -> str:
        return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())

    def __call__(self, event: Any) -> None:
        label = event.phase if event.phase in ("features", "differences") else f"{event.phase} {event.epoch}/{event.epochs}"
        if event.kind == "start":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(label, total=event.steps or None, losses="")
        elif event.kind == "step" and self.task is not None:
            self.progress.update(self.task, completed=event.step, losses=self._format(event.losses))
        elif event.kind == "epoch":
            note = f"  [green]{event.note}[/]" if event.note else ""
            self.progress.console.print(f"{label}  {self._format(event.losses)}{note}", highlight=False)

    def __enter__(self) -> "_TrainingView":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _prepare_slices(data: str, ckpt: Path, params: Any, labels: Path | None, max_series: int | None) -> Any:
    from rich.console import Console

    from isl_rt.training.data import prepare

    console = Console(stderr=True)
    with console.status(f"preparing slices of {data} (cached in {ckpt / 'data'})") as status:

        def report(done: int, total: int, series: str) -> None:
            status.update(f"preparing slices: series {done}/{total} ({series})")

        slices = prepare(data, params, labels=labels, max_series=max_series, cache_dir=ckpt / "data", progress=report)
    excluded = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in slices.excluded.items() if n)
    console.print(
        f"{slices.description}: {slices.n_series} series, {len(slices)} slices of {params.size}×{params.size}"
        + (f" (left out: {excluded})" if excluded else ""),
        highlight=False,
    )
    for note in slices.notes[:5]:
        console.print(f"  left out: {note}", highlight=False, markup=False)
    return slices


_DATA_HELP = "Healthy training data: a DICOM tree, a tree of image folders, or phantom:N[:SEED] (N generated healthy studies)."


@train_app.command("dedn")
@_user_errors
def train_dedn_command(
    data: Annotated[str, typer.Argument(metavar="DATA", help=_DATA_HELP)],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint folder (dedn_last.pt, dedn_best.pt, data cache).")],
    preset: Annotated[_Preset, typer.Option(help="Network size: tiny (S=128), base or full (S=256).")] = _Preset.tiny,
    size: Annotated[int, typer.Option(help="Input size S; 0 = the preset's.")] = 0,
    max_epochs: Annotated[int, typer.Option(help="Most epochs; training also stops when the loss has not decreased for --patience epochs.")] = 100,
    patience: Annotated[int, typer.Option(help="Stop when the training loss has not decreased for this many epochs (the paper's rule).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Slices per step.")] = 8,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch; 0 = one pass over the slices.")] = 0,
    lr: Annotated[float, typer.Option(help="Generator learning rate (the discriminator gets 0.1×).")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and masks: same seed, same run.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --ckpt from dedn_last.pt.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads; 0 = torch's default.")] = 0,
    vgg19_weights: Annotated[Path | None, typer.Option(help="torchvision VGG-19 state dict for the perceptual/style losses; without it a small feature network is trained on the healthy slices first.")] = None,
    feature_steps: Annotated[int, typer.Option(help="Steps of self-supervised feature training (without --vgg19-weights).")] = 300,
    loss_weights: Annotated[str, typer.Option(help="Weights of L1, adversarial, perceptual and style losses.")] = "1,0.1,0.1,250",
    adversarial: Annotated[_Adversarial, typer.Option(help="Adversarial loss.")] = _Adversarial.nsgan,
    windows: Annotated[str, typer.Option(help="HU windows NAME:LEVEL:WIDTH,... (image folders always use identity windows).")] = "brain:40:80,subdural:75:215,bone:600:2800",
    canny: Annotated[str, typer.Option(help="Canny sigma,low,high on the [0,1] windowed image (thresholds on the Sobel L2 magnitude).")] = "1.0,0.15,0.3",
    labels: Annotated[Path | None, typer.Option(help="labels.csv (SeriesInstanceUID,label): only series labelled 0 are used.")] = None,
    max_series: Annotated[int | None, typer.Option(help="Use at most this many series.")] = None,
) -> None:
    """Train the DeDN (inpainting generator) on healthy slices."""
    _require_train_extra()
    import time

    from isl_rt.bundle import CannySpec
    from isl_rt.models.dedn import PRESETS
    from isl_rt.training.data import PrepParams
    from isl_rt.training.dedn import DeDNTrainConfig, train_dedn
    from isl_rt.training.losses import LossWeights

    w = _parse_floats(loss_weights, 4, "--loss-weights")
    sigma, low, high = _parse_floats(canny, 3, "--canny")
    params = PrepParams(size=size or PRESETS[preset.value].size, windows=_parse_windows(windows), canny=CannySpec(sigma, low, high))
    config = DeDNTrainConfig(
        preset=preset.value, max_epochs=max_epochs, patience=patience, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        lr=lr, weights=LossWeights(l1=w[0], adversarial=w[1], perceptual=w[2], style=w[3], adversarial_kind=adversarial.value),
        seed=seed, device=device, threads=threads, vgg19_weights=str(vgg19_weights or ""), feature_steps=feature_steps,
        command=_command_line(),
    )
    config.validate()
    start = time.perf_counter()
    slices = _prepare_slices(data, ckpt, params, labels, max_series)
    with _TrainingView() as view:
        result = train_dedn(slices, ckpt, config, resume=resume, progress=view)
    ending = "stopped early" if result.stopped_early else "reached --max-epochs"
    typer.echo(
        f"DeDN: {result.epochs} epoch(s), {ending}; best epoch {result.best_epoch} "
        f"(selection loss {result.best_loss:.4g}) -> {result.best_path}"
    )
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}")


@train_app.command("drn")
@_user_errors
def train_drn_command(
    data: Annotated[str, typer.Argument(metavar="DATA", help=_DATA_HELP + " Prepared as the DeDN's (same size, windows, Canny).")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint folder holding dedn_best.pt; drn_last.pt / drn_best.pt go there.")],
    preset: Annotated[_Preset, typer.Option(help="DRN size (tiny, base, full).")] = _Preset.tiny,
    k: Annotated[int, typer.Option("--k", help="Inference grid: K×K cells.")] = 4,
    stride: Annotated[int, typer.Option(help="0 = one cell per pass (the paper); s ≥ 2 = strided groups of cells.")] = 0,
    embedding_dim: Annotated[int, typer.Option(help="Embedding size D.")] = 128,
    pretrain_epochs: Annotated[int, typer.Option(help="MoCo pretraining epochs.")] = 20,
    max_epochs: Annotated[int, typer.Option(help="Most fine-tuning epochs.")] = 50,
    patience: Annotated[int, typer.Option(help="Stop fine-tuning when its loss has not decreased for this many epochs.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Difference images per step.")] = 32,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch; 0 = one pass.")] = 0,
    queue_size: Annotated[int, typer.Option(help="MoCo queue length.")] = 1024,
    lambda_com: Annotated[float, typer.Option(help="Weight of L_com (pull healthy views to the centre).")] = 1.0,
    lambda_dis: Annotated[float, typer.Option(help="Weight of L_dis (push synthetic disorders away).")] = 1.0,
    dis_loss: Annotated[_DisLoss, typer.Option(help="Form of L_dis.")] = _DisLoss.inverse,
    disorder: Annotated[
        _Disorder,
        typer.Option(help="Synthetic disorder x⁺: lesion (tissue of shifted density pasted into the slice) or blob (intensity pasted into the difference image)."),
    ] = _Disorder.lesion,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same run.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --ckpt from drn_last.pt.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads; 0 = torch's default.")] = 0,
    labels: Annotated[Path | None, typer.Option(help="labels.csv (SeriesInstanceUID,label): only series labelled 0 are used.")] = None,
    max_series: Annotated[int | None, typer.Option(help="Use at most this many series.")] = None,
    cavity: Annotated[bool, typer.Option("--cavity/--no-cavity", help="Score inside the skull only (needs a bone window); the bundle records it.")] = True,
    cavity_bone_hu: Annotated[float, typer.Option(help="HU from which the bone window counts a pixel as skull.")] = 300.0,
    cavity_margin: Annotated[int, typer.Option(help="Pixels kept clear of the skull inside the cavity.")] = 2,
    input: Annotated[_DRNInput, typer.Option("--input", help="difference (ISL) or slice (the original-image ablation; not exportable).")] = _DRNInput.difference,
) -> None:
    """Train the DRN on difference images of the trained DeDN (MoCo, then centre loss)."""
    _require_train_extra()
    import time

    from isl_rt.training.dedn import dedn_prep_params
    from isl_rt.training.drn import DRNTrainConfig, train_drn

    config = DRNTrainConfig(
        preset=preset.value, embedding_dim=embedding_dim, k=k, stride=stride, pretrain_epochs=pretrain_epochs,
        max_epochs=max_epochs, patience=patience, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        queue_size=queue_size, lambda_com=lambda_com, lambda_dis=lambda_dis, dis_loss=dis_loss.value, disorder=disorder.value, seed=seed,
        cavity=cavity, cavity_bone_hu=cavity_bone_hu, cavity_margin=cavity_margin, input=input.value,
        device=device, threads=threads, command=_command_line(),
    )
    config.validate()
    start = time.perf_counter()
    params = dedn_prep_params(ckpt)
    slices = _prepare_slices(data, ckpt, params, labels, max_series)
    with _TrainingView() as view:
        result = train_drn(slices, ckpt, config, resume=resume, progress=view)
    ending = "stopped early" if result.stopped_early else "reached --max-epochs"
    typer.echo(
        f"DRN: {result.pretrain_epochs} MoCo epoch(s), {result.finetune_epochs} fine-tuning epoch(s), {ending}; "
        f"best epoch {result.best_epoch} (loss {result.best_loss:.4g}) -> {result.best_path}"
    )
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}")


def _read_scores(path: Path) -> list[float]:
    """Healthy scan scores from a scores.csv of `isl-rt scan` (ok rows) or a file of one number per line."""
    import csv

    if not path.is_file():
        raise IslError(f"{path} does not exist: pass the scores.csv of an isl-rt scan of held-out healthy scans.")
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text.strip() else ""
    if "scan_score" in first:
        rows = list(csv.DictReader(text.splitlines()))
        values = [r["scan_score"] for r in rows if r.get("status", "ok") in ("ok", "")]
    else:
        values = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        return [float(v) for v in values]
    except ValueError as err:
        raise IslError(f"{path} holds a value that is not a number ({err}).") from None


@app.command("export")
@_user_errors
def export_command(
    ckpt_dir: Annotated[Path, typer.Argument(metavar="CKPT_DIR", help="Checkpoint folder with dedn_best.pt and drn_best.pt.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write, e.g. export/NAME.")],
    calibration_scores: Annotated[Path | None, typer.Option(help="Scan scores of held-out healthy scans: a scores.csv from isl-rt scan, or one number per line.")] = None,
    target_specificity: Annotated[float, typer.Option(help="Specificity the threshold keeps on the calibration scans.")] = 0.95,
    name: Annotated[str, typer.Option(help="Bundle name; default the --out folder's name.")] = "",
    heatmap_threshold: Annotated[float, typer.Option(help="Heat map: difference threshold t.")] = DEFAULT_HEATMAP.threshold,
    heatmap_box: Annotated[int, typer.Option(help="Heat map: box size s (odd).")] = DEFAULT_HEATMAP.box,
    heatmap_gamma: Annotated[float, typer.Option(help="Heat map: exponential enhancement.")] = DEFAULT_HEATMAP.gamma,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundle summary as JSON.")] = False,
) -> None:
    """Export the trained networks to ONNX (parity-checked) and write the model bundle."""
    _require_train_extra()
    import time

    from isl_rt.bundle import HeatmapSpec
    from isl_rt.export import export_bundle

    start = time.perf_counter()
    scores = _read_scores(calibration_scores) if calibration_scores is not None else None
    bundle = export_bundle(
        ckpt_dir, out, name=name, healthy_scan_scores=scores, target_specificity=target_specificity,
        heatmap=HeatmapSpec(heatmap_threshold, heatmap_box, heatmap_gamma), command=_command_line(),
    )
    if as_json:
        _print_json(bundle.summary())
    else:
        _echo_bundle(bundle.summary())
        if bundle.manifest.threshold is None:
            typer.echo("note: no calibration scores given; the bundle has no scan-score threshold yet.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}", err=as_json)


def _echo_bundle(summary: dict[str, Any]) -> None:
    typer.echo(f"bundle {summary['name']} at {summary['bundle']} (format {summary['format_version']}, preset {summary['preset']}, S={summary['size']})")
    typer.echo(f"  windows: {', '.join(summary['windows'])}")
    part, canny = summary["partition"], summary["canny"]
    typer.echo(f"  partition: K={part['k']}, {part['groups']} groups; canny sigma {canny['sigma']:g}, low {canny['low']:g}, high {canny['high']:g}")
    cavity, heat = summary["cavity"], summary["heatmap"]
    region = "whole slice" if cavity is None else (
        f"cranial cavity (bone >= {cavity['bone_hu']:g} HU in window '{cavity['window']}', margin {cavity['margin']} px)")
    typer.echo(f"  scored region: {region}; heat map t {heat['threshold']:g}, box {heat['box']}, gamma {heat['gamma']:g}")
    for key, text in summary["files"].items():
        typer.echo(f"  {key}: {text}")
    t = summary["threshold"]
    if t is None:
        typer.echo("  threshold: not calibrated")
    else:
        q = ", ".join(f"q{k} {v:.4g}" for k, v in t["healthy_quantiles"].items())
        typer.echo(f"  threshold: scan score > {t['scan_score']:.4g} (specificity {t['target_specificity']:g} on {t['n_healthy_scans']} healthy scans; {q})")
    tr = summary["training"]
    epochs = ", ".join(f"{k} {v}" for k, v in tr["epochs"].items())
    typer.echo(f"  trained on: {tr['data']} ({tr['series']} series, {tr['slices']} slices), seed {tr['seed']}, features {tr['feature_network']}, epochs: {epochs}")
    if tr.get("drn_data"):
        typer.echo(f"  DRN trained on: {tr['drn_data']}")
    typer.echo(f"  versions: {', '.join(f'{k} {v}' for k, v in summary['versions'].items())}")


@app.command()
@_user_errors
def phantom(
    out: Annotated[Path, typer.Argument(help="Folder for the cohort: new, empty, or a previous phantom cohort (replaced).")],
    scans: Annotated[int, typer.Option("--scans", help="Number of series to write.")] = 40,
    abnormal_fraction: Annotated[float, typer.Option("--abnormal-fraction", help="Fraction of series with a disorder (0-1).")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed writes the same cohort.")] = 7,
) -> None:
    """Write a synthetic head-CT cohort: DICOM series, labels.csv and lesion masks."""
    import time

    from isl_rt.io.phantom import write_cohort

    start = time.perf_counter()
    summary = write_cohort(out, scans, abnormal_fraction, seed)
    typer.echo(
        f"phantom: {summary.series} series written to {summary.out} ({summary.abnormal} abnormal, "
        f"{summary.disorder_types} disorder types) in {time.perf_counter() - start:.1f} s"
    )


class _ScanProgress:
    """A progress bar on stderr for scan_directory: series done and slices/s. Keeps the rows."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.rows: list[dict[str, Any]] = []
        self.progress = Progress(TextColumn("[bold]scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[rate]}"), console=console, transient=True)
        self.task = self.progress.add_task("scan", total=None, rate="")

    def __call__(self, event: Any) -> None:
        self.rows.append(event.row)
        self.progress.update(self.task, total=event.total, completed=event.index,
                             rate=f"{event.slices_per_second:.1f} slices/s")

    def __enter__(self) -> "_ScanProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@app.command()
@_user_errors
def scan(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder tree of DICOM files.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Scores CSV, one row per series; per-series JSON go to <stem>.series/ beside it.")] = Path("scores.csv"),
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime, onnxruntime-cuda, torch or torch-cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="DeDN images per inference call (whole slices of G images each).")] = 16,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
    heatmaps: Annotated[Path | None, typer.Option("--heatmaps", help="Folder for heat maps (NPZ), overlays of the top slices and slice-score curves.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip series already in --out (default) or start the CSV over.")] = True,
    stride: Annotated[int, typer.Option("--stride", help="0 = the bundle's partition (K×K single cells, the paper); s in 2..K = s² DeDN passes of non-adjacent cells per slice, faster (accuracy measured in benchmarks/RESULTS.md).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary and its rows as JSON.")] = False,
) -> None:
    """Score every axial CT series under DIR: scan score, flag, top slice, APDS; one CSV row per series."""
    import time

    from rich.console import Console

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory, with_stride

    start = time.perf_counter()
    if not directory.is_dir():
        raise IslError(f"{directory} is not a folder: pass the folder that holds the DICOM files.")
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    params = with_stride(params_from_bundle(loaded), stride)
    pair = open_backends(loaded, backend, threads=threads)
    console = Console(stderr=True)
    passes = f"; {params.partition.groups} DeDN passes per slice (--stride {stride})" if stride else ""
    console.print(f"bundle {loaded.manifest.name} ({loaded.root}); backend: {pair.description}{passes}", highlight=False)
    with pair, _ScanProgress(console) as progress:
        scorer = Scorer(params, pair.dedn, pair.drn, dedn_batch=batch_size)
        summary = scan_directory(directory, out, loaded, scorer, backend_name=pair.name, resume=resume,
                                 heatmaps=heatmaps, on_series=progress)
    rows = progress.rows
    errors = [r for r in rows if r.get("status") == "error"]
    if as_json:
        _print_json({"out": str(out), "backend": pair.name, "ok": summary.ok, "errors": summary.errors,
                     "skipped": summary.skipped, "resumed": summary.resumed, "slices": summary.slices, "seconds": summary.seconds,
                     "slices_per_second": summary.slices_per_second, "stage_seconds": summary.stage_seconds,
                     "rows": rows})
    else:
        for row in errors:
            typer.echo(f"error: {row['path']}: {row['error']}", err=True)
        typer.echo(
            f"{summary.ok} series scored ({summary.slices} slices, {summary.slices_per_second:.1f} slices/s), "
            f"{summary.errors} error rows, {summary.skipped} skipped (not CT series), {summary.resumed} already in {out}"
        )
    if summary.ok == 0 and summary.resumed == 0:
        raise IslError(f"No series under {directory} could be scanned; see the error and skipped rows in {out}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}", err=as_json)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo cohort, scores.csv and per-series JSON.")] = Path("isl-rt-demo"),
    scans: Annotated[int, typer.Option("--scans", help="Series in the demo cohort (about half with a disorder).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Cohort seed (the default was never used for training).")] = DEMO_SEED,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime, onnxruntime-cuda, torch or torch-cuda.")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
) -> None:
    """Generate a small phantom cohort, scan it with the shipped bundle, print the scores and the AUC."""
    import time

    from rich.console import Console
    from rich.table import Table

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.demo import run_demo
    from isl_rt.pipeline import Scorer, params_from_bundle

    start = time.perf_counter()
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    pair = open_backends(loaded, backend, threads=threads)
    console = Console(stderr=True)
    console.print(f"demo: {scans} phantom series (seed {seed}) -> {out}; bundle {loaded.manifest.name}; {pair.description}", highlight=False)
    with pair, _ScanProgress(console) as progress:
        result = run_demo(out, scans=scans, seed=seed, bundle=loaded, backend_name=pair.name, on_series=progress,
                          scorer_factory=lambda: Scorer(params_from_bundle(loaded), pair.dedn, pair.drn))
    table = Table(title=f"isl-rt demo ({loaded.manifest.name})")
    for column in ("series", "disorder", "size", "scan score", "flagged"):
        table.add_column(column, justify="right" if column == "scan score" else "left")
    for row in result.rows:
        flag = "-" if row.flagged is None else ("[red]yes[/]" if row.flagged else "no")
        score = f"{row.scan_score:.4f}" if row.status == "ok" else row.status
        table.add_row(row.series, row.disorder, row.size_class or "-", score, flag)
    Console().print(table)
    auc = "n/a (one class only)" if result.auc is None else f"{result.auc:.3f}"
    typer.echo(f"cohort AUC {auc} over {sum(r.status == 'ok' for r in result.rows)} series; "
               f"{result.slices_per_second:.1f} slices/s; scores in {result.scores_csv}, labels in {result.labels_csv}")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}")


@app.command()
@_user_errors
def calibrate(
    directory: Annotated[Path, typer.Argument(metavar="HEALTHY_DIR", help="DICOM tree of held-out healthy scans (never used for training).", show_default=False)],
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder whose threshold to calibrate (written into its manifest).")],
    target_specificity: Annotated[float, typer.Option(help="Share of the healthy scans that must stay below the threshold.")] = 0.95,
    labels: Annotated[Path | None, typer.Option("--labels", help="labels.csv (SeriesInstanceUID,label): only series labelled 0 are used.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Scores CSV of the calibration scans.")] = Path("calibration-scores.csv"),
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
) -> None:
    """Scan held-out healthy scans and set the bundle's scan-score threshold from their scores."""
    import time

    from isl_rt.backends import open_backends
    from isl_rt.bundle import calibrate_bundle, load_bundle
    from isl_rt.evaluate import read_labels, read_score_rows
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    start = time.perf_counter()
    healthy = None if labels is None else {uid for uid, row in read_labels(labels).items() if row["label"] == "0"}
    loaded = load_bundle(bundle)
    pair = open_backends(loaded, "auto", threads=threads)
    with pair:
        summary = scan_directory(directory, out, loaded, Scorer(params_from_bundle(loaded), pair.dedn, pair.drn),
                                 backend_name=pair.name, resume=False)
    scores = [float(r["scan_score"]) for r in read_score_rows(out)
              if r["status"] == "ok" and (healthy is None or r["SeriesInstanceUID"] in healthy)]
    calibrated = calibrate_bundle(loaded.root, scores, target_specificity)
    t = calibrated.require_threshold()
    typer.echo(f"{len(scores)} healthy scans ({summary.slices} slices, {summary.errors} error rows): threshold "
               f"scan score > {t.scan_score:.6g} for specificity {t.target_specificity:g}; written to {calibrated.root}")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}")


class Precision(str, Enum):
    """Engine precision for ``build-engine``."""

    fp16 = "fp16"
    fp32 = "fp32"


@app.command("build-engine")
@_user_errors
def build_engine(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Model bundle folder (or its manifest.json).", show_default=False)],
    precision: Annotated[Precision, typer.Option("--precision", help="fp16: FP16 tensor cores (FP32 normalisations); fp32: IEEE FP32, TF32 off.")] = Precision.fp16,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest DeDN batch (images) the engine accepts; at least one slice (G images).")] = 64,
    workspace: Annotated[int, typer.Option("--workspace", help="TensorRT builder workspace in MB.")] = 4096,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="TensorRT timing cache file: read if it exists, written after the build.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Engine folder; default <cache>/<key> ($ISL_RT_ENGINE_CACHE or ~/.cache/isl-rt/engines).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then compare the engines with ONNX Runtime FP32 on phantom slices.")] = False,
) -> None:
    """Build TensorRT engines of a bundle for the GPU here, into the engine cache that --backend auto/tensorrt reads."""
    import time

    from isl_rt.bundle import load_bundle
    from isl_rt.engine import build_engines, compare_with_onnxruntime

    start = time.perf_counter()
    loaded = load_bundle(bundle)
    result = build_engines(loaded, precision=precision.value, max_batch=max_batch, workspace_mb=workspace,
                           timing_cache=timing_cache, out=out)
    record = result.record
    typer.echo(f"engines for {loaded.manifest.name} in {result.folder} ({result.seconds:.1f} s, {record.builder['fp16_method']})")
    for field_name, value in record.key.describe().items():
        typer.echo(f"  {field_name}: {value}")
    if check:
        comparisons = compare_with_onnxruntime(loaded, result.folder)
        for c in comparisons:
            stats = "" if c.stats is None else (f"max {c.stats.max_abs:.3g}, mean {c.stats.mean_abs:.3g}, "
                                                f"median {c.stats.median_abs:.3g}, p99 {c.stats.p99_abs:.3g}")
            typer.echo(f"  check {c.name}: {'ok' if c.passed else 'FAILED'} ({stats}){'' if c.passed else ': ' + c.reason}")
        failed = [c.name for c in comparisons if not c.passed]
        if failed:
            raise IslError(f"The engines in {result.folder} differ from ONNX Runtime FP32 beyond tolerance on {', '.join(failed)}.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {_command_line()}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
