"""TensorRT engines built from a model bundle: the cache key, the FP16 ONNX graph, the build and
the accuracy check against ONNX Runtime.

An engine is tied to the exact networks (sha256 of the bundle's FP32 ONNX files), the GPU model
and compute capability, the TensorRT version, the precision and the batch profile; those fields
are the :class:`EngineKey`, whose hex :attr:`EngineKey.id` names the cache folder::

    <cache>/<key id>/dedn.engine, drn.engine, engine.json

``engine.json`` holds the key, how the engines were built (TensorRT major version, which FP16
method ran) and the sha256 of both engine files. The cache is ``$ISL_RT_ENGINE_CACHE`` or
``~/.cache/isl-rt/engines``; engines are never committed.

FP16 (see :func:`to_fp16_onnx`): TensorRT 11 builds only strongly typed networks, whose tensor
types are the ONNX graph's, so the FP32 graph is converted to an FP16 graph first, with the
numerically sensitive ops kept in FP32 between Cast nodes. TensorRT 10 builds the FP32 graph with
the FP16 builder flag instead. Either way the DeDN engine's input and output are float16 (the
CUDA fan-out writes float16 straight into the input binding and compose_diff reads float16) and
the DRN engine's input and output stay float32 (compose_diff writes float32; the slice score is
a float32 distance).

Importing this module imports neither TensorRT, onnx nor torch: each is imported by the function
that needs it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from isl_rt.errors import BackendError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.backends import BackendPair
    from isl_rt.bundle import Bundle

__all__ = [
    "DEFAULT_KEEP_FP32_OPS",
    "DEFAULT_TOLERANCES",
    "ENGINE_JSON",
    "NETWORKS",
    "PRECISIONS",
    "BatchProfile",
    "BuildResult",
    "EngineKey",
    "EngineRecord",
    "ErrorStats",
    "Fp16Report",
    "GpuInfo",
    "OutputComparison",
    "Tolerance",
    "batch_profiles",
    "build_engines",
    "cache_dir",
    "compare_arrays",
    "compare_backends",
    "compare_with_onnxruntime",
    "detect_gpu",
    "engine_cache_key",
    "engine_mismatch",
    "error_stats",
    "find_engine",
    "gpu_or_reason",
    "load_engine_record",
    "phantom_slices",
    "require_gpu",
    "require_tensorrt",
    "to_fp16_onnx",
]

log = logging.getLogger(__name__)

#: engine.json layout version (a change invalidates every cached engine)
ENGINE_FORMAT = 1
#: version of :func:`to_fp16_onnx`'s output; part of the key because the engine depends on it
CONVERTER_VERSION = 1
ENGINE_JSON = "engine.json"
NETWORKS: tuple[str, ...] = ("dedn", "drn")
PRECISIONS: tuple[str, ...] = ("fp16", "fp32")
#: images per DeDN call and difference images per DRN call in :class:`isl_rt.pipeline.Scorer`
PIPELINE_DEDN_BATCH = 16
PIPELINE_DRN_BATCH = 32
#: float16 I/O for the DeDN engine (written by the CUDA fan-out, read by compose_diff); float32
#: I/O for the DRN engine (compose_diff writes float32; embeddings feed a float32 distance)
FP16_IO: dict[str, bool] = {"dedn": True, "drn": False}
_INSTALL = "pip install 'isl-rt[trt]' on a machine with an NVIDIA GPU and driver"


# ---- the GPU, without TensorRT or torch ---------------------------------------------------------
@dataclass(frozen=True)
class GpuInfo:
    """A CUDA device: its name (``NVIDIA H100 80GB HBM3``) and compute capability (``9.0``)."""

    name: str
    compute_capability: str
    index: int = 0


_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


def _driver_gpu(index: int) -> tuple[GpuInfo | None, str]:
    """Device ``index`` through the CUDA driver API (libcuda, installed with the NVIDIA driver)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        return None, f"the NVIDIA driver library libcuda.so.1 cannot be loaded ({err})"
    if cuda.cuInit(0) != 0:
        return None, "the CUDA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= index:
        return None, f"the CUDA driver sees {count.value} device(s)"
    device = ctypes.c_int(0)
    if cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None, f"the CUDA driver cannot open device {index}"
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    if (cuda.cuDeviceGetName(name, 256, device) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, device) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, device) != 0):
        return None, f"the CUDA driver cannot describe device {index}"
    return GpuInfo(name.value.decode(errors="replace"), f"{major.value}.{minor.value}", index), ""


def gpu_or_reason(index: int = 0) -> tuple[GpuInfo | None, str]:
    """CUDA device ``index``, or None and why there is none (for reports)."""
    return _driver_gpu(index)


def detect_gpu(index: int = 0) -> GpuInfo | None:
    """CUDA device ``index`` (name and compute capability), or None where there is none.

    Uses the CUDA driver API through ctypes, so it needs neither TensorRT, CuPy nor torch.
    """
    return _driver_gpu(index)[0]


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a BackendError saying how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendError(f"TensorRT is not installed here; {_INSTALL}.") from None
    return tensorrt


def require_gpu(index: int = 0) -> GpuInfo:
    """The CUDA device TensorRT will build for, or a BackendError saying why there is none."""
    gpu, why = _driver_gpu(index)
    if gpu is None:
        raise BackendError(f"TensorRT needs a CUDA GPU and none is usable here ({why}); {_INSTALL}.")
    return gpu


def tensorrt_major(version: str) -> int:
    """10 for ``"10.13.3.9"``."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise BackendError(f"Cannot read the TensorRT version {version!r}.") from None


# ---- the cache key ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes an engine accepts (min..max) and the one it is tuned for (opt)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise BackendError(f"A batch profile needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}.")

    def text(self) -> str:
        return f"{self.min}/{self.opt}/{self.max}"


def batch_profiles(groups: int, max_batch: int, *, dedn_batch: int = PIPELINE_DEDN_BATCH,
                   drn_batch: int = PIPELINE_DRN_BATCH) -> dict[str, BatchProfile]:
    """Profiles of both networks for a partition of ``groups`` mask groups.

    The DeDN sees whole slices (G images each), so its opt is the pipeline's batch rounded down
    to whole slices (at least one), and ``max_batch`` must hold one slice. The DRN's batch is the
    pipeline's DRN batch.
    """
    if max_batch < groups:
        raise BackendError(f"--max-batch {max_batch} cannot hold one slice: the bundle's partition has {groups} mask groups.")
    slices = max(1, min(dedn_batch, max_batch) // groups)
    return {"dedn": BatchProfile(1, slices * groups, max_batch), "drn": BatchProfile(1, drn_batch, drn_batch)}


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; :attr:`id` is a stable hex digest of it."""

    dedn_sha256: str
    drn_sha256: str
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    dedn_profile: BatchProfile
    drn_profile: BatchProfile
    format: int = ENGINE_FORMAT
    converter: int = CONVERTER_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> dict[str, str]:
        """The key in words, for ``engine.json`` and ``isl-rt build-engine``."""
        return {
            "networks": f"dedn {self.dedn_sha256[:12]}…, drn {self.drn_sha256[:12]}…",
            "gpu": f"{self.gpu_name} (compute {self.compute_capability})",
            "tensorrt": self.tensorrt_version,
            "precision": self.precision,
            "batch (min/opt/max)": f"dedn {self.dedn_profile.text()}, drn {self.drn_profile.text()}",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineKey":
        fields = dict(data)
        fields["dedn_profile"] = BatchProfile(**fields["dedn_profile"])
        fields["drn_profile"] = BatchProfile(**fields["drn_profile"])
        return cls(**fields)


def engine_cache_key(*, dedn_sha256: str, drn_sha256: str, gpu: GpuInfo, tensorrt_version: str, precision: str,
                     profiles: dict[str, BatchProfile]) -> EngineKey:
    """The key of engines built from these networks for this GPU, TensorRT, precision and batch profile."""
    if precision not in PRECISIONS:
        raise BackendError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return EngineKey(
        dedn_sha256=dedn_sha256.lower(),
        drn_sha256=drn_sha256.lower(),
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt_version=tensorrt_version,
        precision=precision,
        dedn_profile=profiles["dedn"],
        drn_profile=profiles["drn"],
    )


def cache_dir() -> Path:
    """``$ISL_RT_ENGINE_CACHE`` or ``~/.cache/isl-rt/engines``."""
    env = os.environ.get("ISL_RT_ENGINE_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "isl-rt" / "engines"


def engine_mismatch(key: EngineKey, *, dedn_sha256: str, drn_sha256: str, gpu: GpuInfo, tensorrt_version: str) -> str | None:
    """Why engines built under ``key`` cannot run these networks here (one clause), or None."""
    wrong = []
    if (key.dedn_sha256, key.drn_sha256) != (dedn_sha256.lower(), drn_sha256.lower()):
        wrong.append(f"other networks (dedn {key.dedn_sha256[:12]}…, not {dedn_sha256[:12]}…)")
    if key.gpu_name != gpu.name or key.compute_capability != gpu.compute_capability:
        wrong.append(f"the GPU {key.gpu_name} (compute {key.compute_capability}), not {gpu.name} (compute {gpu.compute_capability})")
    if key.tensorrt_version != tensorrt_version:
        wrong.append(f"TensorRT {key.tensorrt_version}, not {tensorrt_version}")
    if key.format != ENGINE_FORMAT or key.converter != CONVERTER_VERSION:
        wrong.append(f"engine format {key.format}/converter {key.converter}, not {ENGINE_FORMAT}/{CONVERTER_VERSION}")
    return None if not wrong else "it was built for " + " and ".join(wrong)


# ---- engine.json ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineRecord:
    """The content of ``engine.json``: the key, the builder and the engine files."""

    folder: Path
    key: EngineKey
    builder: dict[str, Any]
    files: dict[str, dict[str, Any]]

    def engine_path(self, network: str) -> Path:
        return self.folder / self.files[network]["file"]

    def to_json(self) -> dict[str, Any]:
        return {"format": ENGINE_FORMAT, "key_id": self.key.id, "key": self.key.to_dict(), "key_in_words": self.key.describe(),
                "builder": self.builder, "files": self.files}


def load_engine_record(folder: Path) -> EngineRecord:
    """Read ``folder/engine.json``; a BackendError names what is missing or inconsistent."""
    path = Path(folder) / ENGINE_JSON
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackendError(f"{folder} holds no {ENGINE_JSON}; build engines with `isl-rt build-engine BUNDLE`.") from None
    except (OSError, ValueError) as err:
        raise BackendError(f"{path} cannot be read as JSON ({err}); rebuild with `isl-rt build-engine BUNDLE`.") from None
    try:
        key = EngineKey.from_dict(data["key"])
        files = {name: dict(data["files"][name]) for name in NETWORKS}
        for entry in files.values():
            str(entry["file"]), str(entry["sha256"])
        builder = dict(data["builder"])
        stated = str(data["key_id"])
    except (KeyError, TypeError, ValueError, BackendError) as err:
        raise BackendError(f"{path} is not an isl-rt engine record ({type(err).__name__}: {err}); rebuild with `isl-rt build-engine BUNDLE`.") from None
    if stated != key.id:
        raise BackendError(f"{path} was edited: its key_id {stated} does not match its key fields ({key.id}); rebuild the engines.")
    return EngineRecord(Path(folder), key, builder, files)


def find_engine(bundle: "Bundle", gpu: GpuInfo, tensorrt_version: str, *, cache: Path | None = None) -> tuple[EngineRecord | None, list[str]]:
    """The best cached engines for this bundle, GPU and TensorRT (fp16 first, then the largest
    DeDN batch), and the reasons the other cached records were passed over."""
    root = cache_dir() if cache is None else Path(cache)
    files = bundle.manifest.files
    found: list[EngineRecord] = []
    passed: list[str] = []
    for path in sorted(root.glob(f"*/{ENGINE_JSON}")) if root.is_dir() else []:
        try:
            record = load_engine_record(path.parent)
        except BackendError as err:
            passed.append(str(err))
            continue
        why = engine_mismatch(record.key, dedn_sha256=files["dedn"].sha256, drn_sha256=files["drn"].sha256, gpu=gpu,
                              tensorrt_version=tensorrt_version)
        if why is None:
            found.append(record)
        elif record.key.dedn_sha256 == files["dedn"].sha256.lower():
            passed.append(f"{path.parent}: {why}")
    found.sort(key=lambda r: (r.key.precision != "fp16", -r.key.dedn_profile.max))
    return (found[0] if found else None), passed


# ---- FP16 ONNX ------------------------------------------------------------------------------------
#: ops computed in FP32 inside an FP16 graph (Cast nodes around them): normalisations (a mean and a
#: variance over up to S*S values), reductions over whole images, and the exp/log/pow family whose
#: results leave float16's range (6.5e4) or lose its 11-bit mantissa.
DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = (
    "InstanceNormalization", "GroupNormalization", "LayerNormalization", "BatchNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "GlobalAveragePool", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
)
#: (op, input index) whose type is fixed by the ONNX spec to float32 whatever the data type
_FLOAT32_ONLY_INPUTS: frozenset[tuple[str, int]] = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})
_FP16_MAX = float(np.finfo(np.float16).max)
_FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


@dataclass
class Fp16Report:
    """What :func:`to_fp16_onnx` changed."""

    initializers: int = 0
    kept_fp32_nodes: dict[str, int] = field(default_factory=dict)
    casts_inserted: int = 0
    clipped_values: int = 0
    flushed_values: int = 0
    io_fp16: bool = True


def to_fp16_onnx(model_path: Path, out_path: Path, *, keep_fp32_ops: Iterable[str] = DEFAULT_KEEP_FP32_OPS,
                 fp16_io: bool = True) -> Fp16Report:
    """Write an FP16 copy of the FP32 ONNX graph ``model_path`` to ``out_path``.

    Float32 initializers, Constant values, Cast targets and tensor types become float16. Nodes
    whose op is in ``keep_fp32_ops`` run in float32: their float inputs are cast up (an
    initializer read only by such nodes stays float32) and their outputs cast back down. With
    ``fp16_io`` the graph's float inputs and outputs become float16; without it they stay float32
    with a Cast after each input and before each output. Initializer values beyond float16's range
    are clipped to ±65504 and nonzero values below its smallest subnormal become 0 (both counted
    in the report). Uses the ``onnx`` package only; the result passes ``onnx.checker`` and strict
    shape inference.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise BackendError("The FP16 conversion needs the onnx package: pip install 'isl-rt[train]'.") from None
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    keep = frozenset(keep_fp32_ops)
    report = Fp16Report(io_fp16=fp16_io)
    model = onnx.load(str(model_path))
    graph = model.graph
    try:
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:  # onnx raises its own error types
        raise BackendError(f"{model_path} fails ONNX shape inference ({err}); re-export the bundle.") from None
    elem: dict[str, int] = {}
    for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output):
        elem[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        elem[init.name] = init.data_type
    if any(n.op_type in ("Loop", "If", "Scan") for n in graph.node):
        raise BackendError(f"{model_path} has control-flow subgraphs, which the FP16 conversion does not handle.")

    def is_float(name: str) -> bool:
        return elem.get(name) == FLOAT

    # Who reads each tensor, to keep FP32 the initializers only FP32 nodes (or FP32-only inputs) read.
    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))

    def reads_fp32(node: Any, index: int) -> bool:
        return node.op_type in keep or (node.op_type, index) in _FLOAT32_ONLY_INPUTS

    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    fp32_consts = {name for name in constants if readers.get(name) and all(reads_fp32(n, i) for n, i in readers[name])}

    def to_half(array: np.ndarray) -> np.ndarray:
        finite = np.isfinite(array)
        report.clipped_values += int(np.count_nonzero(finite & (np.abs(array) > _FP16_MAX)))
        report.flushed_values += int(np.count_nonzero((array != 0) & (np.abs(array) < _FP16_TINY)))
        return np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16)

    for i, init in enumerate(graph.initializer):
        if init.data_type == FLOAT and init.name not in fp32_consts:
            half = numpy_helper.from_array(to_half(numpy_helper.to_array(init)), init.name)
            graph.initializer[i].CopyFrom(half)
            report.initializers += 1

    new_nodes: list[Any] = []
    counter = [0]

    def cast(src: str, to: int, hint: str) -> str:
        counter[0] += 1
        dst = f"{hint}__fp{'32' if to == FLOAT else '16'}_{counter[0]}"
        new_nodes.append(helper.make_node("Cast", [src], [dst], to=to, name=f"isl_fp16_cast_{counter[0]}"))
        report.casts_inserted += 1
        return dst

    # Graph inputs: float16 in the graph signature, or float32 with a Cast to float16.
    renamed: dict[str, str] = {}
    for vi in graph.input:
        if vi.type.tensor_type.elem_type != FLOAT:
            continue
        if fp16_io:
            vi.type.tensor_type.elem_type = HALF
        else:
            renamed[vi.name] = cast(vi.name, HALF, vi.name)

    outputs = {vi.name for vi in graph.output if vi.type.tensor_type.elem_type == FLOAT}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        if node.op_type in keep or any((node.op_type, i) in _FLOAT32_ONLY_INPUTS for i in range(len(node.input))):
            whole = node.op_type in keep
            if whole:
                report.kept_fp32_nodes[node.op_type] = report.kept_fp32_nodes.get(node.op_type, 0) + 1
            for i, name in enumerate(node.input):
                needs_fp32 = whole or (node.op_type, i) in _FLOAT32_ONLY_INPUTS
                if name and needs_fp32 and is_float(name) and name not in fp32_consts:
                    node.input[i] = cast(name, FLOAT, name)
            new_nodes.append(node)
            if whole:
                for o, name in enumerate(node.output):
                    if name and is_float(name):
                        inner = f"{name}__fp32out"
                        node.output[o] = inner
                        counter[0] += 1
                        new_nodes.append(helper.make_node("Cast", [inner], [name], to=HALF, name=f"isl_fp16_cast_{counter[0]}"))
                        report.casts_inserted += 1
            continue
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                if node.op_type == "Constant" and node.output[0] in fp32_consts:
                    continue
                attr.t.CopyFrom(numpy_helper.from_array(to_half(numpy_helper.to_array(attr.t)), attr.t.name))
        new_nodes.append(node)

    # Graph outputs: float16 in the signature, or a Cast back to float32 under the output's name.
    for vi in graph.output:
        if vi.name not in outputs:
            continue
        if fp16_io:
            vi.type.tensor_type.elem_type = HALF
            continue
        inner = f"{vi.name}__fp16out"
        for node in new_nodes:
            for o, name in enumerate(node.output):
                if name == vi.name:
                    node.output[o] = inner
            for i, name in enumerate(node.input):
                if name == vi.name:
                    node.input[i] = inner
        counter[0] += 1
        new_nodes.append(helper.make_node("Cast", [inner], [vi.name], to=FLOAT, name=f"isl_fp16_cast_{counter[0]}"))
        report.casts_inserted += 1

    del graph.node[:]
    graph.node.extend(_topological(new_nodes, {vi.name for vi in graph.input} | {i.name for i in graph.initializer}))
    del graph.value_info[:]
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:  # the checker and shape inference raise their own error types
        raise BackendError(f"The FP16 copy of {model_path} is not a valid ONNX graph ({err}).") from None
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return report


def _topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """``nodes`` in an order where every node comes after the producers of its inputs."""
    ready = set(available) | {""}
    pending = list(nodes)
    ordered: list[Any] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({n for node in rest for n in node.input if n not in ready})[:3]
            raise BackendError(f"The FP16 graph has inputs no node produces ({', '.join(missing)}).")
        pending = rest
    return ordered


# ---- building -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildResult:
    """Where :func:`build_engines` wrote the engines, and their record."""

    folder: Path
    record: EngineRecord
    seconds: float


class _TrtLogger:
    """A TensorRT logger that forwards to ``logging`` and keeps the errors for the exception text."""

    def __new__(cls, trt: Any) -> Any:
        class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return Logger()


def build_engines(bundle: "Bundle", *, precision: str = "fp16", max_batch: int = 64, workspace_mb: int = 4096,
                  timing_cache: Path | None = None, out: Path | None = None, cache: Path | None = None) -> BuildResult:
    """Build the DeDN and DRN engines of ``bundle`` for the GPU here and write them atomically.

    One optimisation profile per network, batch 1..max with opt = the pipeline's batch
    (:func:`batch_profiles`). FP16: TensorRT >= 11 builds a strongly typed network from the FP16
    ONNX (:func:`to_fp16_onnx`); TensorRT 10 builds the FP32 ONNX with the FP16 builder flag and
    float16 DeDN I/O. FP32: the FP32 ONNX with TF32 disabled. ``timing_cache`` is read when it
    exists and written back after the build. ``out`` defaults to ``<cache>/<key id>``.
    """
    trt = require_tensorrt()
    gpu = require_gpu()
    if precision not in PRECISIONS:
        raise BackendError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if workspace_mb < 1:
        raise BackendError(f"--workspace must be at least 1 MB, got {workspace_mb}.")
    version = str(trt.__version__)
    major = tensorrt_major(version)
    if major < 10:
        raise BackendError(f"TensorRT {version} is too old: isl-rt needs TensorRT 10 or later ({_INSTALL}).")
    files = bundle.manifest.files
    profiles = batch_profiles(bundle.manifest.partition.groups, max_batch)
    key = engine_cache_key(dedn_sha256=files["dedn"].sha256, drn_sha256=files["drn"].sha256, gpu=gpu,
                           tensorrt_version=version, precision=precision, profiles=profiles)
    folder = Path(out) if out is not None else (cache_dir() if cache is None else Path(cache)) / key.id
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    logger = _TrtLogger(trt)
    method = "none (fp32, TF32 off)" if precision == "fp32" else (
        "strongly typed network from the isl-rt FP16 ONNX" if major >= 11 else "TensorRT 10 BuilderFlag.FP16 on the FP32 ONNX")
    started = time.perf_counter()
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache is not None and Path(timing_cache).is_file() else b""
    records: dict[str, dict[str, Any]] = {}
    try:
        builder = trt.Builder(logger)
        timing = None
        for network_name in NETWORKS:
            spec = files[network_name]
            source = bundle.root / spec.file
            onnx_path = source
            if precision == "fp16" and major >= 11:
                onnx_path = staging / f"{network_name}.fp16.onnx"
                to_fp16_onnx(source, onnx_path, fp16_io=FP16_IO[network_name])
            network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(onnx_path)):
                errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
                raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors or 'no reason given'}.")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
            if precision == "fp16" and major < 11:
                config.set_flag(trt.BuilderFlag.FP16)
                if FP16_IO[network_name]:
                    for tensor in (network.get_input(0), network.get_output(0)):
                        tensor.dtype = trt.float16
            if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
                config.clear_flag(trt.BuilderFlag.TF32)
            if timing is None:
                timing = config.create_timing_cache(cache_bytes)
            config.set_timing_cache(timing, False)
            profile = builder.create_optimization_profile()
            p = profiles[network_name]
            shape = tuple(network.get_input(0).shape)[1:]
            profile.set_shape(spec.input, (p.min, *shape), (p.opt, *shape), (p.max, *shape))
            config.add_optimization_profile(profile)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise BackendError(f"TensorRT could not build the {network_name} engine: {'; '.join(logger.errors[-3:]) or 'no reason given'}.")
            engine_file = staging / f"{network_name}.engine"
            engine_file.write_bytes(bytes(plan))
            from isl_rt.bundle import sha256_file

            records[network_name] = {"file": engine_file.name, "sha256": sha256_file(engine_file), "bytes": engine_file.stat().st_size,
                                     "input": spec.input, "output": spec.output,
                                     "io_dtype": "float16" if precision == "fp16" and FP16_IO[network_name] else "float32"}
            if onnx_path != source:
                onnx_path.unlink()
        if timing_cache is not None and timing is not None:
            _write_atomic(Path(timing_cache), bytes(timing.serialize()))
        from isl_rt import __version__

        record = EngineRecord(folder, key, {
            "tensorrt_version": version, "tensorrt_major": major, "fp16_method": method, "workspace_mb": workspace_mb,
            "timing_cache": None if timing_cache is None else str(timing_cache), "isl_rt": __version__,
            "bundle": bundle.manifest.name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.perf_counter() - started, 1),
        }, records)
        (staging / ENGINE_JSON).write_text(json.dumps(record.to_json(), indent=2) + "\n")
        _replace_dir(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(folder, load_engine_record(folder), time.perf_counter() - started)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _replace_dir(staging: Path, folder: Path) -> None:
    """Move the finished ``staging`` folder to ``folder``, replacing an older one."""
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


# ---- comparing outputs (after Polygraphy's comparator) --------------------------------------------
STATISTICS: tuple[str, ...] = ("elementwise", "max", "mean", "median", "p99")


@dataclass(frozen=True)
class Tolerance:
    """Pass when ``statistic`` of (|candidate - reference| - rtol·|reference|) is <= atol.

    ``elementwise`` (= ``max``) is numpy's allclose; ``mean``/``median``/``p99`` bound the typical
    error and let a few outliers through.
    """

    atol: float
    rtol: float = 0.0
    statistic: str = "elementwise"
    why: str = ""

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise BackendError(f"A tolerance statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}.")


@dataclass(frozen=True)
class ErrorStats:
    """Absolute-error statistics of one output, and the largest |reference| for scale."""

    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    max_rel: float
    reference_max_abs: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(f"{v:.4g}") for k, v in asdict(self).items()}


def error_stats(candidate: np.ndarray, reference: np.ndarray) -> ErrorStats:
    """Polygraphy-style statistics of |candidate - reference| (float64)."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    diff = np.abs(a - b).ravel()
    if diff.size == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    rel = diff / np.maximum(np.abs(b).ravel(), 1e-12)
    return ErrorStats(float(diff.max()), float(diff.mean()), float(np.median(diff)), float(np.quantile(diff, 0.99)),
                      float(rel.max()), float(np.abs(b).max()))


@dataclass(frozen=True)
class OutputComparison:
    """The verdict on one output: its statistics and every tolerance it was checked against."""

    name: str
    passed: bool
    stats: ErrorStats | None
    checks: list[dict[str, Any]]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.name, "passed": self.passed, "stats": None if self.stats is None else self.stats.to_dict(),
                "checks": self.checks, "reason": self.reason}


def compare_arrays(name: str, candidate: Any, reference: Any, tolerances: Sequence[Tolerance]) -> OutputComparison:
    """Check ``candidate`` against ``reference`` with every tolerance; all must pass."""
    a, b = np.asarray(candidate), np.asarray(reference)
    if a.shape != b.shape:
        return OutputComparison(name, False, None, [], f"shape {a.shape} differs from the reference's {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not np.all(np.isfinite(a64)) or not np.all(np.isfinite(b64)):
        bad = int(np.count_nonzero(~np.isfinite(a64))), int(np.count_nonzero(~np.isfinite(b64)))
        return OutputComparison(name, False, None, [], f"non-finite values (candidate {bad[0]}, reference {bad[1]})")
    stats = error_stats(a64, b64)
    checks = []
    for tol in tolerances:
        excess = (np.abs(a64 - b64) - tol.rtol * np.abs(b64)).ravel()
        if excess.size == 0:
            value = 0.0
        elif tol.statistic in ("elementwise", "max"):
            value = float(excess.max())
        elif tol.statistic == "mean":
            value = float(excess.mean())
        elif tol.statistic == "median":
            value = float(np.median(excess))
        else:
            value = float(np.quantile(excess, 0.99))
        checks.append({"statistic": tol.statistic, "atol": tol.atol, "rtol": tol.rtol, "value": float(f"{value:.4g}"),
                       "passed": value <= tol.atol, "why": tol.why})
    failed = [c for c in checks if not c["passed"]]
    reason = "; ".join(f"{c['statistic']} error {c['value']:.3g} > atol {c['atol']:g} (rtol {c['rtol']:g})" for c in failed)
    return OutputComparison(name, not failed, stats, checks, reason)


#: Tolerances per (output, precision) for engines against ONNX Runtime FP32. Not yet measured on
#: a GPU (none where this was written): set from float16's unit roundoff u = 2^-11 ≈ 4.9e-4 and the
#: depth of the networks, to be tightened from the first H100 run (`isl-rt build-engine --check`).
DEFAULT_TOLERANCES: dict[tuple[str, str], tuple[Tolerance, ...]] = {
    # DeDN x̂ in [0, 1]: ~20 convolutions between InstanceNorms (FP32) that renormalise each stage,
    # so the relative error stays ~sqrt(20)·u ≈ 2e-3 of unit-scale activations; the last 7x7 conv
    # sums 64·49 FP16 products. p99 1e-2 bounds the bulk; max 5e-2 admits rare large-sum pixels.
    # The heat map thresholds x_dif at t ~ 0.1 or more, so 1e-2 cannot flip a typical pixel.
    ("inpainted", "fp16"): (
        Tolerance(1e-2, 0.0, "p99", "~sqrt(depth)·u on unit-scale activations, with margin"),
        Tolerance(5e-2, 0.0, "max", "rare pixels of large 7x7x64 sums"),
    ),
    # FP32 engines (TF32 off) differ from ONNX Runtime only in summation order: ~1e-6 measured
    # between backends on the CPU; 1e-4 leaves room for GPU reduction trees.
    ("inpainted", "fp32"): (Tolerance(1e-4, 1e-4, "elementwise", "summation order only"),),
    # DRN embedding, same (reference) input: relative to its own scale; GroupNorm runs in FP32.
    ("embedding", "fp16"): (Tolerance(1e-2, 2e-2, "p99", "u·depth on normalised features"),
                            Tolerance(5e-2, 5e-2, "max", "outliers of the final linear layer")),
    ("embedding", "fp32"): (Tolerance(1e-4, 1e-4, "elementwise", "summation order only"),),
    # Slice score end to end (each path's own x̂ → x_dif → DRN): what decides a flag. 2% relative
    # is well inside the spread of healthy slice scores (tens of percent).
    ("slice_score", "fp16"): (Tolerance(0.0, 2e-2, "elementwise", "flag decisions: 2% << healthy score spread"),),
    ("slice_score", "fp32"): (Tolerance(1e-5, 1e-4, "elementwise", "summation order only"),),
}


def phantom_slices(bundle: "Bundle", count: int, *, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windowed phantom slices and their edges (x float32, e uint8 [count, C, S, S])."""
    from isl_rt import kernels
    from isl_rt.io.phantom import generate_study

    m = bundle.manifest
    slices: list[np.ndarray] = []
    study = 0
    while sum(s.shape[0] for s in slices) < count:
        hu = generate_study(seed + study).hu
        mid = hu.shape[0] // 2
        slices.append(hu[max(0, mid - count):mid + count])
        study += 1
    hu = np.concatenate(slices)[:count]
    x = kernels.window(hu, bundle.windows_array, m.size)
    e = kernels.canny(x, m.canny.low, m.canny.high, sigma=m.canny.sigma)
    return x, e


def compare_backends(bundle: "Bundle", candidate: "BackendPair", reference: "BackendPair", *, slices: int = 8,
                     precision: str = "fp16", tolerances: dict[tuple[str, str], Sequence[Tolerance]] | None = None,
                     dedn_batch: int = PIPELINE_DEDN_BATCH) -> list[OutputComparison]:
    """Run both backend pairs (active) on fanned-out phantom slices and compare per output:

    - ``inpainted``: the DeDN on identical input batches;
    - ``embedding``: the DRN on identical input (the reference's difference images);
    - ``slice_score``: end to end, each pair on its own x̂, x_dif and embeddings.
    """
    from isl_rt import kernels

    table = DEFAULT_TOLERANCES if tolerances is None else tolerances
    files = bundle.manifest.files
    part = bundle.partition()
    groups, size = part.groups, bundle.manifest.size
    group_map = part.group_map(size)
    x, e = phantom_slices(bundle, slices)
    per_call = max(1, dedn_batch // groups)
    got: dict[str, list[np.ndarray]] = {"ref_xhat": [], "cand_xhat": []}
    for start in range(0, x.shape[0], per_call):
        batch = kernels.fanout(x[start:start + per_call], e[start:start + per_call], group_map, groups)
        got["ref_xhat"].append(np.asarray(reference.dedn.infer({files["dedn"].input: batch})[files["dedn"].output], np.float32))
        cand = candidate.dedn.infer({files["dedn"].input: _as_input(candidate.dedn, files["dedn"].input, batch)})
        got["cand_xhat"].append(np.asarray(cand[files["dedn"].output], np.float32))
    ref_xhat, cand_xhat = np.concatenate(got["ref_xhat"]), np.concatenate(got["cand_xhat"])
    _, ref_dif = kernels.compose_diff(x, ref_xhat, group_map, groups)
    _, cand_dif = kernels.compose_diff(x, cand_xhat, group_map, groups)
    drn_in, drn_out = files["drn"].input, files["drn"].output

    def embed(pair: "BackendPair", dif: np.ndarray) -> np.ndarray:
        return np.asarray(pair.drn.infer({drn_in: _as_input(pair.drn, drn_in, dif)})[drn_out], np.float32)

    ref_h = embed(reference, ref_dif)
    centre = bundle.centre.astype(np.float64)
    score = lambda h: np.linalg.norm(h.astype(np.float64) - centre[None, :], axis=1)  # noqa: E731
    outputs = {
        "inpainted": (cand_xhat, ref_xhat),
        "embedding": (embed(candidate, ref_dif), ref_h),
        "slice_score": (score(embed(candidate, cand_dif)), score(ref_h)),
    }
    return [compare_arrays(name, a, b, table[(name, precision)]) for name, (a, b) in outputs.items()]


def _as_input(backend: Any, name: str, array: np.ndarray) -> np.ndarray:
    """``array`` in the dtype ``backend`` wants for input ``name`` (float16 for an FP16-I/O graph)."""
    want = backend.input_metadata()[name].dtype
    return array if array.dtype == want else array.astype(want)


def compare_with_onnxruntime(bundle: "Bundle", engine_dir: Path, *, slices: int = 8,
                             tolerances: dict[tuple[str, str], Sequence[Tolerance]] | None = None) -> list[OutputComparison]:
    """Run the engines in ``engine_dir`` and ONNX Runtime FP32 (CPU) on phantom slices and compare
    per output with :data:`DEFAULT_TOLERANCES` for the engines' precision."""
    from isl_rt.backends import open_backends
    from isl_rt.backends.tensorrt import open_tensorrt_pair

    record = load_engine_record(Path(engine_dir))
    with open_tensorrt_pair(bundle, record) as engines, open_backends(bundle, "onnxruntime") as reference:
        return compare_backends(bundle, engines, reference, slices=slices, precision=record.key.precision,
                                tolerances=tolerances, dedn_batch=record.key.dedn_profile.opt)

