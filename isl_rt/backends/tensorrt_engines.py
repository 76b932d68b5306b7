"""TensorRT engines built from a model bundle: the cache key, the engine record and the build.

An engine is tied to the exact networks (sha256 of the bundle's FP32 ONNX files), the GPU model
and compute capability, the TensorRT version, the precision and the batch profile; those fields
are the :class:`EngineKey`, whose hex :attr:`EngineKey.id` names the cache folder::

    <cache>/<key id>/dedn.engine, drn.engine, engine.json

``engine.json`` holds the key, how the engines were built (TensorRT major version, which FP16
method ran) and the sha256 of both engine files. The cache is ``$ISL_RT_ENGINE_CACHE`` or
``~/.cache/isl-rt/engines``; engines are never committed.

FP16: TensorRT 11 builds only strongly typed networks, whose tensor types are the ONNX graph's,
so the FP32 graph is converted first (:func:`isl_rt.precision.fp16.to_fp16_onnx`). TensorRT 10
builds the FP32 graph with the FP16 builder flag instead. Either way the DeDN engine's input and
output are float16 (the CUDA fan-out writes float16 straight into the input binding and
compose_diff reads float16) and the DRN engine's input and output stay float32.

Importing this module imports neither TensorRT nor onnx: each is imported by the function that
needs it. The accuracy check of built engines is :func:`isl_rt.accuracy.check_tensorrt`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isl_rt.backends.base import DEDN_BATCH, DRN_BATCH
from isl_rt.backends.gpu import GpuInfo, gpu_or_reason
from isl_rt.bundle import sha256_file
from isl_rt.errors import BackendError
from isl_rt.outputs import replace_folder, write_atomic
from isl_rt.precision.fp16 import CONVERTER_VERSION, to_fp16_onnx

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.bundle import Bundle

log = logging.getLogger(__name__)

#: engine.json layout version (a change invalidates every cached engine)
ENGINE_FORMAT = 1
ENGINE_JSON = "engine.json"
NETWORKS: tuple[str, ...] = ("dedn", "drn")
#: what ``build-engine --precision`` accepts
PRECISIONS: tuple[str, ...] = ("fp16", "fp32")
#: float16 I/O for the DeDN engine (written by the CUDA fan-out, read by compose_diff); float32
#: I/O for the DRN engine (compose_diff writes float32; embeddings feed a float32 distance)
FP16_IO: dict[str, bool] = {"dedn": True, "drn": False}
_INSTALL = "pip install 'isl-rt[trt]' on a machine with an NVIDIA GPU and driver"


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a BackendError saying how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendError(f"TensorRT is not installed here; {_INSTALL}.") from None
    return tensorrt


def require_gpu(index: int = 0) -> GpuInfo:
    """The CUDA device TensorRT will build for, or a BackendError saying why there is none."""
    gpu, why = gpu_or_reason(index)
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


def batch_profiles(groups: int, max_batch: int, *, dedn_batch: int = DEDN_BATCH,
                   drn_batch: int = DRN_BATCH) -> dict[str, BatchProfile]:
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
            write_atomic(engine_file, bytes(plan))
            records[network_name] = {"file": engine_file.name, "sha256": sha256_file(engine_file), "bytes": engine_file.stat().st_size,
                                     "input": spec.input, "output": spec.output,
                                     "io_dtype": "float16" if precision == "fp16" and FP16_IO[network_name] else "float32"}
            if onnx_path != source:
                onnx_path.unlink()
        if timing_cache is not None and timing is not None:
            write_atomic(Path(timing_cache), bytes(timing.serialize()))
        from isl_rt import __version__

        record = EngineRecord(folder, key, {
            "tensorrt_version": version, "tensorrt_major": major, "fp16_method": method, "workspace_mb": workspace_mb,
            "timing_cache": None if timing_cache is None else str(timing_cache), "isl_rt": __version__,
            "bundle": bundle.manifest.name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.perf_counter() - started, 1),
        }, records)
        write_atomic(staging / ENGINE_JSON, (json.dumps(record.to_json(), indent=2) + "\n").encode())
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(folder, load_engine_record(folder), time.perf_counter() - started)
