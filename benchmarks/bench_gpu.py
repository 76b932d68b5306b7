"""GPU throughput of the scan: TensorRT against torch-CUDA (FP16 autocast + CUDA graph) and eager
torch (FP32) on the same GPU, bundles, phantom volumes and weights, in one run.

    python benchmarks/bench_gpu.py [--tiny BUNDLE] [--full BUNDLE] [--volumes 2] [--repeats 3] [--quick]

``--tiny`` defaults to the shipped head-ct-tiny; a full-preset bundle must be given (none is
shipped; export one with `isl-rt export`), else its lines say it was skipped. TensorRT FP16
engines are built into the engine cache when none is there (the build time is reported).

Prints one JSON object per line: the machine (GPU, driver-visible name and compute capability,
library versions); per preset and backend the scan's slices/s (median and spread over repeats,
after a warm-up; host volumes in, scores out, as ``isl-rt scan`` runs) and the DeDN alone at its
optimisation batch on GPU-resident input: images/s and achieved TFLOP/s against the GPU's dense
FP16 tensor-core peak (the table below, with its source). Without a GPU it prints one line
saying so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: dense (no 2:4 sparsity) FP16 tensor-core peak in TFLOP/s, matched on the device name in order
FP16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 (HBM3)
    ("H200", 989.4),  # the same GH100 compute as H100 SXM5, with 141 GB HBM3e
)
FP16_PEAK_SOURCE = ("NVIDIA H100/H200 datasheets, FP16 Tensor Core, half the 'with sparsity' figure; "
                    "H100 SXM5 989.4 TFLOP/s as tabulated at glennklockwood.com/garden/processors/h100")


def fp16_peak(name: str) -> float | None:
    return next((peak for key, peak in FP16_PEAK_TFLOPS if key in name), None)


def machine() -> dict[str, Any]:
    """The machine block (isl_rt.bench.machine: CPU, GPU name, compute capability and driver, versions)."""
    from isl_rt import bench

    return {"kind": "machine", **bench.machine()}


def scan_rate(bundle: Any, pair: Any, volumes: list[np.ndarray], repeats: int, dedn_batch: int) -> dict[str, Any]:
    """slices/s of Scorer over ``volumes``: a warm-up on one slice, then ``repeats`` timed passes."""
    from isl_rt.pipeline import Scorer, params_from_bundle

    scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn, dedn_batch=dedn_batch)
    scorer.score(volumes[0][: max(1, dedn_batch // bundle.partition().groups)])
    slices = sum(v.shape[0] for v in volumes)
    rates, stages = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        for hu in volumes:
            for stage, seconds in scorer.score(hu).seconds.items():
                stages[stage] = stages.get(stage, 0.0) + seconds
        rates.append(slices / (time.perf_counter() - start))
    return {"slices": slices, "slices_per_s": round(statistics.median(rates), 2),
            "spread": [round(min(rates), 2), round(max(rates), 2)],
            "stage_seconds": {k: round(v / repeats, 4) for k, v in stages.items()}}


def dedn_rate_tensorrt(backend: Any, batch: int, size: int, channels: int, repeats: int = 50) -> float:
    """Images/s of the TensorRT DeDN on a GPU-resident batch (zero-copy input binding)."""
    dtype = backend.input_metadata()[backend.input_name].dtype
    shape = (batch, 2 * channels + 1, size, size)
    try:
        import cupy

        x: Any = cupy.random.random(shape).astype(dtype)
    except ImportError:
        import torch

        x = torch.rand(shape, device="cuda").to(torch.float16 if dtype == np.float16 else torch.float32)
    for _ in range(5):
        backend.infer({backend.input_name: x})
    backend.stream.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        backend.infer({backend.input_name: x}, check=False)
    backend.stream.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def dedn_rate_torch(backend: Any, batch: int, size: int, channels: int, repeats: int = 50) -> float:
    """Images/s of a torch-CUDA DeDN on a GPU-resident batch (graph replay when captured for it)."""
    import torch

    x = torch.rand((batch, 2 * channels + 1, size, size), device="cuda")
    graph = backend._graph is not None and backend._static_in.shape[0] == batch

    def step() -> None:
        if graph:
            backend._static_in.copy_(x)
            backend._graph.replay()
        else:
            backend._forward(x)

    with torch.inference_mode():
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def bench_preset(preset: str, bundle_path: str, gpu: Any, args: argparse.Namespace) -> None:
    from isl_rt import bench
    from isl_rt.backends import open_backends
    from isl_rt.backends import tensorrt_engines as engine
    from isl_rt.backends.tensorrt import open_tensorrt_pair
    from isl_rt.bundle import load_bundle
    from isl_rt.io.phantom import generate_study

    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    groups = bundle.partition().groups
    profiles = engine.batch_profiles(groups, 64)
    opt = profiles["dedn"].opt
    volumes = [generate_study(900_000 + i).hu for i in range(args.volumes)]
    if args.quick:
        volumes = [v[10:18] for v in volumes]
    count = bench.dedn_flops(bundle.dedn_path, m.size, m.channels)
    if count.flops is None:
        raise SystemExit(f"DeDN FLOPs {count.method}")
    flops = count.flops
    peak = fp16_peak(gpu.name)

    def line(backend: str, scan: dict[str, Any], images_per_s: float, extra: dict[str, Any]) -> None:
        tflops = flops * images_per_s / 1e12
        print(json.dumps({"preset": preset, "bundle": m.name, "backend": backend, **scan, "dedn_batch": opt,
                          "dedn_images_per_s": round(images_per_s, 1), "dedn_gflop_per_image": round(flops / 1e9, 3),
                          "dedn_tflops": round(tflops, 2), "fp16_peak_tflops": peak,
                          "share_of_fp16_peak": None if peak is None else round(tflops / peak, 4), **extra}), flush=True)

    import tensorrt

    record, _ = engine.find_engine(bundle, gpu, str(tensorrt.__version__))
    build_seconds = None
    if record is None or record.key.precision != "fp16":
        built = engine.build_engines(bundle, precision="fp16", max_batch=64)
        record, build_seconds = built.record, round(built.seconds, 1)
    with open_tensorrt_pair(bundle, record) as pair:
        scan = scan_rate(bundle, pair, volumes, args.repeats, opt)
        line("tensorrt-fp16", scan, dedn_rate_tensorrt(pair.dedn, opt, m.size, m.channels),
             {"engines": str(record.folder), "fp16_method": record.builder.get("fp16_method"), "build_seconds": build_seconds})
    with open_backends(bundle, "torch-cuda", torch_fp16=True, cuda_graph_batch=opt) as pair:
        scan = scan_rate(bundle, pair, volumes, args.repeats, opt)
        line("torch-cuda-fp16-graph", scan, dedn_rate_torch(pair.dedn, opt, m.size, m.channels), {})
    with open_backends(bundle, "torch-cuda") as pair:
        scan = scan_rate(bundle, pair, volumes, args.repeats, opt)
        line("torch-cuda-eager-fp32", scan, dedn_rate_torch(pair.dedn, opt, m.size, m.channels), {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", default="", help="tiny-preset bundle (default: the shipped head-ct-tiny)")
    parser.add_argument("--full", default="", help="full-preset bundle (none is shipped)")
    parser.add_argument("--volumes", type=int, default=2, help="phantom volumes per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend")
    parser.add_argument("--quick", action="store_true", help="eight slices per volume")
    args = parser.parse_args(argv)

    from isl_rt.backends.gpu import gpu_or_reason
    from isl_rt.bundle import default_bundle_path

    gpu, why = gpu_or_reason()
    if gpu is None:
        print(json.dumps({"kind": "machine", "gpu": None, "skipped": f"no CUDA GPU visible: {why}"}), flush=True)
        return 0
    print(json.dumps({**machine(), "fp16_peak_tflops": fp16_peak(gpu.name), "fp16_peak_source": FP16_PEAK_SOURCE}), flush=True)
    for preset, path in (("tiny", args.tiny or str(default_bundle_path())), ("full", args.full)):
        if not path or not Path(path).exists():
            print(json.dumps({"preset": preset, "skipped": f"no {preset} bundle (pass --{preset} BUNDLE)"}), flush=True)
            continue
        bench_preset(preset, path, gpu, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
