"""Throughput of a bundle on this machine: what ``isl-rt bench`` measures, and the measuring code
the scripts in ``benchmarks/`` share.

A *configuration* is one backend, precision, DeDN batch size, partition stride and thread count.
Every configuration scans the same series the way ``isl-rt scan`` does (decode the DICOM or image
files, the native kernels, the DeDN, the DRN, the per-series JSON and the CSV rows, written into a
temporary folder), and the configurations take turns: each *round* times every configuration once
on the same series, so a machine that gets busier slows all of them alike and the ratios between
them stay fair (``relative_to_first`` is the median over rounds of the same round's ratio).

Definitions (the JSON field names of :meth:`ConfigResult.to_dict`):

- ``latency_per_series_ms``: wall time of one series, decode to outputs; median, p90, p99 over
  the timed series. ``latency_per_slice_ms``: each timed series' wall time divided by its slices
  (the pipeline batches slices, so no slice finishes on its own: this is the time a slice costs).
- ``stage_share``: decode (reading the files), kernels (windowing, Canny, fan-out, composition,
  heat maps), dedn, drn (the two networks' inference calls) and outputs (the rest: scores, rows,
  JSON), as shares of the summed series wall time.
- ``peak_rss_mib``: the process's peak resident memory while this configuration ran (Linux: the
  peak is reset before each timed series through ``/proc/self/clear_refs``); it includes every
  network opened for the sweep. ``series_rss_growth_mib``: how far that peak rose above the
  resident memory at the start of a series (the most over the timed series): what scanning one
  series adds on top of the networks.
- ``dedn_gflops``: DeDN FLOPs of the slices scored (slices × DeDN passes per slice × FLOPs of one
  image) over the seconds spent in DeDN calls. One image's FLOPs are counted on the bundle's ONNX
  graph (:func:`dedn_flops`). ``matmul_gflops``: a square matrix multiply measured right after the
  sweep in the configuration's runtime, precision and threads (:func:`matmul_rate`), the practical
  peak the DeDN's convolutions are compared with (``dedn_share_of_matmul``).

This module never prints; the CLI (``isl_rt.cli.bench``) does.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from isl_rt.errors import IslError

if TYPE_CHECKING:
    from isl_rt.backends import BackendPair
    from isl_rt.bundle import Bundle, InputSpec
    from isl_rt.io.series import SeriesItem

#: the stages of :attr:`ConfigResult.stage_seconds`, in data-flow order
STAGES: tuple[str, ...] = ("decode", "kernels", "dedn", "drn", "outputs")
#: the built-in input: this phantom study (healthy), written as DICOM into a temporary folder
PHANTOM_SEED = 900_000
#: CPU flags that decide which precisions run fast (shown in the machine block when present)
CPU_FLAGS: tuple[str, ...] = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                              "amx_tile", "asimd", "sve")
#: precisions each backend can be asked for (empty = the backend's own choice)
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "openvino": ("fp32", "bf16", "int8"),
    "onnxruntime": ("fp32",), "onnxruntime-cuda": ("fp32",), "torch": ("fp32",), "torch-cuda": ("fp32",),
    "tensorrt": (), "auto": ("fp32", "bf16", "int8"),
}


class BenchError(IslError):
    """A bench request that cannot be run as given."""


# ---- the machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or ""


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` this CPU has (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            line = next(line for line in handle if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return []
    have = set(line.split(":", 1)[1].split())
    return [flag for flag in CPU_FLAGS if flag in have]


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version (``/proc/driver/nvidia/version``), None without one."""
    try:
        first = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    words = first.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), first)


def machine() -> dict[str, Any]:
    """The machine a measurement ran on: CPU model, flags and count, load, GPU (name, compute
    capability, driver) when one is visible, library versions and the native extension's build.
    Imports nothing heavy (versions come from package metadata)."""
    from isl_rt import __version__, extensions
    from isl_rt.backends.gpu import detect_gpu
    from isl_rt.backends.openvino import package_version  # reads metadata; imports no OpenVINO

    native = extensions.native().build_info()  # loads the extension (and its OpenMP settings) first
    gpu = detect_gpu()
    versions = {name: package_version(name) for name in ("numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf",
                                                         "torch", "tensorrt", "onnx")}
    return {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": None if gpu is None else gpu.name,
        "gpu_compute_capability": None if gpu is None else gpu.compute_capability,
        "gpu_driver": nvidia_driver() if gpu is not None else None,
        "platform": platform.platform(), "python": platform.python_version(), "isl_rt": __version__,
        "versions": {k: v for k, v in versions.items() if v is not None},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "native": native,
    }


# ---- FLOPs of the DeDN --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one DeDN image, or None and why they could not be counted."""

    flops: float | None
    method: str


def dedn_flops(path: Path, size: int, channels: int) -> FlopCount:
    """FLOPs of one DeDN image of ``size``² with ``2·channels+1`` input planes, counted on the ONNX
    graph: 2 per multiply-add of every Conv, ConvTranspose, MatMul and Gemm, with the shapes ONNX
    shape inference gives for a batch of one (normalisations, activations, padding and additions
    are not counted: under 2 % of a convolutional generator's work). Needs the ``onnx`` package
    (the ``train`` extra); without it the count is None and the method says so."""
    if importlib.util.find_spec("onnx") is None:
        return FlopCount(None, "not counted: the onnx package is not installed (pip install onnx)")
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name: tuple(numpy_helper.to_array(t).shape) for t in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        for dim, want in zip(dims, (1, 2 * channels + 1, size, size)):
            dim.ClearField("dim_param")
            dim.dim_value = want
    inferred = shape_inference.infer_shapes(model).graph
    shapes: dict[str, tuple[int, ...]] = dict(initializers)
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    total = 0.0
    for node in inferred.node:
        ins = [shapes.get(name) for name in node.input]
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and (len(ins) < 2 or ins[0] is None or ins[1] is None
                                                                            or out is None):
            return FlopCount(None, f"not counted: ONNX shape inference left the shapes of {node.op_type} "
                                   f"{node.name or node.output[0]!r} open")
        if node.op_type == "Conv":
            w = ins[1]
            total += 2.0 * w[0] * float(np.prod(w[1:])) * float(np.prod(out[2:]))  # Cout · Cin/g·k² · Ho·Wo
        elif node.op_type == "ConvTranspose":
            w, x = ins[1], ins[0]
            total += 2.0 * w[0] * w[1] * float(np.prod(w[2:])) * float(np.prod(x[2:]))  # Cin · Cout/g·k² · Hi·Wi
        elif node.op_type in ("MatMul", "Gemm"):
            a = ins[0]
            trans_a = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
            total += 2.0 * float(np.prod(out)) * (a[-2] if trans_a else a[-1])  # every output: K multiply-adds
    return FlopCount(total, "ONNX graph: 2 FLOPs per multiply-add of Conv, ConvTranspose, MatMul and Gemm (shape inference, batch 1)")


# ---- the matrix-multiply rate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MatmulRate:
    """A measured matrix-multiply rate and what was measured (runtime, precision, size, threads)."""

    gflops: float | None
    measured: str


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """float32 matrix multiply through numpy's BLAS (all its threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return 2 * n**3 / _best_seconds(lambda: a @ b, repeats) / 1e9


def onnxruntime_matmul_gflops(threads: int, n: int = 1024, repeats: int = 5,
                              providers: Sequence[str] = ("CPUExecutionProvider",)) -> float:
    """float32 MatMul of an n×n input by an n×n constant in ONNX Runtime (needs ``onnx`` to build it)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.random((n, n), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=list(providers))
    x = rng.random((n, n), dtype=np.float32)
    return 2 * n**3 / _best_seconds(lambda: session.run(None, {"a": x}), repeats) / 1e9


def openvino_matmul_gflops(precision: str, threads: int, n: int = 1024, repeats: int = 5) -> tuple[float, str]:
    """An n×n MatMul compiled by OpenVINO on the CPU at ``precision`` (fp32, bf16, or int8: the
    input through FakeQuantize and int8 weights with a scale, NNCF's pattern, which the plugin
    runs as a u8×i8 MatMul): its rate and the precision the CPU plugin reports for the compiled
    MatMul (``runtimePrecision`` of the runtime model)."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino import properties
    from openvino.properties import hint

    rng = np.random.default_rng(1)
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    if precision == "int8":  # NNCF's pattern: u8 activations through FakeQuantize, i8 weights with a scale
        lo, hi = ops.constant(np.float32(0.0)), ops.constant(np.float32(1.0))
        weights = ops.constant(rng.integers(-127, 128, (n, n)).astype(np.int8))
        product = ops.matmul(ops.fake_quantize(a, lo, hi, lo, hi, 256),
                             ops.multiply(ops.convert(weights, ov.Type.f32), ops.constant(np.float32(1 / 127))), False, False)
    else:
        product = ops.matmul(a, ops.constant(rng.random((n, n), dtype=np.float32) - 0.5), False, False)
    model = ov.Model([product], [a], "matmul")
    config: dict[Any, Any] = {hint.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32,
                              hint.performance_mode: hint.PerformanceMode.LATENCY}
    if threads > 0:
        config[properties.inference_num_threads] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    x = rng.random((n, n), dtype=np.float32)
    seconds = _best_seconds(lambda: request.infer({0: x}, share_inputs=True), repeats)
    ran = compiled.get_property(hint.inference_precision).get_type_name()
    for op in compiled.get_runtime_model().get_ordered_ops():  # what the plugin runs the MatMul in
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in ("MatMul", "FullyConnected"):
            ran = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ran
    return 2 * n**3 / seconds / 1e9, ran


def torch_matmul_gflops(device: str, dtype_name: str, threads: int, n: int = 1024, repeats: int = 5) -> float:
    """An n×n matrix multiply in PyTorch (``cpu`` with ``threads``, or ``cuda``, synchronised)."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    if device == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)

    def step() -> None:
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 / _best_seconds(step, repeats) / 1e9


def matmul_rate(backend: str, precision: str, threads: int) -> MatmulRate:
    """The matrix-multiply rate to compare a DeDN with: measured in the backend's own runtime,
    precision and threads where that runtime can run a bare MatMul (OpenVINO, ONNX Runtime when
    ``onnx`` is installed to build it, PyTorch), else through numpy's BLAS (FP32) or PyTorch
    on the GPU (TensorRT: FP16 when it runs FP16)."""
    n = 1024
    thread_text = f"{threads or 'all'} threads"
    if backend == "openvino":
        gflops, ran = openvino_matmul_gflops(precision or "fp32", threads, n)
        return MatmulRate(gflops, f"OpenVINO CPU MatMul {n}² at {precision or 'fp32'} (runs {ran}), {thread_text}")
    if backend in ("torch", "torch-cuda", "tensorrt", "onnxruntime-cuda"):
        if importlib.util.find_spec("torch") is None:
            return MatmulRate(None, "not measured: PyTorch is not installed (pip install 'isl-rt[train]')")
        device = "cpu" if backend == "torch" else "cuda"
        dtype = "fp16" if backend == "tensorrt" and precision == "fp16" else "fp32"
        return MatmulRate(torch_matmul_gflops(device, dtype, threads, n), f"PyTorch {device} matmul {n}² at {dtype}"
                          + (f", {thread_text}" if device == "cpu" else ""))
    if importlib.util.find_spec("onnx") is not None:
        return MatmulRate(onnxruntime_matmul_gflops(threads, n), f"ONNX Runtime CPU MatMul {n}² at fp32, {thread_text}")
    return MatmulRate(numpy_matmul_gflops(n), f"numpy (BLAS) matmul {n}² at fp32, all threads (onnx not installed)")


# ---- peak memory ------------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    """The process's resident memory now (``VmRSS``; 0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/status") as handle:
            return int(next(line for line in handle if line.startswith("VmRSS:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return 0.0


def peak_rss_mib() -> float:
    """The process's peak RSS since the last reset (``VmHWM``), else since it started (``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- configurations ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    """One configuration of a sweep. ``precision`` "" = the backend's own choice (OpenVINO: the
    fastest that passed ``isl-rt check-precision`` here)."""

    backend: str
    precision: str
    batch_size: int
    stride: int
    threads: int

    @property
    def runtime(self) -> tuple[str, str, int]:
        """What opens the networks: configurations that share it share the runners."""
        return self.backend, self.precision, self.threads


def sweep(backends: Sequence[str], precisions: Sequence[str], batch_sizes: Sequence[int], strides: Sequence[int],
          threads: Sequence[int]) -> list[BenchConfig]:
    """Every combination of the values given, in the order given (backend slowest). A precision
    is combined only with the backends that run it (``BACKEND_PRECISIONS``); a backend left with
    none is refused."""
    from isl_rt.backends import BACKEND_NAMES

    configs: list[BenchConfig] = []
    for backend in backends:
        if backend not in BACKEND_NAMES:
            raise BenchError(f"--backend {backend!r} is not one of {', '.join(BACKEND_NAMES)}.")
        usable = [p for p in precisions if p == "" or p in BACKEND_PRECISIONS[backend]]
        if not usable:
            runs = ", ".join(BACKEND_PRECISIONS[backend]) or "its engine's precision (leave --precision out)"
            raise BenchError(f"--backend {backend} runs none of --precision {','.join(precisions)}: it runs {runs}.")
        for precision in usable:
            for batch in batch_sizes:
                for stride in strides:
                    for count in threads:
                        configs.append(BenchConfig(backend, precision, batch, stride, count))
    return configs


# ---- the input ---------------------------------------------------------------------------------------------------
@dataclass
class BenchInput:
    """The series every configuration scans, in turn, and a sentence saying what they are."""

    items: list["SeriesItem"]
    description: str


def phantom_input(folder: Path) -> BenchInput:
    """The built-in input: one healthy phantom head-CT study (512², 28-36 slices) written as DICOM
    into ``folder``, so that decoding is measured as for a user's files."""
    from isl_rt.io.phantom import generate_study, write_study
    from isl_rt.io.series import discover_series

    study = generate_study(PHANTOM_SEED)
    write_study(study, folder / "phantom")
    items = discover_series(folder).of_kind("hu")
    return BenchInput(items, f"built-in phantom: 1 DICOM CT series of {study.n_slices} slices, 512×512 (seed {PHANTOM_SEED})")


def folder_input(root: Path, reads: "InputSpec", bundle_name: str) -> BenchInput:
    """The series under ``root`` of the kinds the bundle reads (``reads``: its input)."""
    from isl_rt.io.dicom import check_folder
    from isl_rt.io.series import discover_series

    check_folder(root)
    items = [item for item in discover_series(Path(root)).series if reads.reads(item.kind)]
    if not items:
        raise BenchError(f"{root} holds no series that bundle '{bundle_name}' reads ({reads.describe()}): "
                         "`isl-rt inspect` shows what is there.")
    slices = sum(item.n_slices for item in items)
    return BenchInput(items, f"{root}: {len(items)} series ({reads.describe()}), {slices} slices")


# ---- results --------------------------------------------------------------------------------------------------------
def percentiles(values: Sequence[float]) -> dict[str, float]:
    """median, p90 and p99 (linear interpolation) of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(array)), "p90": float(np.percentile(array, 90)), "p99": float(np.percentile(array, 99))}


@dataclass
class ConfigResult:
    """What one configuration measured (see the module's docstring for the definitions)."""

    config: BenchConfig
    #: the backend that ran (what ``auto`` chose), what the DeDN ran (the pair's precision) and the backend's own sentence
    backend: str
    precision: str
    description: str
    dedn_passes_per_slice: int
    series_seconds: list[float] = field(default_factory=list)
    series_slices: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {stage: 0.0 for stage in STAGES})
    peak_rss_mib: float = 0.0
    #: the most the peak rose above the RSS at the start of one timed series (what scanning a series adds)
    series_rss_growth_mib: float = 0.0
    #: the same round's ratio of slices/s to the first configuration's
    round_ratios: list[float] = field(default_factory=list)
    dedn_flops: FlopCount = FlopCount(None, "")
    matmul: MatmulRate = MatmulRate(None, "")

    @property
    def slices(self) -> int:
        return sum(self.series_slices)

    @property
    def seconds(self) -> float:
        return sum(self.series_seconds)

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0

    @property
    def dedn_gflops(self) -> float | None:
        if self.dedn_flops.flops is None or self.stage_seconds["dedn"] <= 0:
            return None
        return self.dedn_flops.flops * self.slices * self.dedn_passes_per_slice / self.stage_seconds["dedn"] / 1e9

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        total = sum(self.stage_seconds.values())
        gflops = self.dedn_gflops
        rate = self.matmul.gflops
        ms = [1000 * s for s in self.series_seconds]
        slice_ms = [m / n for m, n in zip(ms, self.series_slices)]
        return {
            "backend": self.backend, "requested_backend": c.backend, "precision": self.precision, "batch_size": c.batch_size, "stride": c.stride,
            "threads": c.threads, "dedn_passes_per_slice": self.dedn_passes_per_slice,
            "backend_description": self.description,
            "series": len(self.series_seconds), "slices": self.slices, "seconds": round(self.seconds, 4),
            "slices_per_s": round(self.slices_per_s, 3),
            "series_per_s": round(len(self.series_seconds) / self.seconds, 4) if self.seconds > 0 else 0.0,
            "latency_per_slice_ms": {k: round(v, 2) for k, v in percentiles(slice_ms).items()},
            "latency_per_series_ms": {k: round(v, 1) for k, v in percentiles(ms).items()},
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
            "stage_share": {k: round(v / total, 4) if total > 0 else 0.0 for k, v in self.stage_seconds.items()},
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "series_rss_growth_mib": round(self.series_rss_growth_mib, 1),
            "relative_to_first": round(float(np.median(self.round_ratios)), 3),
            "relative_to_first_range": [round(min(self.round_ratios), 3), round(max(self.round_ratios), 3)],
            "dedn_gflop_per_image": None if self.dedn_flops.flops is None else round(self.dedn_flops.flops / 1e9, 4),
            "dedn_flops_method": self.dedn_flops.method,
            "dedn_gflops": None if gflops is None else round(gflops, 2),
            "matmul_gflops": None if rate is None else round(rate, 1),
            "matmul_measured": self.matmul.measured,
            "dedn_share_of_matmul": None if gflops is None or not rate else round(gflops / rate, 3),
        }


@dataclass
class BenchRun:
    """A whole sweep: one result per configuration, in the order given, and what they share."""

    results: list[ConfigResult]
    input: str
    bundle: dict[str, Any]
    rounds: int
    warmup: int
    machine: dict[str, Any]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able object per configuration, each with every shared field."""
        shared = {"bundle": self.bundle, "input": self.input, "rounds": self.rounds, "warmup_series": self.warmup,
                  "machine": self.machine}
        return [{**r.to_dict(), **shared} for r in self.results]


@dataclass(frozen=True)
class Progress:
    """Progress event: ``done`` of ``total`` timed series (``total`` is 0 under --duration)."""

    done: int
    total: int
    config: BenchConfig


# ---- the measurement -------------------------------------------------------------------------------------------------
class _Lane:
    """One configuration's scorer, result and output files."""

    def __init__(self, config: BenchConfig, pair: "BackendPair", bundle: "Bundle", folder: Path) -> None:
        from isl_rt.outputs import SLICE_COLUMNS, ScoreTable
        from isl_rt.pipeline import Scorer, ScanSummary, params_from_bundle, with_stride

        params = with_stride(params_from_bundle(bundle), config.stride)
        self.config, self.pair, self.bundle = config, pair, bundle
        self.scorer = Scorer(params, pair.dedn, pair.drn, dedn_batch=config.batch_size)
        self.folder = folder
        self.summary = ScanSummary(out=folder / "scores.csv", backend=pair.name)
        self.table = ScoreTable(folder / "scores.csv", resume=False)
        self.slice_table = ScoreTable(folder / "scores.slices.csv", resume=False, columns=SLICE_COLUMNS)
        self.result = ConfigResult(config, pair.name, pair.precision, pair.description, self.scorer.groups)

    def scan(self, item: "SeriesItem") -> tuple[float, int, dict[str, float]]:
        """Scan one series as ``isl-rt scan`` does; wall seconds, slices and seconds per stage."""
        from isl_rt.io.series import load_series
        from isl_rt.pipeline import score_series_item

        start = time.perf_counter()
        loaded = load_series(item)
        decoded = time.perf_counter()
        before = dict(self.summary.stage_seconds)
        row, slice_rows = score_series_item(item, loaded, self.bundle, self.scorer, self.folder / "series", self.summary)
        if row["status"] != "ok":
            raise BenchError(f"{item.path} could not be scanned ({row['error']}); bench a folder whose series scan.")
        self.slice_table.append_many(slice_rows)
        self.table.append(row)
        wall = time.perf_counter() - start
        stages = {k: v - before.get(k, 0.0) for k, v in self.summary.stage_seconds.items()}
        seconds = {"decode": decoded - start, "kernels": stages.get("kernels", 0.0), "dedn": stages.get("dedn", 0.0),
                   "drn": stages.get("drn", 0.0)}
        seconds["outputs"] = max(0.0, wall - sum(seconds.values()))
        return wall, loaded.n_slices, seconds

    def close(self) -> None:
        self.table.close()
        self.slice_table.close()


def run_bench(bundle: "Bundle", configs: Sequence[BenchConfig], directory: Path | None = None, *, slices: int = 0,
              duration: float = 0.0, warmup: int = 1, on_progress: Callable[[Progress], None] | None = None) -> BenchRun:
    """Measure every configuration on the series under ``directory`` (None: the built-in phantom),
    round-robin: a round times one series per configuration, the same series for all; rounds go on
    until every configuration has scanned ``slices`` slices, or until ``duration`` seconds of
    rounds have passed (at least one round). ``warmup`` untimed series per configuration first.
    Backends that cannot be opened here raise :class:`isl_rt.errors.BackendError` before anything
    is measured."""
    from contextlib import ExitStack

    from isl_rt.backends import open_backends

    if not configs:
        raise BenchError("Nothing to measure: give at least one --backend.")
    if (slices > 0) == (duration > 0):
        raise BenchError("Give either --slices N or --duration S (one of them, above 0).")
    if warmup < 0:
        raise BenchError(f"--warmup must be 0 or more, got {warmup}.")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="isl-rt-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        if directory is None:
            source = phantom_input(work / "input")
        else:
            source = folder_input(directory, bundle.manifest.input_spec, bundle.manifest.name)
        pairs: dict[tuple[str, str, int], BackendPair] = {}
        for config in configs:
            if config.runtime not in pairs:
                pair = open_backends(bundle, config.backend, threads=config.threads, precision=config.precision)
                pairs[config.runtime] = stack.enter_context(pair)
        lanes = [_Lane(c, pairs[c.runtime], bundle, work / f"config{i}") for i, c in enumerate(configs)]
        for lane in lanes:
            stack.callback(lane.close)
        items = source.items
        for lane in lanes:
            for i in range(warmup):
                lane.scan(items[i % len(items)])
        per_round = sum(item.n_slices for item in items) / len(items)
        total = 0 if duration > 0 else len(lanes) * max(1, int(np.ceil(slices / per_round)))
        started, rounds, done = time.perf_counter(), 0, 0
        while True:
            item = items[rounds % len(items)]
            first = 0.0
            for index, lane in enumerate(lanes):
                reset = reset_peak_rss()
                before = rss_mib()
                wall, n, seconds = lane.scan(item)
                r = lane.result
                r.series_seconds.append(wall)
                r.series_slices.append(n)
                for stage, value in seconds.items():
                    r.stage_seconds[stage] += value
                rss = peak_rss_mib()
                r.peak_rss_mib = max(r.peak_rss_mib, rss) if reset else rss
                if reset:
                    r.series_rss_growth_mib = max(r.series_rss_growth_mib, rss - before)
                rate = n / wall
                if index == 0:
                    first = rate
                r.round_ratios.append(rate / first)
                done += 1
                if on_progress is not None:
                    on_progress(Progress(done, max(total, done), lane.config))
            rounds += 1
            if duration > 0 and time.perf_counter() - started >= duration:
                break
            if slices > 0 and min(lane.result.slices for lane in lanes) >= slices:
                break
        counts: dict[tuple[str, int], FlopCount] = {}
        rates: dict[tuple[str, str, int], MatmulRate] = {}
        m = bundle.manifest
        for lane in lanes:
            c = lane.config
            key = (lane.result.backend, lane.result.precision, c.threads)
            if key not in rates:
                rates[key] = matmul_rate(*key)
            lane.result.matmul = rates[key]
            flops_key = (str(bundle.dedn_path), m.size)
            if flops_key not in counts:
                counts[flops_key] = dedn_flops(bundle.dedn_path, m.size, m.channels)
            lane.result.dedn_flops = counts[flops_key]
    described = {"name": m.name, "preset": m.preset, "size": m.size, "k": bundle.partition().k,
                 "reads": m.input_spec.describe(), "path": str(bundle.root)}
    return BenchRun([lane.result for lane in lanes], source.description, described, rounds, warmup, info)
