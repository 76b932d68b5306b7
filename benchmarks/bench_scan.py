"""Throughput of the optimised scan against a research-style reference pipeline, in one run.

    python benchmarks/bench_scan.py [--quick] [--bundle PATH] [--volumes N] [--batch-size 16]

Both pipelines score the same phantom HU volumes (generated in memory with fixed seeds; DICOM
decoding is left out of both) with the same weights:

- optimised: isl_rt.pipeline.Scorer — native kernels, ONNX Runtime, batches across slices;
- reference: written the way research code does it — numpy windowing (isl_rt.kernels.reference),
  skimage Canny, numpy fan-out and composition, eager PyTorch on the bundle's torch weights, one
  slice at a time (its G masked images as one batch).

Prints one JSON object per line: the machine, then per pipeline slices/s, then a summary with
speedup_vs_reference, the share of the optimised time spent outside the DeDN and DRN, the DeDN's
achieved GFLOP/s and the machine's measured float32 matrix-multiply GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    from isl_rt import extensions

    native = extensions.native().build_info()  # loads the extension (and its OpenMP settings) first
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"kind": "machine", "cpu": cpu, "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "native": native}


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 matrix-multiply rate of this machine (numpy's BLAS, all threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dedn_flops(path: str, size: int) -> float:
    """FLOPs of one DeDN image (2 per multiply-add of every convolution), counted on the torch model."""
    import torch

    from isl_rt.backends.torch import TorchBackend

    runner = TorchBackend(path, input_name="masked", output_name="inpainted", channels=3, size=size)
    runner.activate()
    total = 0.0

    def hook(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * module.in_channels // module.groups * module.out_channels * k * output.shape[-1] * output.shape[-2]
        elif isinstance(module, torch.nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * module.in_channels * module.out_channels // module.groups * k * inputs[0].shape[-1] * inputs[0].shape[-2]

    handles = [m.register_forward_hook(hook) for m in runner._model.modules()]
    runner.infer({"masked": np.zeros((1, 7, size, size), np.float32)})
    for h in handles:
        h.remove()
    runner.deactivate()
    return total


def reference_scan(volumes: list[np.ndarray], bundle: Any, dedn: Any, drn: Any) -> float:
    """Seconds for the research-style pipeline over all slices of ``volumes``."""
    from skimage.feature import canny as sk_canny

    from isl_rt.kernels import reference as R

    m = bundle.manifest
    part = bundle.partition()
    gm, g = part.group_map(m.size), part.groups
    centre = bundle.centre.astype(np.float64)
    cavity = None if m.cavity is None else m.cavity.resolve(m.windows)
    start = time.perf_counter()
    for hu in volumes:
        for i in range(hu.shape[0]):
            x = R.window(hu[i : i + 1], bundle.windows_array, m.size)
            e = np.stack([[sk_canny(x[0, c], sigma=m.canny.sigma, low_threshold=m.canny.low, high_threshold=m.canny.high)
                           for c in range(x.shape[1])]]).astype(np.uint8)
            batch = R.fanout(x, e, gm, g)
            xhat = dedn.infer({"masked": batch.astype(np.float32)})["inpainted"]
            _, dif = R.compose_diff(x, xhat, gm, g)
            if cavity is not None:
                dif = dif * R.cavity(x, *cavity)[:, None]
            h = drn.infer({"difference": dif.astype(np.float32)})["embedding"]
            float(np.linalg.norm(h[0] - centre))
            R.heatmap(dif, x, m.heatmap.threshold, m.heatmap.box, m.heatmap.gamma)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short volume (about a minute)")
    parser.add_argument("--bundle", default="", help="bundle folder (default: the shipped head-ct-tiny)")
    parser.add_argument("--volumes", type=int, default=2, help="phantom volumes to score (ignored with --quick)")
    parser.add_argument("--batch-size", type=int, default=16, help="DeDN images per ONNX Runtime call")
    args = parser.parse_args(argv)

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.io.phantom import generate_study
    from isl_rt.pipeline import Scorer, params_from_bundle

    bundle = load_bundle(args.bundle or default_bundle_path())
    print(json.dumps(machine()), flush=True)
    count = 1 if args.quick else args.volumes
    volumes = [generate_study(900_000 + i).hu for i in range(count)]
    if args.quick:
        volumes = [v[10:16] for v in volumes]  # six mid slices
    slices = sum(v.shape[0] for v in volumes)

    with open_backends(bundle, "onnxruntime") as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn, dedn_batch=args.batch_size)
        scorer.score(volumes[0][:1])  # warm-up
        stages: dict[str, float] = {}
        start = time.perf_counter()
        for hu in volumes:
            for stage, seconds in scorer.score(hu).seconds.items():
                stages[stage] = stages.get(stage, 0.0) + seconds
        optimised = time.perf_counter() - start
    print(json.dumps({"pipeline": "optimised", "backend": "onnxruntime-cpu", "slices": slices,
                      "slices_per_s": round(slices / optimised, 3), "stage_seconds": {k: round(v, 3) for k, v in stages.items()}}), flush=True)

    with open_backends(bundle, "torch") as pair:
        reference_scan([volumes[0][:1]], bundle, pair.dedn, pair.drn)  # warm-up
        reference = reference_scan(volumes, bundle, pair.dedn, pair.drn)
    print(json.dumps({"pipeline": "reference", "backend": "torch-eager-cpu", "slices": slices,
                      "slices_per_s": round(slices / reference, 3)}), flush=True)

    images = slices * bundle.partition().groups
    flops = dedn_flops(str(bundle.torch_path("dedn")), bundle.manifest.size)
    print(json.dumps({
        "summary": "scan",
        "bundle": bundle.manifest.name,
        "partition_groups": bundle.partition().groups,
        "speedup_vs_reference": round(reference / optimised, 2),
        "share_outside_dedn_drn": round(1 - (stages.get("dedn", 0) + stages.get("drn", 0)) / sum(stages.values()), 4),
        "dedn_gflop_per_image": round(flops / 1e9, 3),
        "dedn_achieved_gflops": round(flops * images / stages["dedn"] / 1e9, 2),
        "matmul_gflops": round(matmul_gflops(), 1),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
