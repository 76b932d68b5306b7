"""Export: trained checkpoints -> ONNX networks -> a validated model bundle.

:func:`export_onnx` exports one network (opset 17, dynamic batch axis) with the TorchScript
exporter (``dynamo=False``: the dynamo exporter needs onnxscript, which the ``train`` extra does
not install), then cleans the graph with onnx's own tooling: constant subgraphs (the padding
arithmetic of the reflection pads, for instance) are folded into initializers with
``onnx.reference``, unused initializers dropped, shapes inferred with
``onnx.shape_inference`` (strict) and the model checked with ``onnx.checker`` (full check).
Then onnxruntime runs the saved file on the given batch and on its first image alone (the
dynamic axis), and the export fails with a sentence when any output differs from torch by more
than ``tolerance`` (1e-4).

:func:`export_bundle` does that for the DeDN (``masked`` [B,2C+1,S,S] -> ``inpainted`` [B,C,S,S])
and the DRN (``difference`` [B,C,S,S] -> ``embedding`` [B,D]) of a checkpoint folder, checking
parity on real prepared slices (fanned out with the bundle's partition) and real difference
images from the training caches, and writes ``manifest.json``. The scan-score threshold comes
from the scan scores of held-out healthy scans, given as numbers or computed by a ``score_scans``
callable that runs the runtime pipeline on the freshly written bundle (there is no second
pipeline here); without either the bundle is written uncalibrated (``threshold: null``) and
:func:`calibrate_bundle` can add the threshold later.
"""

from __future__ import annotations

import io
import math
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from isl_rt.bundle import (
    DEFAULT_HEATMAP,
    FORMAT_VERSION,
    Bundle,
    CannySpec,
    DRNSpec,
    FileSpec,
    HeatmapSpec,
    InputSpec,
    Manifest,
    PartitionSpec,
    ThresholdSpec,
    TrainingSpec,
    WindowSpec,
    calibrate_bundle,
    calibrate_threshold,
    load_bundle,
    sha256_file,
    write_manifest,
)
from isl_rt.errors import BundleError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import onnx
    import torch

    from isl_rt.kernels.partition import Partition
    from isl_rt.training.data import PrepParams, SliceSet

__all__ = [
    "DEFAULT_HEATMAP",
    "OPSET",
    "PARITY_TOLERANCE",
    "ExportError",
    "calibrate_bundle",
    "export_bundle",
    "export_onnx",
    "fold_constants",
]

OPSET = 17
PARITY_TOLERANCE = 1e-4

DEDN_IO = ("masked", "inpainted")
DRN_IO = ("difference", "embedding")


class ExportError(BundleError):
    """An export that cannot produce a correct bundle (missing checkpoint, failed check or parity)."""


# ---- graph clean-up -------------------------------------------------------------------------------
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def fold_constants(model: onnx.ModelProto) -> int:
    """Fold every node whose inputs are all constants into initializers (in place).

    Uses ``onnx.reference.ReferenceEvaluator`` to evaluate such nodes one at a time, in graph
    order, so chains of shape arithmetic collapse completely. Returns the number of nodes removed.
    Unused initializers are dropped afterwards.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    for name in graph_inputs:
        known.pop(name, None)
    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        inputs = [name for name in node.input if name]
        foldable = (
            node.domain in ("", "ai.onnx")
            and node.op_type not in _NOT_FOLDABLE
            and not any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute)
            and all(name in known for name in inputs)
        )
        if not foldable:
            kept.append(node)
            continue
        evaluator = ReferenceEvaluator(node)
        outputs = evaluator.run(None, {name: known[name] for name in inputs})
        for name, value in zip(node.output, outputs):
            if name:
                known[name] = np.asarray(value)
        folded += 1
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    new_inits = [numpy_helper.from_array(np.asarray(known[name]), name) for name in known if name in used and name not in graph_inputs]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    # value_info of folded tensors is stale; shape inference recomputes what is needed
    del graph.value_info[:]
    return folded


# ---- one network ----------------------------------------------------------------------------------
def export_onnx(
    model: torch.nn.Module,
    path: Path,
    *,
    input_name: str,
    output_name: str,
    example: np.ndarray,
    tolerance: float = PARITY_TOLERANCE,
    doc: str = "",
) -> dict[str, float]:
    """Export ``model`` to ``path`` (opset 17, dynamic batch), clean and check it, and verify
    onnxruntime against torch on ``example`` (a real batch). Returns the parity figures."""
    import onnx
    import onnxruntime as ort
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    sample = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice, tracer notes on shape checks, and
        # instance norm "exported with train=True" (it has no running statistics: same maths)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    fold_constants(proto)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as err:  # noqa: BLE001 - onnx raises several checker/inference types
        raise ExportError(f"{path.name} failed the ONNX checks after export ({type(err).__name__}: {str(err).splitlines()[0]}).") from None
    proto.producer_name = "isl-rt"
    proto.doc_string = doc
    path.write_bytes(proto.SerializeToString())

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(sample).numpy()
    got = session.run([output_name], {input_name: sample.numpy()})[0]
    single = session.run([output_name], {input_name: sample.numpy()[:1]})[0]
    if got.shape != expected.shape or single.shape != (1, *expected.shape[1:]):
        raise ExportError(
            f"{path.name} returns {output_name} of shape {got.shape} where torch gives {expected.shape}: the export is wrong."
        )
    err_batch = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    err_single = float(np.max(np.abs(single - expected[:1]))) if expected.size else 0.0
    worst = max(err_batch, err_single)
    if not math.isfinite(worst) or worst > tolerance:
        raise ExportError(
            f"{path.name} differs from the PyTorch network by up to {worst:.3g} (more than {tolerance:g}) on "
            f"{sample.shape[0]} prepared inputs: the export is not faithful; the bundle was not written."
        )
    return {"max_abs_error": worst, "batch": float(sample.shape[0])}


# ---- the bundle -----------------------------------------------------------------------------------
def _parity_inputs(
    ckpt_dir: Path, partition: Partition, channels: int, size: int, count: int, slices: SliceSet | None
) -> tuple[np.ndarray, np.ndarray]:
    """Real inputs for the parity checks: the ``count`` prepared training slices with the most
    foreground (among up to 256 spread over the set), fanned out with the bundle's partition, and
    their cached difference images.
    The slices come from ``slices`` when given, else from the checkpoint's cache (``data/``)."""
    from isl_rt import kernels

    dif_path = ckpt_dir / "differences" / "dif.npy"
    try:
        if slices is not None:
            x, edges = slices.x, slices.edges
        else:
            x = np.load(ckpt_dir / "data" / "x.npy", mmap_mode="r")
            edges = np.load(ckpt_dir / "data" / "edges.npy", mmap_mode="r")
        dif = np.load(dif_path, mmap_mode="r")
    except (OSError, ValueError):
        raise ExportError(
            f"{ckpt_dir} lacks the prepared slices (data/x.npy, data/edges.npy) or the difference images "
            "(differences/dif.npy) that the parity check runs on: train with isl-rt train dedn/drn into this folder."
        ) from None
    if x.shape[1:] != (channels, size, size) or dif.shape != x.shape:
        raise ExportError(f"{ckpt_dir}/data holds slices of shape {x.shape[1:]}, not the networks' ({channels}, {size}, {size}).")
    candidates = np.unique(np.linspace(0, x.shape[0] - 1, num=min(x.shape[0], 256)).astype(np.int64))
    foreground = np.asarray([(np.asarray(x[i]).max(axis=0) > 0.05).mean() for i in candidates])
    pick = np.sort(candidates[np.argsort(-foreground, kind="stable")[: max(1, count)]])
    xs = np.array(x[pick], dtype=np.float32)
    es = np.array(edges[pick])
    fan = kernels.fanout(xs, es, partition.group_map(size), partition.groups)
    return np.ascontiguousarray(fan), np.array(dif[pick], dtype=np.float32)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from isl_rt import __version__

    return {
        "isl_rt": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def export_bundle(
    ckpt_dir: Path,
    out: Path,
    *,
    name: str = "",
    healthy_scan_scores: Sequence[float] | None = None,
    score_scans: Callable[[Bundle], Sequence[float]] | None = None,
    target_specificity: float = 0.95,
    heatmap: HeatmapSpec = DEFAULT_HEATMAP,
    parity_slices: int = 4,
    slices: SliceSet | None = None,
    tolerance: float = PARITY_TOLERANCE,
    command: str = "",
    notes: str = "",
) -> Bundle:
    """Export ``ckpt_dir/dedn_best.pt`` and ``drn_best.pt`` into the bundle folder ``out``.

    ``notes`` (the data's source, licence and split, in the trainer's words) go into the
    manifest's ``training.notes``.

    ``healthy_scan_scores`` (scan scores of held-out healthy scans) or ``score_scans`` (called with
    the written, uncalibrated bundle; returns those scores) calibrates the threshold. The parity
    checks run on ``slices`` (the training slices) or, by default, on the checkpoint's cache.
    Everything is written to a temporary folder beside ``out`` first and moved in, manifest last,
    only when every check passed.
    """
    from isl_rt.training.dedn import load_dedn
    from isl_rt.training.drn import load_drn

    ckpt_dir, out = Path(ckpt_dir), Path(out)
    if healthy_scan_scores is not None and score_scans is not None:
        raise ExportError("pass either healthy scan scores or a scoring function for the calibration, not both.")
    threshold = calibrate_threshold(healthy_scan_scores, target_specificity) if healthy_scan_scores is not None else None
    dedn_path, drn_path = ckpt_dir / "dedn_best.pt", ckpt_dir / "drn_best.pt"
    for path, what in ((dedn_path, "dedn"), (drn_path, "drn")):
        if not path.is_file():
            raise ExportError(f"{path} does not exist: train it first (isl-rt train {what} DATA --ckpt {ckpt_dir}).")
    dedn, dedn_meta = load_dedn(dedn_path)
    drn, drn_meta = load_drn(drn_path)
    if drn_meta["config"].get("input", "difference") != "difference":
        raise ExportError(
            f"{drn_path} was trained on the original slices (the ablation of benchmarks/accuracy.py), but the runtime "
            "feeds the DRN difference images: train it without --input slice."
        )
    if drn_meta["differences"]["dedn_sha256"] != sha256_file(dedn_path):
        raise ExportError(
            f"{drn_path} was trained on difference images of another DeDN than {dedn_path}: train the DRN again (isl-rt train drn)."
        )
    from isl_rt.kernels.partition import Partition
    from isl_rt.training.data import PrepParams

    params = PrepParams.from_dict(dedn_meta["data"])
    partition = Partition.from_dict(drn_meta["partition"])
    channels, size = params.channels, params.size
    fan, dif = _parity_inputs(ckpt_dir, partition, channels, size, parity_slices, slices)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        bundle = _write_bundle(
            stage, out, name or out.name, dedn, dedn_meta, drn, drn_meta, params, partition, fan, dif, threshold, heatmap, tolerance, command,
            notes,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if score_scans is not None:
        bundle = calibrate_bundle(out, score_scans(bundle), target_specificity)
    return bundle


def _drn_data(dedn_data: dict[str, Any], drn_data: dict[str, Any]) -> str:
    """The manifest's ``training.drn_data``: the DRN's data in words when it differs from the DeDN's."""
    keys = ("data", "series", "slices")
    if all(dedn_data.get(k) == drn_data.get(k) for k in keys):
        return ""
    return f"{drn_data['data']} ({drn_data['series']} series, {drn_data['slices']} slices)"


def _save_torch(path: Path, model: torch.nn.Module, **config: Any) -> str:
    """Save ``model``'s weights with what rebuilds it (kind, preset, channels, ...); returns the sha256."""
    import torch

    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    torch.save({"config": config, "state_dict": state}, path)
    return sha256_file(path)


def _write_bundle(
    stage: Path,
    out: Path,
    name: str,
    dedn: torch.nn.Module,
    dedn_meta: dict[str, Any],
    drn: torch.nn.Module,
    drn_meta: dict[str, Any],
    params: PrepParams,
    partition: Partition,
    fan: np.ndarray,
    dif: np.ndarray,
    threshold: ThresholdSpec | None,
    heatmap: HeatmapSpec,
    tolerance: float,
    command: str,
    notes: str,
) -> Bundle:
    """Export both networks into ``stage``, write and validate the manifest, move it all to ``out``."""
    from isl_rt.training.drn import DRNTrainConfig

    channels, size = params.channels, params.size
    parity = {
        "dedn": export_onnx(dedn, stage / "dedn.onnx", input_name=DEDN_IO[0], output_name=DEDN_IO[1], example=fan, tolerance=tolerance,
                            doc=f"isl-rt DeDN ({dedn_meta['config']['preset']}): masked [B,{2 * channels + 1},{size},{size}] -> inpainted [B,{channels},{size},{size}]"),
        "drn": export_onnx(drn, stage / "drn.onnx", input_name=DRN_IO[0], output_name=DRN_IO[1], example=dif, tolerance=tolerance,
                           doc=f"isl-rt DRN: difference [B,{channels},{size},{size}] -> embedding [B,{drn.embedding_dim}]"),
    }
    dedn_cfg, drn_cfg = dedn_meta["config"], drn_meta["config"]
    drn_config = DRNTrainConfig.from_dict(drn_cfg)
    # the same weights for the torch backend (reference runs, the GPU path without TensorRT)
    torch_files = {
        "dedn_torch": _save_torch(stage / "dedn.pt", dedn, kind="dedn", preset=str(dedn_cfg["preset"]), channels=channels),
        "drn_torch": _save_torch(stage / "drn.pt", drn, kind="drn", preset=str(drn_cfg["preset"]), channels=channels,
                                 embedding_dim=int(drn.embedding_dim)),
    }
    data = dedn_meta["data"]
    dedn_hist = dedn_meta["history"]
    drn_hist = drn_meta["history"]
    best_dedn = min(dedn_hist, key=lambda h: h["recon"]) if dedn_hist else {}
    finetune = [h for h in drn_hist if int(h.get("phase", 0)) == 3]
    best_drn = min(finetune, key=lambda h: h["loss"]) if finetune else {}
    training = TrainingSpec(
        data=str(data["data"]),
        series=int(data["series"]),
        slices=int(data["slices"]),
        seed=int(dedn_cfg["seed"]),
        command=" && ".join(c for c in (dedn_cfg.get("command", ""), drn_cfg.get("command", ""), command) if c),
        feature_network=str(dedn_meta["feature_network"]),
        epochs={
            "dedn": int(dedn_meta["epoch"]),
            "drn_pretrain": int(drn_meta["moco_epochs"]),
            "drn_finetune": int(drn_meta["finetune_epochs"]),
        },
        drn_data=_drn_data(data, drn_meta["data"]),
        notes=notes,
        losses={
            "dedn": {"weights": dedn_cfg["weights"], "best": best_dedn, "feature_network": dedn_meta.get("feature_summary", {})},
            "drn": {
                "lambda_com": drn_cfg["lambda_com"],
                "lambda_dis": drn_cfg["lambda_dis"],
                "dis_loss": drn_cfg["dis_loss"],
                "disorder": drn_config.disorder,
                "best": best_drn,
                "drn_seed": drn_cfg["seed"],
            },
            "parity_max_abs_error": {key: value["max_abs_error"] for key, value in parity.items()},
        },
    )
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        name=name,
        preset=str(dedn_cfg["preset"]),
        size=size,
        windows=[WindowSpec(w.name, w.level, w.width) for w in params.windows],
        partition=PartitionSpec(**partition.to_dict()),
        canny=CannySpec(params.canny.sigma, params.canny.low, params.canny.high),
        files={
            "dedn": FileSpec("dedn.onnx", sha256_file(stage / "dedn.onnx"), DEDN_IO[0], DEDN_IO[1], OPSET),
            "drn": FileSpec("drn.onnx", sha256_file(stage / "drn.onnx"), DRN_IO[0], DRN_IO[1], OPSET),
            "dedn_torch": FileSpec("dedn.pt", torch_files["dedn_torch"], DEDN_IO[0], DEDN_IO[1], 0),
            "drn_torch": FileSpec("drn.pt", torch_files["drn_torch"], DRN_IO[0], DRN_IO[1], 0),
        },
        drn=DRNSpec(centre=list(drn_meta["centre"]), embedding_dim=int(drn.embedding_dim)),
        threshold=threshold,
        heatmap=heatmap,
        training=training,
        versions=_versions(),
        cavity=drn_config.cavity_spec(),
        input=InputSpec.for_windows(params.windows),  # image windows: trained on pre-windowed images
    )
    write_manifest(stage, manifest)
    load_bundle(stage)  # the staged bundle must pass the runtime's own validation
    out.mkdir(parents=True, exist_ok=True)
    for file_name in ("dedn.onnx", "drn.onnx", "dedn.pt", "drn.pt", "manifest.json"):  # manifest last
        os.replace(stage / file_name, out / file_name)
    return load_bundle(out)
