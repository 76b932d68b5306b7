"""How fast are the native kernels against their numpy twins, on the same inputs, in one run?

    python benchmarks/bench_kernels.py [--quick] [--kernels fanout,heatmap] [--shapes 512,tiny]

Prints one JSON object per line: ``kernel``, ``impl`` (native = all OpenMP threads, native-1t,
reference = the numpy twin, cuda when CuPy and a device are present), ``shape``, ``mpix_per_s``
(slice pixels N·H·W per second; the median over repeats), ``spread`` (min and max over repeats,
in the same unit), ``speedup_vs_reference`` (from this run), and the ``machine``. Inputs come
from fixed seeds; every timed call writes into preallocated outputs where the API allows it.
Absolute numbers are only comparable on the same machine; the ratios are the result.

Each kernel adds its cases as a function appended to ``CASES``: it takes the :class:`Bench`
and yields ``(kernel, shape_name, pixels, params, impls)`` with ``impls`` mapping impl names to
zero-argument callables (``cuda`` callables must synchronise before returning).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from isl_rt import extensions
from isl_rt import kernels as K
from isl_rt.kernels import reference as R
from isl_rt.kernels.partition import Partition

Impls = dict[str, Callable[[], Any]]
CaseRow = tuple[str, str, int, dict[str, Any], Impls]


class Bench:
    """Options, timing and the machine description shared by every case."""

    def __init__(self, quick: bool, shapes: set[str]) -> None:
        self.quick = quick
        self.shapes = shapes
        self.repeats = 3 if quick else 9
        self.cupy = _cupy_with_device()

    def time(self, impls: dict[str, Callable[[], Any]], before: Callable[[str], None]) -> dict[str, list[float]]:
        """Seconds per call of every impl: one warm-up each (first touch of outputs, thread pool,
        CUDA module load), then the repeats round-robin over the impls, so that a background
        disturbance on this shared 2-core machine hits all of them alike."""
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
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = extensions.native().build_info()
    out = {"cpu": cpu, "cpus": os.cpu_count(), "omp_threads": info["openmp_max_threads"], "python": platform.python_version(),
           "numpy": np.__version__, "platform": platform.platform()}
    status = extensions.status().get("_cuda", {})
    if status.get("built") and status.get("devices"):
        import cupy  # type: ignore[import-not-found]

        out["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return out


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
        n, c, s = shape["n"], shape["c"], shape["s"]
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


# ---- the registry: engineer A's cases (window, gaussian_blur, canny) go before B's ----------------
CASES: list[Callable[[Bench], Iterator[CaseRow]]] = [
    # engineer B
    fanout_cases,
    compose_diff_cases,
    heatmap_cases,
]


def run(bench: Bench, kernels: set[str] | None) -> Iterator[dict[str, Any]]:
    native = extensions.native()
    threads = native.build_info()["openmp_max_threads"]
    info = machine()
    for case in CASES:
        for kernel, shape_name, pixels, params, impls in case(bench):
            if kernels and kernel not in kernels:
                continue
            if "native" in impls:  # one thread, same callable
                impls = {**impls, "native-1t": impls["native"]}
            try:
                timings = bench.time(impls, lambda impl: native.set_num_threads(1 if impl == "native-1t" else threads))
            finally:
                native.set_num_threads(threads)
            rates: dict[str, float] = {}
            rows = []
            for impl, times in timings.items():
                median = statistics.median(times)
                rate = pixels / median / 1e6
                rates[impl] = rate
                row = {"kernel": kernel, "impl": impl, "shape": shape_name, "pixels": pixels,
                       "mpix_per_s": round(rate, 3),
                       "spread": [round(pixels / max(times) / 1e6, 3), round(pixels / min(times) / 1e6, 3)],
                       "median_ms": round(1e3 * median, 3), "repeats": len(times), **params}
                if "bytes_per_call" in params:
                    row["gb_per_s"] = round(params["bytes_per_call"] / median / 1e9, 3)
                rows.append(row)
            for row in rows:
                if "reference" in rates:
                    row["speedup_vs_reference"] = round(rates[row["impl"]] / rates["reference"], 2)
                row["machine"] = info
                yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--kernels", default="", help="comma-separated kernel names (default: all)")
    parser.add_argument("--shapes", default=",".join(B_SHAPES), help="comma-separated shape names")
    args = parser.parse_args(argv)
    bench = Bench(args.quick, set(filter(None, args.shapes.split(","))))
    kernels = set(filter(None, args.kernels.split(","))) or None
    for row in run(bench, kernels):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
