"""Throughput of the isl-rt native kernels against their references, on 512x512 phantom slices.

    python benchmarks/bench_kernels.py [--quick] [--kernels window,canny] [--slices N]

Prints one JSON object per line: first the machine (CPU, cores, library versions, how the
extensions were built), then one line per (kernel, impl) with ``mpix_per_s`` (median over the
repeats after a warm-up; ``mpix_per_s_iqr`` is the 25-75 % range), then a summary line with the
ratios measured in this run. ``impl`` is one of native (OpenMP, all threads), native-1t,
reference (the numpy twin), cv2, cv2-1t, skimage, cuda (only with CuPy and a device).

Adding a kernel: write ``def bench_<name>(ctx: Context) -> Iterator[dict]`` that yields
``ctx.line(kernel, impl, seconds_per_call_fn, pixels, **extra)`` results and decorate it with
``@register("<name>")``; ``ctx`` holds the phantom slices (HU, windowed float32 and uint8) and
the timing helpers, and ``ctx.native_threads(1)`` runs a block single-threaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isl_rt import extensions, kernels
from isl_rt.kernels import reference

WINDOWS = [(40.0, 80.0), (75.0, 215.0), (600.0, 2800.0)]  # brain, subdural, bone
CANNY_U8_THRESHOLDS = [(20.0, 60.0), (50.0, 150.0)]      # on uint8 brain-window slices
CANNY_FLOAT = (0.1, 0.3, 1.5)                            # low, high, sigma on float [0, 1] slices
BLUR_SIGMA = 1.5

Case = Callable[["Context"], Iterator[dict[str, Any]]]
CASES: list[tuple[str, Case]] = []


def register(name: str) -> Callable[[Case], Case]:
    """Add a benchmark case; it runs when ``--kernels`` is not given or names it."""

    def wrap(fn: Case) -> Case:
        CASES.append((name, fn))
        return fn

    return wrap


# ---- phantom slices ------------------------------------------------------------------------------


def head_slice(size: int, seed: int) -> np.ndarray:
    """A synthetic axial head CT slice in HU (int16): skull ring, brain texture, ventricles, a bleed, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = size / 2 + rng.uniform(-5, 5), size / 2 + rng.uniform(-5, 5)
    r = np.hypot((yy - cy) / (0.42 * size), (xx - cx) / (0.36 * size))
    hu = np.full((size, size), -1000.0)
    hu[r < 1.0] = 1200.0
    brain = r < 0.92
    hu[brain] = 35.0 + 6.0 * (np.sin(xx / 9.0) * np.cos(yy / 13.0))[brain]
    for side in (-1, 1):
        rv = np.hypot((yy - cy + 0.05 * size) / (0.12 * size), (xx - cx - side * 0.06 * size) / (0.035 * size))
        hu[rv < 1.0] = 8.0
    hu[np.hypot(yy - cy - 0.15 * size, xx - cx + 0.12 * size) < 0.05 * size] = 70.0
    hu += rng.normal(0.0, 4.0, size=(size, size))
    return np.clip(np.round(hu), -32768, 32767).astype(np.int16)


# ---- timing --------------------------------------------------------------------------------------


@dataclass
class Context:
    quick: bool
    slices: int
    size: int = 512
    hu: np.ndarray = field(init=False)
    u8: np.ndarray = field(init=False)       # [N, 1, S, S] brain window, uint8
    x: np.ndarray = field(init=False)        # [N, 1, S, S] brain window, float32 in [0, 1]

    def __post_init__(self) -> None:
        self.hu = np.stack([head_slice(self.size, seed=1000 + k) for k in range(self.slices)])
        self.u8 = kernels.window(self.hu, WINDOWS[:1], self.size, dtype=np.uint8)
        self.x = kernels.window(self.hu, WINDOWS[:1], self.size)

    @property
    def repeats(self) -> int:
        return 5 if self.quick else 20

    @contextlib.contextmanager
    def native_threads(self, n: int) -> Iterator[None]:
        native = extensions.native()
        default = native.build_info()["openmp_max_threads"]
        native.set_num_threads(n)
        try:
            yield
        finally:
            native.set_num_threads(default)

    def time(self, fn: Callable[[], Any], repeats: int | None = None, sync: Callable[[], None] | None = None) -> list[float]:
        """Seconds per call of ``fn`` over ``repeats`` runs after one warm-up run."""
        fn()
        if sync:
            sync()
        times = []
        for _ in range(repeats or self.repeats):
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            times.append(time.perf_counter() - start)
        return times

    def line(self, kernel: str, impl: str, times: list[float], pixels: int, **extra: Any) -> dict[str, Any]:
        rates = pixels / np.asarray(times) / 1e6
        return {
            "kernel": kernel,
            "impl": impl,
            "mpix_per_s": round(float(np.median(rates)), 2),
            "mpix_per_s_iqr": [round(float(np.percentile(rates, 25)), 2), round(float(np.percentile(rates, 75)), 2)],
            "repeats": len(times),
            "pixels": pixels,
            **extra,
        }


def _cupy() -> Any | None:
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if extensions.cuda().device_count() > 0 else None
    except Exception:  # noqa: BLE001 - no extension or no driver: no CUDA lines
        return None


def _cuda_skip(kernel: str) -> dict[str, Any]:
    return {"kernel": kernel, "impl": "cuda", "skipped": "no CuPy or no CUDA device here"}


def edge_f1(edges: np.ndarray, truth: np.ndarray) -> float:
    a, b = edges != 0, truth != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else round(2.0 * int((a & b).sum()) / total, 5)


# ---- cases ---------------------------------------------------------------------------------------


@register("window")
def bench_window(ctx: Context) -> Iterator[dict[str, Any]]:
    hu, size = ctx.hu, 256
    pixels = hu.size  # source pixels
    common = {"windows": len(WINDOWS), "source": list(hu.shape), "size": size, "note": "pixels = source HU pixels"}
    out = np.empty((hu.shape[0], len(WINDOWS), size, size), np.float32)
    yield ctx.line("window", "native", ctx.time(lambda: kernels.window(hu, WINDOWS, size, out=out)), pixels, **common)
    with ctx.native_threads(1):
        yield ctx.line("window", "native-1t", ctx.time(lambda: kernels.window(hu, WINDOWS, size, out=out)), pixels, **common)
    small = hu[:2]
    yield ctx.line("window", "reference", ctx.time(lambda: reference.window(small, WINDOWS, size), repeats=3), small.size, **common)
    try:
        import cv2
    except ImportError:
        return

    def numpy_cv2() -> None:  # the same work with numpy windowing + cv2.resize(INTER_AREA)
        for n in range(hu.shape[0]):
            v = hu[n].astype(np.float32)
            for c, (level, width) in enumerate(WINDOWS):
                w = np.clip((v - (level - width / 2)) / width, 0, 1)
                out[n, c] = cv2.resize(w, (size, size), interpolation=cv2.INTER_AREA)

    yield ctx.line("window", "cv2", ctx.time(numpy_cv2), pixels, **common, note_impl="numpy clip + cv2.resize INTER_AREA")
    cp = _cupy()
    if cp is None:
        yield _cuda_skip("window")
        return
    dhu = cp.asarray(hu)
    dout = cp.empty(out.shape, cp.float32)
    sync = cp.cuda.get_current_stream().synchronize
    yield ctx.line("window", "cuda", ctx.time(lambda: kernels.window(dhu, WINDOWS, size, out=dout), sync=sync), pixels, **common)


@register("gaussian_blur")
def bench_gaussian_blur(ctx: Context) -> Iterator[dict[str, Any]]:
    x, sigma = ctx.x, BLUR_SIGMA
    out = np.empty_like(x)
    common = {"sigma": sigma, "shape": list(x.shape)}
    yield ctx.line("gaussian_blur", "native", ctx.time(lambda: kernels.gaussian_blur(x, sigma, out=out)), x.size, **common)
    with ctx.native_threads(1):
        yield ctx.line("gaussian_blur", "native-1t", ctx.time(lambda: kernels.gaussian_blur(x, sigma, out=out)), x.size, **common)
    small = x[:2]
    yield ctx.line("gaussian_blur", "reference", ctx.time(lambda: reference.gaussian_blur(small, sigma), repeats=3), small.size, **common)
    radius = int(np.ceil(4 * sigma))
    try:
        import cv2

        def run_cv2() -> None:
            for n in range(x.shape[0]):
                cv2.GaussianBlur(x[n, 0], (2 * radius + 1, 2 * radius + 1), sigma, dst=out[n, 0],
                                 borderType=cv2.BORDER_REFLECT_101)

        yield ctx.line("gaussian_blur", "cv2", ctx.time(run_cv2), x.size, **common)
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            yield ctx.line("gaussian_blur", "cv2-1t", ctx.time(run_cv2), x.size, **common)
        finally:
            cv2.setNumThreads(threads)
    except ImportError:
        pass
    try:
        from skimage.filters import gaussian

        yield ctx.line("gaussian_blur", "skimage",
                       ctx.time(lambda: [gaussian(x[n, 0], sigma=sigma, mode="mirror", truncate=4.0) for n in range(2)],
                                repeats=3), 2 * x[0, 0].size, **common)
    except ImportError:
        pass
    cp = _cupy()
    if cp is None:
        yield _cuda_skip("gaussian_blur")
        return
    dx, dout = cp.asarray(x), cp.empty(x.shape, cp.float32)
    sync = cp.cuda.get_current_stream().synchronize
    yield ctx.line("gaussian_blur", "cuda", ctx.time(lambda: kernels.gaussian_blur(dx, sigma, out=dout), sync=sync), x.size, **common)


@register("canny")
def bench_canny(ctx: Context) -> Iterator[dict[str, Any]]:
    """uint8 input, no blur, L2 gradient: the same work as cv2.Canny(..., L2gradient=True)."""
    import cv2

    u8 = ctx.u8
    out = np.empty_like(u8)
    cv2_threads = cv2.getNumThreads()
    for low, high in CANNY_U8_THRESHOLDS:
        truth = np.stack([[cv2.Canny(p, low, high, L2gradient=True) // 255 for p in planes] for planes in u8])
        common = {"input": "uint8", "low": low, "high": high, "shape": list(u8.shape)}
        edges = kernels.canny(u8, low, high)
        common_native = {**common, "edge_f1_vs_cv2": edge_f1(edges, truth), "edge_pixels": int(edges.sum())}
        yield ctx.line("canny", "native", ctx.time(lambda: kernels.canny(u8, low, high, out=out)), u8.size, **common_native)
        with ctx.native_threads(1):
            yield ctx.line("canny", "native-1t", ctx.time(lambda: kernels.canny(u8, low, high, out=out)), u8.size, **common_native)

        def run_cv2() -> None:
            for n in range(u8.shape[0]):
                cv2.Canny(u8[n, 0], low, high, edges=out[n, 0], L2gradient=True)

        yield ctx.line("canny", "cv2", ctx.time(run_cv2), u8.size, **common, edge_f1_vs_cv2=1.0)
        cv2.setNumThreads(1)
        try:
            yield ctx.line("canny", "cv2-1t", ctx.time(run_cv2), u8.size, **common, edge_f1_vs_cv2=1.0)
        finally:
            cv2.setNumThreads(cv2_threads)
        small = u8[:1]
        ref_edges = reference.canny(small, low, high)
        yield ctx.line("canny", "reference", ctx.time(lambda: reference.canny(small, low, high), repeats=3), small.size,
                       **common, edge_f1_vs_cv2=edge_f1(ref_edges, truth[:1]))
        try:
            from skimage.feature import canny as sk_canny

            img = u8[0, 0].astype(np.float64)
            sk_edges = sk_canny(img, sigma=0.0, low_threshold=low, high_threshold=high)
            yield ctx.line("canny", "skimage",
                           ctx.time(lambda: sk_canny(img, sigma=0.0, low_threshold=low, high_threshold=high), repeats=3),
                           img.size, **common, edge_f1_vs_cv2=edge_f1(sk_edges, truth[0, 0]),
                           note_impl="float64 input, sigma=0, interpolated NMS")
        except ImportError:
            pass
        cp = _cupy()
        if cp is None:
            yield _cuda_skip("canny")
        else:
            du8, dout = cp.asarray(u8), cp.empty(u8.shape, cp.uint8)
            sync = cp.cuda.get_current_stream().synchronize
            cuda_edges = cp.asnumpy(kernels.canny(du8, low, high))
            yield ctx.line("canny", "cuda", ctx.time(lambda: kernels.canny(du8, low, high, out=dout), sync=sync), u8.size,
                           **common, edge_f1_vs_cv2=edge_f1(cuda_edges, truth))

    # The pipeline's variant: float32 [0, 1] slices with the blur inside the kernel (no cv2 twin).
    low, high, sigma = CANNY_FLOAT
    x = ctx.x
    common = {"input": "float32", "low": low, "high": high, "sigma": sigma, "shape": list(x.shape)}
    yield ctx.line("canny", "native", ctx.time(lambda: kernels.canny(x, low, high, sigma=sigma, out=out)), x.size, **common)
    with ctx.native_threads(1):
        yield ctx.line("canny", "native-1t", ctx.time(lambda: kernels.canny(x, low, high, sigma=sigma, out=out)), x.size, **common)


# ---- main ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for row in f:
                if row.startswith("model name"):
                    cpu = row.split(":", 1)[1].strip()
                    break
    versions: dict[str, str] = {"python": platform.python_version(), "numpy": np.__version__}
    for name, module in [("cv2", "cv2"), ("skimage", "skimage"), ("scipy", "scipy"), ("cupy", "cupy")]:
        with contextlib.suppress(ImportError):
            versions[name] = __import__(module).__version__
    return {
        "kind": "machine",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "versions": versions,
        "extensions": extensions.status(),
    }


def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios of this run: native vs the others for every kernel (and thresholds for canny)."""
    ratios: dict[str, float] = {}
    by_key: dict[tuple[str, str, str], float] = {}
    for row in lines:
        if "mpix_per_s" not in row:
            continue
        variant = f"{row.get('input', '')}{row.get('low', '')}-{row.get('high', '')}" if row["kernel"] == "canny" else ""
        by_key[(row["kernel"], variant, row["impl"])] = row["mpix_per_s"]
    for (kernel, variant, impl), rate in by_key.items():
        for base in ("reference", "cv2", "cv2-1t", "skimage"):
            if impl in ("native", "native-1t", "cuda") and (kernel, variant, base) in by_key:
                if impl == "native-1t" and base == "cv2":
                    continue
                if impl == "native" and base == "cv2-1t":
                    continue
                name = f"{kernel}{'[' + variant + ']' if variant else ''}: {impl} / {base}"
                ratios[name] = round(rate / by_key[(kernel, variant, base)], 2)
    return {"kind": "summary", "speedups": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 slices, 5 repeats (< 1 minute)")
    parser.add_argument("--slices", type=int, default=None, help="number of 512x512 slices (default 16, 4 with --quick)")
    parser.add_argument("--kernels", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args(argv)
    wanted = {k.strip() for k in args.kernels.split(",") if k.strip()}
    unknown = wanted - {name for name, _ in CASES}
    if unknown:
        parser.error(f"unknown kernels {sorted(unknown)}; known: {[name for name, _ in CASES]}")
    ctx = Context(quick=args.quick, slices=args.slices or (4 if args.quick else 16))
    print(json.dumps(machine_info()), flush=True)
    lines: list[dict[str, Any]] = []
    for name, case in CASES:
        if wanted and name not in wanted:
            continue
        for row in case(ctx):
            lines.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(summary(lines)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
