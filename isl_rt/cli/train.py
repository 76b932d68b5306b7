"""`isl-rt train dedn|drn` and `isl-rt export`. torch and onnx (the `train` extra) are imported
inside these commands only; without them a command prints one sentence naming the extra and
the rest of the CLI works as before."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from isl_rt.bundle import DEFAULT_HEATMAP
from isl_rt.cli._app import CONTEXT_SETTINGS, app, command_line, print_json, user_errors
from isl_rt.cli.info import echo_bundle
from isl_rt.errors import IslError


# torch and onnx are imported inside these commands only (the `train` extra); without them a
# command prints one sentence naming the extra and the rest of the CLI works as before.

train_app = typer.Typer(
    name="train",
    context_settings=CONTEXT_SETTINGS,
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


_LABELS_HELP = (
    "labels.csv: SeriesInstanceUID,label keeps the series labelled 0; a per-slice CSV (image,label; see isl-rt split) "
    "keeps the images labelled 0."
)


def _prepare_slices(data: str, ckpt: Path, params: Any, labels: Path | None, max_series: int | None, label_column: str) -> Any:
    from rich.console import Console

    from isl_rt.training.data import prepare

    console = Console(stderr=True)
    with console.status(f"preparing slices of {data} (cached in {ckpt / 'data'})") as status:

        def report(done: int, total: int, series: str) -> None:
            status.update(f"preparing slices: series {done}/{total} ({series})")

        slices = prepare(data, params, labels=labels, max_series=max_series, cache_dir=ckpt / "data", progress=report,
                         label_column=label_column)
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
@user_errors
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
    labels: Annotated[Path | None, typer.Option(help=_LABELS_HELP)] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a per-slice labels CSV (e.g. lesion).")] = "label",
    max_series: Annotated[int | None, typer.Option(help="Use at most this many series.")] = None,
    adam_betas: Annotated[str, typer.Option(help="Adam beta1,beta2 (EdgeConnect: 0,0.9; the reconstruction-only recipe: 0.9,0.99).")] = "0,0.9",
    lr_schedule: Annotated[str, typer.Option(help="constant, or onecycle (warm-up then cosine decay over max-epochs × steps-per-epoch).")] = "constant",
    val_labels: Annotated[Path | None, typer.Option(help="Per-slice labels of held-out patients (e.g. val.csv of isl-rt split): the epoch is chosen by the reconstruction error of their lesion-free slices on the inference grid, not by the training loss.")] = None,
    augment: Annotated[float, typer.Option(help="Share of each batch's slices altered the ways another site's export differs (contrast, gamma, resampling, JPEG, noise, rotation; isl_rt.training.augment); 0 = none.")] = 0.0,
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
    beta1, beta2 = _parse_floats(adam_betas, 2, "--adam-betas")
    sigma, low, high = _parse_floats(canny, 3, "--canny")
    params = PrepParams(size=size or PRESETS[preset.value].size, windows=_parse_windows(windows), canny=CannySpec(sigma, low, high))
    config = DeDNTrainConfig(
        preset=preset.value, max_epochs=max_epochs, patience=patience, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        lr=lr, weights=LossWeights(l1=w[0], adversarial=w[1], perceptual=w[2], style=w[3], adversarial_kind=adversarial.value),
        seed=seed, device=device, threads=threads, vgg19_weights=str(vgg19_weights or ""), feature_steps=feature_steps,
        beta1=beta1, beta2=beta2, lr_schedule=lr_schedule, augment=augment, command=command_line(),
    )
    config.validate()
    start = time.perf_counter()
    slices = _prepare_slices(data, ckpt, params, labels, max_series, label_column)
    validation = None
    if val_labels is not None:
        validation = _prepare_slices(data, ckpt / "validation", slices.params, val_labels, None, label_column)
    with _TrainingView() as view:
        result = train_dedn(slices, ckpt, config, resume=resume, progress=view, validation=validation)
    ending = "stopped early" if result.stopped_early else "reached --max-epochs"
    typer.echo(
        f"DeDN: {result.epochs} epoch(s), {ending}; best epoch {result.best_epoch} "
        f"(selection loss {result.best_loss:.4g}) -> {result.best_path}"
    )
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")


def _cavity_for(config: Any, windows: Any, bone_hu: float | None) -> Any:
    """The DRN config with its cranial cavity on the data's own terms: the bone window and 300 HU
    for DICOM CT; the gray channel and pseudo-HU 3900 (0.975 of full scale) for pre-windowed gray
    images, where bone is saturated white."""
    from dataclasses import replace

    from isl_rt.bundle import image_windows

    if tuple(windows) == image_windows(1):
        return replace(config, cavity_window="gray", cavity_bone_hu=3900.0 if bone_hu is None else bone_hu)
    return replace(config, cavity_bone_hu=300.0 if bone_hu is None else bone_hu)


@train_app.command("drn")
@user_errors
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
    labels: Annotated[Path | None, typer.Option(help=_LABELS_HELP)] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a per-slice labels CSV (e.g. lesion).")] = "label",
    max_series: Annotated[int | None, typer.Option(help="Use at most this many series.")] = None,
    cavity: Annotated[bool, typer.Option("--cavity/--no-cavity", help="Score inside the skull only (needs a bone window); the bundle records it.")] = True,
    cavity_bone_hu: Annotated[float | None, typer.Option(help="HU from which the bone window counts a pixel as skull; default 300 for DICOM CT, 3900 (0.975 of full scale: bone is saturated white) on the gray channel of pre-windowed images.", show_default=False)] = None,
    cavity_margin: Annotated[int, typer.Option(help="Pixels kept clear of the skull inside the cavity.")] = 2,
    cavity_sides: Annotated[int, typer.Option(help="Directions (of left, right, up, down) in which a cavity pixel must reach bone; 3 keeps rows with a gap in the skull on one side.")] = 4,
    cavity_largest: Annotated[bool, typer.Option("--cavity-largest", help="Keep only the cavity component with the most pixels enclosed on all four sides (drops what a head holder encloses with the skull).")] = False,
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
        cavity=cavity, cavity_margin=cavity_margin,
        cavity_sides=cavity_sides, cavity_largest=cavity_largest, input=input.value,
        device=device, threads=threads, command=command_line(),
    )
    config.validate()
    start = time.perf_counter()
    params = dedn_prep_params(ckpt)
    config = _cavity_for(config, params.windows, cavity_bone_hu)
    slices = _prepare_slices(data, ckpt, params, labels, max_series, label_column)
    with _TrainingView() as view:
        result = train_drn(slices, ckpt, config, resume=resume, progress=view)
    ending = "stopped early" if result.stopped_early else "reached --max-epochs"
    typer.echo(
        f"DRN: {result.pretrain_epochs} MoCo epoch(s), {result.finetune_epochs} fine-tuning epoch(s), {ending}; "
        f"best epoch {result.best_epoch} (loss {result.best_loss:.4g}) -> {result.best_path}"
    )
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}")


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


def _parse_slice_score(text: str) -> Any:
    """``drn`` or ``residual[:T[:WINDOW[:MEASURE[:INSET[:adjacent]]]]]`` as a SliceScoreSpec (an
    empty window: the bundle's first; an empty measure: ``largest``; an empty inset: 0; the word
    ``adjacent`` last: count only pixels bright on an adjacent slice too)."""
    from isl_rt.bundle import RESIDUAL_MEASURES, SliceScoreSpec

    kind, *rest = text.split(":")
    if kind == "drn" and not rest:
        return SliceScoreSpec()
    if kind != "residual" or len(rest) > 5:
        raise IslError(f"--slice-score must be drn or residual[:T[:WINDOW[:MEASURE[:INSET[:adjacent]]]]], got {text!r}.")
    try:
        threshold = float(rest[0]) if rest and rest[0] else 0.1
    except ValueError:
        raise IslError(f"--slice-score {text!r}: the threshold {rest[0]!r} is not a number.") from None
    measure = rest[2] if len(rest) > 2 and rest[2] else "largest"
    if measure not in RESIDUAL_MEASURES:
        raise IslError(f"--slice-score {text!r}: the measure {measure!r} is not one of {', '.join(RESIDUAL_MEASURES)}.")
    inset_text = rest[3] if len(rest) > 3 and rest[3] else "0"
    if not inset_text.isdigit():
        raise IslError(f"--slice-score {text!r}: the inset {inset_text!r} is not a whole number of pixels.")
    adjacent = rest[4] if len(rest) > 4 else ""
    if adjacent not in ("", "adjacent"):
        raise IslError(f"--slice-score {text!r}: the last field {adjacent!r} is not 'adjacent' (or empty).")
    return SliceScoreSpec("residual", threshold, rest[1] if len(rest) > 1 else "", measure, int(inset_text),
                          adjacent == "adjacent")


@app.command("export")
@user_errors
def export_command(
    ckpt_dir: Annotated[Path, typer.Argument(metavar="CKPT_DIR", help="Checkpoint folder with dedn_best.pt and drn_best.pt.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write, e.g. export/NAME.")],
    calibration_scores: Annotated[Path | None, typer.Option(help="Scan scores of held-out healthy scans: a scores.csv from isl-rt scan, or one number per line.")] = None,
    target_specificity: Annotated[float, typer.Option(help="Specificity the threshold keeps on the calibration scans.")] = 0.95,
    name: Annotated[str, typer.Option(help="Bundle name; default the --out folder's name.")] = "",
    heatmap_threshold: Annotated[float, typer.Option(help="Heat map: difference threshold t.")] = DEFAULT_HEATMAP.threshold,
    heatmap_box: Annotated[int, typer.Option(help="Heat map: box size s (odd).")] = DEFAULT_HEATMAP.box,
    heatmap_gamma: Annotated[float, typer.Option(help="Heat map: exponential enhancement.")] = DEFAULT_HEATMAP.gamma,
    slice_score: Annotated[str, typer.Option("--slice-score", help="What scores a slice: drn (the paper), or residual[:T[:WINDOW[:MEASURE[:INSET[:adjacent]]]]]: of the pixels inside the scored region less INSET pixels along its border (default 0) brighter than the dedisorder image by more than T (default 0.1) in WINDOW (default the first), and with 'adjacent' at the same place on the slice before or after too, the share of the slice in their largest 4-connected patch (MEASURE largest, the default) or in all of them (area); no DRN at scan time. Calibrate afterwards.")] = "drn",
    cavity_air_margin: Annotated[int, typer.Option("--cavity-air-margin", help="Leave out of the cranial cavity every pixel within this many pixels of the air around the head (at the skull base the cavity can otherwise be the space between the head and a head holder); 0 = none. Applies at scan time. Calibrate afterwards.")] = 0,
    hu_window: Annotated[str, typer.Option("--hu-window", metavar="LEVEL,WIDTH", help="For networks trained on pre-windowed gray images: the brain window (HU) those images were made with, so the bundle reads DICOM CT too, shown through it as an 8-bit image, e.g. 40,120. Empty = image series only.")] = "",
    notes_file: Annotated[Path | None, typer.Option("--notes-file", help="A text file whose content goes into the manifest (training.notes) and `isl-rt info --bundle`: the data's source, licence and conditions, the split.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundle summary as JSON.")] = False,
) -> None:
    """Export the trained networks to ONNX (parity-checked) and write the model bundle."""
    _require_train_extra()
    import time

    from dataclasses import replace

    from isl_rt.bundle import HeatmapSpec, HuWindowSpec
    from isl_rt.export import export_bundle

    start = time.perf_counter()
    spec = _parse_slice_score(slice_score)
    window = HuWindowSpec(*_parse_floats(hu_window, 2, "--hu-window")) if hu_window else None
    if window is not None and not window.width > 0:
        raise IslError(f"--hu-window {hu_window!r}: the width (HU) must be above 0.")
    if cavity_air_margin < 0:
        raise IslError(f"--cavity-air-margin must be 0 or more pixels, got {cavity_air_margin}.")
    if cavity_air_margin and calibration_scores is not None:
        raise IslError("--calibration-scores were made without the cavity's air margin; export with --cavity-air-margin "
                       "alone and run isl-rt calibrate on the bundle.")
    if spec.kind != "drn" and calibration_scores is not None:
        raise IslError("--calibration-scores were made with the DRN's slice scores; export with --slice-score "
                       f"{slice_score} alone and run isl-rt calibrate on the bundle.")
    scores = _read_scores(calibration_scores) if calibration_scores is not None else None
    notes = ""
    if notes_file is not None:
        try:
            notes = notes_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise IslError(f"--notes-file {notes_file} cannot be read as UTF-8 text ({type(err).__name__}: {err}).") from None
    bundle = export_bundle(
        ckpt_dir, out, name=name, healthy_scan_scores=scores, target_specificity=target_specificity,
        heatmap=HeatmapSpec(heatmap_threshold, heatmap_box, heatmap_gamma), command=command_line(), notes=notes,
    )
    if spec.kind != "drn":
        from isl_rt.bundle import set_slice_score

        bundle = set_slice_score(bundle.root, replace(spec, window=spec.window or bundle.manifest.windows[0].name))
    if cavity_air_margin:
        from isl_rt.bundle import set_cavity_air_margin

        bundle = set_cavity_air_margin(bundle.root, cavity_air_margin)
    if window is not None:
        from isl_rt.bundle import set_hu_window

        bundle = set_hu_window(bundle.root, window)
    if as_json:
        print_json(bundle.summary())
    else:
        echo_bundle(bundle.summary())
        if bundle.manifest.threshold is None:
            typer.echo("note: no calibration scores given; the bundle has no scan-score threshold yet.")
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=as_json)


@app.command("split")
@user_errors
def split_command(
    labels: Annotated[Path, typer.Argument(metavar="LABELS_CSV", help="Per-slice labels CSV: image (relative to the CSV or absolute), a 0/1 label column, optional mask and patient columns.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for train.csv, val.csv, test.csv and split.json.")],
    seed: Annotated[int, typer.Option(help="Seed of the patient permutation: same seed, same split.")] = 0,
    fractions: Annotated[str, typer.Option(help="Shares of patients for train,val,test.")] = "0.6,0.2,0.2",
    label_column: Annotated[str, typer.Option(help="The 0/1 label column (e.g. lesion).")] = "label",
    group_column: Annotated[str, typer.Option(help="The column whose values stay together (patients are split, never slices).")] = "patient",
) -> None:
    """Split a per-slice labels CSV by patient into training, validation and test parts."""
    from isl_rt.labels import PARTS, write_split

    summary = write_split(labels, out, seed=seed, fractions=_parse_floats(fractions, 3, "--fractions"),
                          label_column=label_column, group_column=group_column)
    for part in PARTS:
        info = summary["parts"][part]  # type: ignore[index]
        typer.echo(f"{part}: {len(info['groups'])} patients, {info['slices']} slices ({info['label_1']} labelled 1) -> {out / (part + '.csv')}")
    typer.echo(f"PASSED | split seed {seed} | {command_line()}")
