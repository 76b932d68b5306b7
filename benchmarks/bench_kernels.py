"""How fast are the native kernels against their references and cv2/skimage, on the same inputs, in one run?

    python benchmarks/bench_kernels.py [--quick] [--kernels window,canny] [--shapes 512,tiny]

Prints one JSON object per line: first the machine (CPU, cores, load, library versions, how
the extensions were built), then one row per (kernel, shape, impl) with ``mpix_per_s`` (slice
pixels per second, the median over the repeats), ``spread`` (min and max over the repeats, same
unit), ``speedup_vs_reference`` and, on canny rows, ``edge_f1_vs_cv2``. ``impl`` is one of
native (OpenMP, all threads), native-1t, reference (the numpy twin), cv2, cv2-1t, skimage and
cuda (with CuPy and a device). Impls are timed round-robin after one warm-up each, so that
background load on a shared machine hits all of them alike; inputs come from fixed seeds and
timed calls write into preallocated outputs where the API allows it. Ratios are the result;
absolute numbers only compare on the same machine.

Adding a kernel: append a function to ``CASES`` that takes the :class:`Bench` and yields
``(kernel, shape_name, pixels, params, impls)``; ``impls`` maps impl names to zero-argument
callables (cuda ones synchronise: wrap them in ``bench.cuda_sync``). A "native" impl is also
timed single-threaded as "native-1t", a "cv2" one as "cv2-1t". Fields that differ per impl go in
``params["per_impl"] = {impl: {...}}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

# The numpy references run single-threaded: OpenBLAS worker threads spinning after a matmul
# would otherwise compete with the kernels timed next on a small machine. OpenMP workers sleep
# when idle (OMP_WAIT_POLICY=PASSIVE): with libgomp's default spinning, an idle worker that keeps
# a core busy while other processes need it delays the next parallel region by a whole scheduler
# time slice on a contended 2-core machine (measured: 2-thread canny 3-6x slower than 1 thread);
# the kernels' parallel regions are milliseconds long, so spinning gains nothing here. Set the
# variable yourself to measure the other policy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from isl_rt import extensions  # noqa: E402
from isl_rt import kernels as K  # noqa: E402
from isl_rt.io.phantom import simple_head_slice  # noqa: E402
from isl_rt.kernels import reference as R  # noqa: E402
from isl_rt.kernels.partition import Partition  # noqa: E402

Impls = dict[str, Callable[[], Any]]
CaseRow = tuple[str, str, int, dict[str, Any], Impls]

try:
    import cv2
except ImportError:  # the cv2 rows are left out
    cv2 = None


class Bench:
    """Options, timing and the optional CuPy module shared by every case."""

    def __init__(self, quick: bool, shapes: set[str]) -> None:
        self.quick = quick
        self.shapes = shapes
        self.repeats = 3 if quick else 9
        self.cupy = _cupy_with_device()

    def time(self, impls: Impls, before: Callable[[str], None]) -> dict[str, list[float]]:
        """Seconds per call of every impl: one warm-up each, then the repeats round-robin."""
        for impl, fn in impls.items():
            before(impl)
            fn()
        times: dict[str, list[float]] = {impl: [] for impl in impls}
        for _ in range(self.repeats):
            for impl, fn in impls.items():
                before(impl)
                start = time.perf_counter()
                fn()
                times[impl].append(time.perf_counter() - start)
        return times

    def cuda_sync(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        cupy = self.cupy

        def run() -> Any:
            result = fn()
            cupy.cuda.get_current_stream().synchronize()
            return result

        return run


def _cupy_with_device() -> Any:
    try:
        import cupy  # type: ignore[import-not-found]

        if extensions.cuda().device_count() > 0:
            return cupy
    except Exception:  # noqa: BLE001 - any failure here just means "no cuda rows"
        pass
    return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("cv2", "skimage", "scipy", "cupy"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    out: dict[str, Any] = {"kind": "machine", "cpu": cpu, "cpus": os.cpu_count(),
                           "omp_threads": extensions.native().build_info()["openmp_max_threads"],
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                           "loadavg_1min": round(os.getloadavg()[0], 2), "platform": platform.platform(),
                           "versions": versions, "extensions": extensions.status()}
    if out["extensions"].get("_cuda", {}).get("devices"):
        import cupy  # type: ignore[import-not-found]

        out["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return out


# ---- phantom slices ------------------------------------------------------------------------------

WINDOWS = [(40.0, 80.0), (75.0, 215.0), (600.0, 2800.0)]  # brain, subdural, bone


def head_slice(size: int, seed: int) -> np.ndarray:
    """A synthetic axial head CT slice in HU (int16): skull ring, brain texture, ventricles, a bleed, noise."""
    return simple_head_slice(size, seed=seed)


@functools.lru_cache(maxsize=None)
def _hu(n: int) -> np.ndarray:
    """n phantom slices in HU, int16 [n, 512, 512] (cached; read-only)."""
    hu = np.stack([head_slice(512, seed=1000 + k) for k in range(n)])
    hu.flags.writeable = False
    return hu


def edge_f1(edges: np.ndarray, truth: np.ndarray) -> float:
    a, b = np.asarray(edges) != 0, np.asarray(truth) != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else round(2.0 * int((a & b).sum()) / total, 5)


# ---- engineer A: window, gaussian_blur, canny ----------------------------------------------------
#
# Shapes: "512" = 512x512 slices (2 with --quick, else 4); "tiny" = the tiny preset's batch of a
# scan: 32 slices windowed 512 -> 128 with 3 windows, canny with blur on [32, 3, 128, 128].


def window_cases(bench: Bench) -> Iterator[CaseRow]:
    if "512" in bench.shapes:
        hu = _hu(2 if bench.quick else 4)
        out = np.empty((hu.shape[0], 3, 256, 256), np.float32)
        impls: Impls = {
            "native": lambda: K.window(hu, WINDOWS, 256, out=out),
            "reference": lambda: R.window(hu, WINDOWS, 256, out=out),
        }
        if cv2 is not None:
            def numpy_cv2() -> None:  # the same work: numpy windowing + cv2.resize(INTER_AREA)
                for n in range(hu.shape[0]):
                    v = hu[n].astype(np.float32)
                    for c, (level, width) in enumerate(WINDOWS):
                        w = np.clip((v - (level - width / 2)) / width, 0, 1)
                        out[n, c] = cv2.resize(w, (256, 256), interpolation=cv2.INTER_AREA)

            impls["cv2"] = numpy_cv2
        if bench.cupy is not None:
            cp = bench.cupy
            dhu, dout = cp.asarray(hu), cp.empty(out.shape, cp.float32)
            impls["cuda"] = bench.cuda_sync(lambda: K.window(dhu, WINDOWS, 256, out=dout))
        params = {"size": 256, "windows": 3, "pixels_are": "source HU pixels",
                  "per_impl": {"cv2": {"note": "numpy clip + cv2.resize INTER_AREA per window"}}}
        yield "window", "512", hu.size, params, impls
    if "tiny" in bench.shapes:
        hu = _hu(32)
        out = np.empty((32, 3, 128, 128), np.float32)
        impls = {"native": lambda: K.window(hu, WINDOWS, 128, out=out)}
        if bench.cupy is not None:
            cp = bench.cupy
            dhu, dout = cp.asarray(hu), cp.empty(out.shape, cp.float32)
            impls["cuda"] = bench.cuda_sync(lambda: K.window(dhu, WINDOWS, 128, out=dout))
        yield "window", "tiny", hu.size, {"size": 128, "windows": 3, "pixels_are": "source HU pixels"}, impls


def gaussian_blur_cases(bench: Bench) -> Iterator[CaseRow]:
    if "512" not in bench.shapes:
        return
    sigma = 1.5
    x = K.window(_hu(2 if bench.quick else 4), WINDOWS[:1], 512)
    out = np.empty_like(x)
    impls: Impls = {
        "native": lambda: K.gaussian_blur(x, sigma, out=out),
        "reference": lambda: R.gaussian_blur(x, sigma, out=out),
    }
    radius = int(np.ceil(4 * sigma))
    if cv2 is not None:
        def run_cv2() -> None:
            for n in range(x.shape[0]):
                cv2.GaussianBlur(x[n, 0], (2 * radius + 1, 2 * radius + 1), sigma, dst=out[n, 0],
                                 borderType=cv2.BORDER_REFLECT_101)

        impls["cv2"] = run_cv2
    with contextlib.suppress(ImportError):
        from skimage.filters import gaussian

        def run_skimage() -> None:
            for n in range(x.shape[0]):
                out[n, 0] = gaussian(x[n, 0], sigma=sigma, mode="mirror", truncate=4.0)

        impls["skimage"] = run_skimage
    if bench.cupy is not None:
        cp = bench.cupy
        dx, dout = cp.asarray(x), cp.empty(x.shape, cp.float32)
        impls["cuda"] = bench.cuda_sync(lambda: K.gaussian_blur(dx, sigma, out=dout))
    yield "gaussian_blur", "512", x.size, {"sigma": sigma, "radius": radius}, impls


def canny_cases(bench: Bench) -> Iterator[CaseRow]:
    if "512" in bench.shapes and cv2 is not None:
        # uint8 input, no blur, L2 gradient: the same work as cv2.Canny(..., L2gradient=True).
        u8 = K.window(_hu(2 if bench.quick else 4), WINDOWS[:1], 512, dtype=np.uint8)
        out = np.empty_like(u8)
        for low, high in [(20.0, 60.0), (50.0, 150.0), (100.0, 200.0)]:
            truth = np.stack([[cv2.Canny(p, low, high, L2gradient=True) // 255 for p in planes] for planes in u8])

            def run_cv2(low: float = low, high: float = high) -> None:
                for n in range(u8.shape[0]):
                    cv2.Canny(u8[n, 0], low, high, edges=out[n, 0], L2gradient=True)

            impls: Impls = {
                "native": lambda low=low, high=high: K.canny(u8, low, high, out=out),
                "cv2": run_cv2,
                "reference": lambda low=low, high=high: R.canny(u8, low, high, out=out),
            }
            f1 = {"native": edge_f1(K.canny(u8, low, high), truth), "reference": edge_f1(R.canny(u8, low, high), truth),
                  "cv2": 1.0}
            with contextlib.suppress(ImportError):
                from skimage.feature import canny as sk_canny

                img = u8.astype(np.float64)

                def run_skimage(low: float = low, high: float = high) -> None:
                    for n in range(u8.shape[0]):
                        sk_canny(img[n, 0], sigma=0.0, low_threshold=low, high_threshold=high)

                impls["skimage"] = run_skimage
                f1["skimage"] = edge_f1(
                    np.stack([[sk_canny(img[n, 0], sigma=0.0, low_threshold=low, high_threshold=high)]
                              for n in range(u8.shape[0])]), truth)
            if bench.cupy is not None:
                cp = bench.cupy
                du8, dout = cp.asarray(u8), cp.empty(u8.shape, cp.uint8)
                impls["cuda"] = bench.cuda_sync(lambda low=low, high=high: K.canny(du8, low, high, out=dout))
                f1["cuda"] = edge_f1(cp.asnumpy(K.canny(du8, low, high)), truth)
            per_impl = {impl: {"edge_f1_vs_cv2": value} for impl, value in f1.items()}
            per_impl["native-1t"] = per_impl["native"]
            per_impl["cv2-1t"] = per_impl["cv2"]
            per_impl.setdefault("skimage", {})["note"] = "float64 input, sigma=0, interpolated NMS"
            params = {"input": "uint8", "low": low, "high": high, "edge_pixels": int(truth.sum()), "per_impl": per_impl}
            yield "canny", "512", u8.size, params, impls
    if "tiny" in bench.shapes:
        # The pipeline's variant: float32 [0, 1] windows of a scan, blurred inside the kernel.
        low, high, sigma = 0.1, 0.3, 1.5
        x = K.window(_hu(32), WINDOWS, 128)
        out = np.empty(x.shape, np.uint8)
        impls = {"native": lambda: K.canny(x, low, high, sigma=sigma, out=out)}
        if bench.cupy is not None:
            cp = bench.cupy
            dx, dout = cp.asarray(x), cp.empty(x.shape, cp.uint8)
            impls["cuda"] = bench.cuda_sync(lambda: K.canny(dx, low, high, sigma=sigma, out=dout))
        yield "canny", "tiny", x.size, {"input": "float32", "low": low, "high": high, "sigma": sigma}, impls


# ---- fanout, compose_diff, heatmap, cavity ------------------------------------------------------
def _head_slices(n: int, c: int, s: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    rr = np.hypot((yy - s / 2) / (0.42 * s), (xx - s / 2) / (0.36 * s))
    head = np.where(rr <= 0.88, 0.45, np.where(rr <= 1.0, 0.95, 0.0))
    return np.clip(head + (rr <= 0.88) * 0.03 * rng.standard_normal((n, c, s, s)), 0, 1).astype(np.float32)


# Shapes of B's kernels: a single 512x512 slice set, and the tiny preset's real batch
# (S=128, C=3 windows, K=4 -> G=16 groups, 32 slices of a scan).
B_SHAPES = {"512": dict(n=1, c=3, s=512, k=4), "tiny": dict(n=32, c=3, s=128, k=4)}
HEAT_PARAMS = {"threshold": 0.05, "box": 7, "gamma": 1.0}


def _b_inputs(shape: dict[str, int]) -> dict[str, Any]:
    n, c, s, k = shape["n"], shape["c"], shape["s"], shape["k"]
    p = Partition.cells(k)
    x = _head_slices(n, c, s, seed=0)
    edges = (np.abs(np.diff(x, axis=-1, append=x[..., -1:])) > 0.2).astype(np.uint8)
    rng = np.random.default_rng(1)
    xhat = np.clip(np.repeat(x, p.groups, axis=0) + 0.02 * rng.standard_normal((n * p.groups, c, s, s)), 0, 1)
    return {"x": x, "edges": edges, "gm": p.group_map(s), "g": p.groups, "xhat": xhat.astype(np.float32)}


def fanout_cases(bench: Bench) -> Iterator[CaseRow]:
    for name, shape in B_SHAPES.items():
        if name not in bench.shapes:
            continue
        d = _b_inputs(shape)
        n, c, s, g = shape["n"], shape["c"], shape["s"], d["g"]
        out = np.empty((n * g, 2 * c + 1, s, s), np.float32)
        impls: Impls = {
            "native": lambda d=d, out=out: K.fanout(d["x"], d["edges"], d["gm"], d["g"], out=out),
            "reference": lambda d=d, out=out: R.fanout(d["x"], d["edges"], d["gm"], d["g"], out=out),
        }
        if bench.cupy is not None:
            cp = bench.cupy
            dx, de, dg = cp.asarray(d["x"]), cp.asarray(d["edges"]), cp.asarray(d["gm"])
            for dtype in (np.float32, np.float16):
                dout = cp.empty(out.shape, dtype)
                impls["cuda" if dtype == np.float32 else "cuda-fp16"] = bench.cuda_sync(
                    lambda dx=dx, de=de, dg=dg, g=g, dout=dout, dtype=dtype: K.fanout(dx, de, dg, g, out=dout, dtype=dtype))
        params = {"groups": g, "bytes_per_call": int(out.nbytes + d["x"].nbytes + d["edges"].nbytes)}
        yield "fanout", name, n * s * s, params, impls


def compose_diff_cases(bench: Bench) -> Iterator[CaseRow]:
    for name, shape in B_SHAPES.items():
        if name not in bench.shapes:
            continue
        d = _b_inputs(shape)
        n, c, s, g = shape["n"], shape["c"], shape["s"], d["g"]
        dd, dif = np.empty((n, c, s, s), np.float32), np.empty((n, c, s, s), np.float32)
        impls: Impls = {
            "native": lambda d=d, dd=dd, dif=dif: K.compose_diff(d["x"], d["xhat"], d["gm"], d["g"], out_dd=dd, out_dif=dif),
            "reference": lambda d=d, dd=dd, dif=dif: R.compose_diff(d["x"], d["xhat"], d["gm"], d["g"], out_dd=dd,
                                                                    out_dif=dif),
        }
        if bench.cupy is not None:
            cp = bench.cupy
            dx, dxh, dg = cp.asarray(d["x"]), cp.asarray(d["xhat"]), cp.asarray(d["gm"])
            ddd, ddif = cp.empty(dd.shape, cp.float32), cp.empty(dd.shape, cp.float32)
            impls["cuda"] = bench.cuda_sync(
                lambda dx=dx, dxh=dxh, dg=dg, g=g, ddd=ddd, ddif=ddif: K.compose_diff(dx, dxh, dg, g, out_dd=ddd,
                                                                                      out_dif=ddif))
        # x_dd reads one of the G reconstructions per pixel: x, the used xhat values, two outputs
        params = {"groups": g, "bytes_per_call": int(4 * d["x"].nbytes)}
        yield "compose_diff", name, n * s * s, params, impls


def heatmap_cases(bench: Bench) -> Iterator[CaseRow]:
    for name, shape in B_SHAPES.items():
        if name not in bench.shapes:
            continue
        d = _b_inputs(shape)
        n, s = shape["n"], shape["s"]
        x_dif = np.abs(d["x"] - d["xhat"][:: d["g"]])
        x_dif[:, :, s // 3: s // 3 + s // 10, s // 2: s // 2 + s // 10] += 0.6  # one lesion-like blob
        heat = np.empty((n, s, s), np.float32)
        t, box, gamma = HEAT_PARAMS["threshold"], HEAT_PARAMS["box"], HEAT_PARAMS["gamma"]
        impls: Impls = {
            "native": lambda x_dif=x_dif, d=d, heat=heat: K.heatmap(x_dif, d["x"], t, box, gamma, out=heat),
            "reference": lambda x_dif=x_dif, d=d, heat=heat: R.heatmap(x_dif, d["x"], t, box, gamma, out=heat),
        }
        if bench.cupy is not None:
            cp = bench.cupy
            ddif, dx, dheat = cp.asarray(x_dif), cp.asarray(d["x"]), cp.empty(heat.shape, cp.float32)
            impls["cuda"] = bench.cuda_sync(
                lambda ddif=ddif, dx=dx, dheat=dheat: K.heatmap(ddif, dx, t, box, gamma, out=dheat))
        yield "heatmap", name, n * s * s, dict(HEAT_PARAMS), impls


def cavity_cases(bench: Bench) -> Iterator[CaseRow]:
    """The cranial cavity mask on the same head slices: the bone channel is the rim (0.95); the
    default rule (bone on all four sides) and the one for real CT (3 sides, largest component)."""
    for name, shape in B_SHAPES.items():
        if name not in bench.shapes:
            continue
        d = _b_inputs(shape)
        n, s = shape["n"], shape["s"]
        channel, bone, margin = 2, 0.8, 2
        for sides, largest in ((4, False), (3, True)):
            mask = np.empty((n, s, s), np.float32)
            impls: Impls = {
                "native": lambda d=d, mask=mask, sides=sides, largest=largest: K.cavity(
                    d["x"], channel, bone, margin, sides=sides, largest=largest, out=mask),
                "reference": lambda d=d, mask=mask, sides=sides, largest=largest: R.cavity(
                    d["x"], channel, bone, margin, sides=sides, largest=largest, out=mask),
            }
            if bench.cupy is not None:
                cp = bench.cupy
                dx, dmask = cp.asarray(d["x"]), cp.empty(mask.shape, cp.float32)
                impls["cuda"] = bench.cuda_sync(lambda dx=dx, dmask=dmask, sides=sides, largest=largest: K.cavity(
                    dx, channel, bone, margin, sides=sides, largest=largest, out=dmask))
            yield "cavity", name, n * s * s, {"bone": bone, "margin": margin, "sides": sides, "largest": largest}, impls


# ---- the registry --------------------------------------------------------------------------------
CASES: list[Callable[[Bench], Iterator[CaseRow]]] = [
    window_cases,
    gaussian_blur_cases,
    canny_cases,
    fanout_cases,
    compose_diff_cases,
    heatmap_cases,
    cavity_cases,
]



def run(bench: Bench, kernels: set[str] | None) -> Iterator[dict[str, Any]]:
    native = extensions.native()
    threads = native.build_info()["openmp_max_threads"]
    cv2_threads = cv2.getNumThreads() if cv2 is not None else 0

    def before(impl: str) -> None:
        native.set_num_threads(1 if impl == "native-1t" else threads)
        if cv2 is not None:
            cv2.setNumThreads(1 if impl == "cv2-1t" else cv2_threads)

    for case in CASES:
        for kernel, shape_name, pixels, params, impls in case(bench):
            if kernels and kernel not in kernels:
                continue
            params = dict(params)
            per_impl = params.pop("per_impl", {})
            for name in ("native", "cv2"):  # the same callable, one thread
                if name in impls:
                    impls = {**impls, f"{name}-1t": impls[name]}
            try:
                timings = bench.time(impls, before)
            finally:
                before("")
            rates = {impl: pixels / statistics.median(times) / 1e6 for impl, times in timings.items()}
            for impl, times in timings.items():
                row = {"kernel": kernel, "impl": impl, "shape": shape_name, "pixels": pixels,
                       "mpix_per_s": round(rates[impl], 3),
                       "spread": [round(pixels / max(times) / 1e6, 3), round(pixels / min(times) / 1e6, 3)],
                       "median_ms": round(1e3 * statistics.median(times), 3), "repeats": len(times),
                       **params, **per_impl.get(impl, {})}
                if "reference" in rates:
                    row["speedup_vs_reference"] = round(rates[impl] / rates["reference"], 2)
                if impl == "native-1t" and "cv2-1t" in rates:
                    row["speedup_vs_cv2_1t"] = round(rates[impl] / rates["cv2-1t"], 2)
                if impl == "native" and "cv2" in rates:
                    row["speedup_vs_cv2"] = round(rates[impl] / rates["cv2"], 2)
                yield row


def _tiny_dedn_onnx() -> tuple[str, str]:
    """The DeDN of the shipped bundle, or (without one) a randomly initialised tiny-preset DeDN
    exported here: its inference time does not depend on the weights."""
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.errors import BundleError

    try:
        bundle = load_bundle(default_bundle_path())
        return str(bundle.dedn_path), f"shipped bundle {bundle.manifest.name}"
    except BundleError:
        import tempfile

        import torch

        from isl_rt.export import export_onnx
        from isl_rt.models.dedn import build_dedn

        torch.manual_seed(0)
        path = os.path.join(tempfile.mkdtemp(prefix="isl-bench-"), "dedn.onnx")
        example = np.random.default_rng(0).random((2, 7, 128, 128), dtype=np.float32)
        export_onnx(build_dedn("tiny", 3), path, input_name="masked", output_name="inpainted", example=example)
        return path, "randomly initialised tiny DeDN"


def slice_share(bench: Bench) -> dict[str, Any]:
    """All native pre- and post-processing of one 512x512 slice for the tiny preset (window to
    S=128 with 3 windows, canny, fan-out to K=4 -> 16 images, compose/diff, heat map) against the
    tiny DeDN's ONNX Runtime time for that slice's 16 images, measured in the same run."""
    import onnxruntime as ort

    path, source = _tiny_dedn_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    part = Partition.cells(4)
    gm, g = part.group_map(128), part.groups
    hu = _hu(1)
    wins = np.asarray(WINDOWS, np.float32)
    fan = np.empty((g, 7, 128, 128), np.float32)
    dd = np.empty((1, 3, 128, 128), np.float32)
    dif = np.empty_like(dd)
    xhat = session.run(None, {"masked": fan})[0]

    def kernels_of_one_slice() -> None:
        x = K.window(hu, wins, 128)
        e = K.canny(x, 0.15, 0.3, sigma=1.0)
        K.fanout(x, e, gm, g, out=fan)
        K.compose_diff(x, xhat, gm, g, out_dd=dd, out_dif=dif)
        K.heatmap(dif, x, 0.1, 5, 0.25)

    def dedn_of_one_slice() -> None:
        session.run(None, {"masked": fan})

    timings = bench.time({"native": kernels_of_one_slice, "dedn": dedn_of_one_slice}, lambda impl: None)
    native_ms = 1e3 * statistics.median(timings["native"])
    dedn_ms = 1e3 * statistics.median(timings["dedn"])
    return {"kernel": "slice_pre_post", "impl": "native", "shape": "tiny", "ms_per_slice": round(native_ms, 3),
            "dedn_ms_per_slice": round(dedn_ms, 2), "share_of_dedn": round(native_ms / dedn_ms, 4),
            "dedn": source, "k": 4, "groups": g, "repeats": len(timings["native"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer slices and repeats (well under a minute)")
    parser.add_argument("--kernels", default="", help="comma-separated kernel names (default: all)")
    parser.add_argument("--shapes", default="512,tiny", help="comma-separated shape names")
    args = parser.parse_args(argv)
    bench = Bench(args.quick, set(filter(None, args.shapes.split(","))))
    kernels = set(filter(None, args.kernels.split(","))) or None
    print(json.dumps(machine()), flush=True)
    for row in run(bench, kernels):
        print(json.dumps(row), flush=True)
    if kernels is None or "slice_pre_post" in kernels:
        print(json.dumps(slice_share(bench)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
