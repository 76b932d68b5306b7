"""OpenVINO backend (CPU): the bundle's networks at FP32, BF16 or INT8.

The precision applies to the DeDN, which is 96-99 % of a scan in the exact K×K mode; the DRN
always runs FP32 (a few % of the time, and its distance to the centre decides the flag).

- ``fp32``: the bundle's ONNX, read by OpenVINO, ``inference_precision`` f32.
- ``bf16``: the same graph compiled with ``inference_precision`` bf16 (OpenVINO keeps its
  normalisations in FP32). On a CPU without BF16 instructions (no AVX512-BF16 or AMX)
  OpenVINO runs FP32 instead; the runner reads back what the compiled network runs and the
  pair's description says so.
- ``int8``: the DeDN quantized by NNCF (:mod:`isl_rt.precision.int8`), calibrated on fanned-out
  healthy phantom slices only (:func:`healthy_calibration`), stored as an OpenVINO IR.

INT8 networks, and the accuracy checks of every precision, live in the network cache
(``$ISL_RT_OPENVINO_CACHE`` or ``~/.cache/isl-rt/openvino``), in a folder named by the
:class:`NetworkKey` id: the sha256 of both bundle networks, the precision, the OpenVINO (and for
INT8 the NNCF) version and the calibration::

    <cache>/<key id>/networks.json           the key and the sha256 of every stored file
                     dedn.xml, dedn.bin      INT8 only (FP32/BF16 read the bundle's ONNX)
                     check.json              the accuracy check (isl-rt check-precision), if run

A record whose key fields were edited, whose key is another bundle's or another version's, or
whose network files do not match their sha256 is refused with a sentence; ``auto`` uses a
reduced precision only where check.json says it passed on this CPU.

``openvino`` and ``nncf`` are imported when a runner is activated or a network quantized,
never by importing this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from isl_rt.backends.base import Backend, TensorMeta
from isl_rt.bundle import sha256_file
from isl_rt.errors import BackendError
from isl_rt.outputs import replace_folder, write_json_atomic

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.backends import BackendPair
    from isl_rt.bundle import Bundle

#: what ``--backend openvino --precision`` accepts, fastest last
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
#: networks.json layout version (a change invalidates every cached network)
FORMAT = 1
RECORD_JSON = "networks.json"
CHECK_JSON = "check.json"
_INSTALL = "pip install 'isl-rt[openvino]'"
#: the healthy phantom studies INT8 is calibrated on: seeds, studies, slices per study
CALIBRATION = {"data": "healthy phantom studies", "seed": 8_000_000, "studies": 4, "slices_per_study": 8}


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def require_openvino() -> Any:
    """The ``openvino`` module, or a BackendError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendError(f"OpenVINO is not installed here; {_INSTALL}.") from None
    return openvino


def cache_dir() -> Path:
    """``$ISL_RT_OPENVINO_CACHE`` or ``~/.cache/isl-rt/openvino``."""
    env = os.environ.get("ISL_RT_OPENVINO_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "isl-rt" / "openvino"


@dataclass(frozen=True)
class CpuInfo:
    """The OpenVINO CPU device: its name and whether it runs BF16 natively."""

    name: str
    capabilities: tuple[str, ...]

    @property
    def bf16(self) -> bool:
        return "BF16" in self.capabilities


def cpu_info() -> CpuInfo:
    ov = require_openvino()
    core = ov.Core()
    return CpuInfo(str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                   tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


# ---- the key and the record -------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkKey:
    """Everything a cached OpenVINO network depends on; :attr:`id` is a stable hex digest of it."""

    dedn_sha256: str
    drn_sha256: str
    precision: str
    openvino_version: str
    nncf_version: str = ""
    calibration: str = ""
    format: int = FORMAT

    @property
    def id(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def network_key(bundle: "Bundle", precision: str) -> NetworkKey:
    """The key of ``bundle``'s networks at ``precision`` with the OpenVINO (and NNCF) installed here."""
    if precision not in PRECISIONS:
        raise BackendError(f"--precision for OpenVINO must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    ov_version = package_version("openvino")
    if ov_version is None:
        raise BackendError(f"OpenVINO is not installed here; {_INSTALL}.")
    nncf_version, calibration = "", ""
    if precision == "int8":
        nncf_version = package_version("nncf") or ""
        if not nncf_version:
            raise BackendError(f"INT8 quantization needs NNCF; {_INSTALL}.")
        calibration = json.dumps(CALIBRATION, sort_keys=True)
    files = bundle.manifest.files
    return NetworkKey(files["dedn"].sha256.lower(), files["drn"].sha256.lower(), precision, ov_version, nncf_version, calibration)


@dataclass(frozen=True)
class NetworkRecord:
    """The content of ``networks.json``: the key and the files stored beside it."""

    folder: Path
    key: NetworkKey
    files: dict[str, str]  # file name -> sha256
    built: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name


def load_record(folder: Path, expected: NetworkKey) -> NetworkRecord:
    """Read and verify ``folder/networks.json`` against the key this bundle and installation expect."""
    path = Path(folder) / RECORD_JSON
    redo = f"delete {folder} and run again to rebuild it"
    try:
        data = json.loads(path.read_text())
        key = NetworkKey(**data["key"])
        files = {str(k): str(v) for k, v in dict(data["files"]).items()}
        stated = str(data["key_id"])
        built = dict(data.get("built", {}))
    except FileNotFoundError:
        raise BackendError(f"{folder} holds no {RECORD_JSON}; {redo}.") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BackendError(f"{path} is not an isl-rt OpenVINO record ({type(err).__name__}: {err}); {redo}.") from None
    if stated != key.id:
        raise BackendError(f"{path} was edited: its key_id {stated} does not match its key fields ({key.id}); {redo}.")
    if key != expected:
        wrong = [f"{name} {getattr(key, name)!r}, not {getattr(expected, name)!r}"
                 for name in asdict(expected) if getattr(key, name) != getattr(expected, name)]
        raise BackendError(f"{path} belongs to other networks or another installation ({'; '.join(wrong)}); {redo}.")
    for name, digest in files.items():
        if Path(name).name != name:
            raise BackendError(f"{path} names a file outside its folder ({name!r}); {redo}.")
        file = Path(folder) / name
        if not file.is_file():
            raise BackendError(f"{file} is missing; {redo}.")
        if sha256_file(file) != digest:
            raise BackendError(f"{file} does not match the sha256 in {path}; {redo}.")
    return NetworkRecord(Path(folder), key, files, built)


def prepare_networks(bundle: "Bundle", precision: str, *, cache: Path | None = None) -> NetworkRecord:
    """The verified cache record of ``bundle`` at ``precision``; made when missing (for INT8 by
    quantizing the DeDN, about a minute on two cores)."""
    key = network_key(bundle, precision)
    folder = (cache_dir() if cache is None else Path(cache)) / key.id
    if (folder / RECORD_JSON).is_file():
        return load_record(folder, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        built: dict[str, Any] = {"bundle": bundle.manifest.name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        files: dict[str, str] = {}
        if precision == "int8":
            from isl_rt.precision.int8 import quantize_to_ir

            report = quantize_to_ir(bundle.dedn_path, healthy_calibration(bundle), staging / "dedn.xml")
            built["quantization"] = asdict(report)
            files = {name: sha256_file(staging / name) for name in ("dedn.xml", "dedn.bin")}
        write_json_atomic(staging / RECORD_JSON, {"format": FORMAT, "key_id": key.id, "key": asdict(key), "files": files,
                                                  "built": built})
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_record(folder, key)


def healthy_calibration(bundle: "Bundle") -> list[np.ndarray]:
    """INT8 calibration batches: one fanned-out slice (G images of the bundle's partition) each,
    from :data:`CALIBRATION`'s healthy phantom studies, slices spread from skull base to vertex."""
    from isl_rt import kernels
    from isl_rt.io.phantom import generate_study

    m = bundle.manifest
    part = bundle.partition()
    group_map = part.group_map(m.size)
    batches = []
    for i in range(int(CALIBRATION["studies"])):
        hu = generate_study(int(CALIBRATION["seed"]) + i).hu
        picks = np.linspace(2, hu.shape[0] - 3, int(CALIBRATION["slices_per_study"])).round().astype(int)
        x = kernels.window(hu[picks], bundle.windows_array, m.size)
        e = kernels.canny(x, m.canny.low, m.canny.high, sigma=m.canny.sigma)
        for j in range(x.shape[0]):
            batches.append(kernels.fanout(x[j:j + 1], e[j:j + 1], group_map, part.groups))
    return batches


# ---- the accuracy check record ------------------------------------------------------------------
def write_check(record: NetworkRecord, check: dict[str, Any]) -> Path:
    """Store an accuracy check (``isl_rt.accuracy.CheckReport.to_dict()``) beside the networks it judged."""
    path = record.folder / CHECK_JSON
    write_json_atomic(path, {"key_id": record.key.id, "files": record.files, **check})
    return path


def read_check(record: NetworkRecord, cpu: CpuInfo) -> tuple[bool, str]:
    """(passed here, why) from the record's check.json: it must be for this key and these files,
    run on this CPU model, and have passed."""
    path = record.folder / CHECK_JSON
    if not path.is_file():
        return False, f"{record.key.precision} has not been checked here (isl-rt check-precision --precision {record.key.precision})"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"{path} cannot be read"
    if data.get("key_id") != record.key.id or data.get("files") != record.files:
        return False, f"{path} was written for other networks"
    if data.get("device") != cpu.name:
        return False, f"{record.key.precision} was checked on {data.get('device')!r}, not on this CPU ({cpu.name})"
    if not data.get("passed"):
        return False, f"{record.key.precision} failed the accuracy check ({data.get('reason', 'see ' + str(path))})"
    return True, f"{record.key.precision} passed the accuracy check on {data.get('checked_at', '?')}"


# ---- the runner -------------------------------------------------------------------------------------
class OpenVinoBackend(Backend):
    """Runs one network (ONNX or OpenVINO IR) on the OpenVINO CPU plugin.

    ``inference_precision`` is "f32" or "bf16" (an INT8 IR compiles with "f32": its quantized
    operations run INT8). After activation :attr:`runs` says what the compiled network runs.
    """

    name = "openvino"

    def __init__(self, path: Path, *, inference_precision: str = "f32", threads: int = 0) -> None:
        if inference_precision not in ("f32", "bf16"):
            raise BackendError(f"OpenVINO inference precision must be f32 or bf16, got {inference_precision!r}.")
        super().__init__(str(path))
        self.path = Path(path)
        self.inference_precision = inference_precision
        self.threads = threads
        self.runs = ""
        self._compiled: Any = None
        self._request: Any = None
        self._inputs: dict[str, TensorMeta] = {}
        self._outputs: list[str] = []

    def _activate_impl(self) -> None:
        ov = require_openvino()
        from openvino import properties
        from openvino.properties import hint

        core = ov.Core()
        config: dict[Any, Any] = {
            hint.inference_precision: ov.Type.bf16 if self.inference_precision == "bf16" else ov.Type.f32,
            hint.performance_mode: hint.PerformanceMode.LATENCY,  # one synchronous request per call
        }
        if self.threads > 0:
            config[properties.inference_num_threads] = self.threads
        try:
            model = core.read_model(str(self.path))
            self._compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as err:  # OpenVINO raises RuntimeError for unreadable or unsupported models
            raise BackendError(f"OpenVINO could not load {self.path}: {str(err).splitlines()[0]}") from None
        self.runs = self._compiled.get_property(hint.inference_precision).get_type_name()
        self._request = self._compiled.create_infer_request()
        self._inputs = {}
        for port in self._compiled.inputs:
            name = port.get_any_name()
            shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
            self._inputs[name] = TensorMeta(name, np.dtype(port.get_element_type().to_dtype()), shape)
        self._outputs = [port.get_any_name() for port in self._compiled.outputs]

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        return self._inputs

    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        results = self._request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()}, share_inputs=True)
        return {name: results[i] for i, name in enumerate(self._outputs)}

    def _deactivate_impl(self) -> None:
        self._request = self._compiled = None


def open_openvino_pair(bundle: "Bundle", precision: str, *, threads: int = 0, cache: Path | None = None,
                       reason: str = "") -> "BackendPair":
    """DeDN and DRN runners of ``bundle`` with the DeDN at ``precision`` (not yet active); INT8
    networks are quantized into the cache on first use (FP32 and BF16 read the bundle's ONNX and
    touch no cache). ``reason`` (why this precision) goes into the description."""
    from isl_rt.backends import BackendPair

    key = network_key(bundle, precision)
    dedn_path = bundle.dedn_path
    if precision == "int8":
        dedn_path = prepare_networks(bundle, precision, cache=cache).path("dedn.xml")
    cpu = cpu_info()
    runs = precision
    if precision == "bf16" and not cpu.bf16:
        runs = "bf16 requested, but this CPU has no BF16 instructions: OpenVINO runs it in FP32"
    threads_text = f"{threads or 'all'} threads"
    description = (f"OpenVINO {key.openvino_version}, CPU {cpu.name} ({threads_text}); DeDN {runs}, DRN fp32"
                   + (f" ({reason})" if reason else ""))
    return BackendPair(
        dedn=OpenVinoBackend(dedn_path, inference_precision="bf16" if precision == "bf16" else "f32", threads=threads),
        drn=OpenVinoBackend(bundle.drn_path, inference_precision="f32", threads=threads),
        name="openvino",
        description=description,
        precision=precision,
    )


def check_status(bundle: "Bundle", precision: str, cpu: CpuInfo, *, cache: Path | None = None) -> tuple[bool, str]:
    """(passed here, why) of the recorded accuracy check of ``bundle`` at ``precision`` on ``cpu``."""
    try:
        key = network_key(bundle, precision)
    except BackendError as err:
        return False, str(err)
    folder = (cache_dir() if cache is None else Path(cache)) / key.id
    if not (folder / RECORD_JSON).is_file():
        return False, f"{precision} has not been checked here (isl-rt check-precision --precision {precision})"
    try:
        return read_check(load_record(folder, key), cpu)
    except BackendError as err:
        return False, str(err)


def checked_precision(bundle: "Bundle", *, cache: Path | None = None) -> tuple[str, str]:
    """The fastest precision whose accuracy check passed on this CPU (int8, then bf16 where the
    CPU has BF16), else fp32; and why. Never quantizes or checks anything itself."""
    cpu = cpu_info()
    why_not = []
    for precision in ("int8", "bf16"):
        if precision == "bf16" and not cpu.bf16:
            continue
        passed, why = check_status(bundle, precision, cpu, cache=cache)
        if passed:
            return precision, why
        why_not.append(why)
    return "fp32", "; ".join(why_not)
