"""Throughput of the optimised scan against a research-style reference pipeline, in one run.

    python benchmarks/bench_scan.py [--quick] [--bundle PATH] [--volumes N] [--slices N] [--rounds R]
                                    [--threads 2] [--batch-size 16] [--no-openvino]

Every pipeline scores the same phantom HU volumes (generated in memory with fixed seeds; DICOM
decoding is left out) with the same weights:

- optimised: isl_rt.pipeline.Scorer — native kernels, batches across slices — on ONNX Runtime
  FP32 and on OpenVINO at fp32, bf16 and int8 (when the openvino extra is installed), each in the
  exact K×K mode (the paper's) and the strided partition of ``scan --stride 2``;
- reference: written the way research code does it — numpy windowing (isl_rt.kernels.reference),
  skimage Canny, numpy fan-out and composition, eager PyTorch on the bundle's torch weights, one
  slice at a time (its G masked images as one batch), exact K×K.

The machine is shared, so the pipelines run interleaved: each round times every pipeline once on
all volumes, and ``speedup_vs_reference`` is the median over rounds of the same round's ratio
(its range beside it). ``--quick`` checks that the script runs, not how fast: two mid slices of
one volume, one round, ONNX Runtime rows only (no OpenVINO, whose INT8 model is quantized on first
use), about 6 s here; its figures are not to be quoted.

Prints one JSON object per line: the machine; per pipeline its backend, precision, partition,
slices/s, speedup_vs_reference, the DeDN's achieved GFLOP/s and the recorded accuracy check of
that precision; then the machine's measured FP32 and BF16 matrix-multiply rates and the DeDN's
share of them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from typing import Any

import numpy as np

from isl_rt import bench


def machine(threads: int) -> dict[str, Any]:
    """The machine block every line of this script refers to (isl_rt.bench.machine)."""
    return {"kind": "machine", **bench.machine(), "threads": threads}


def reference_cavity(x: np.ndarray, cavity: Any) -> np.ndarray:
    """float32 [N,S,S]: the cranial cavity of ``x`` [N,C,S,S] as isl_rt.pipeline.cavity_mask draws it
    (every field of ``cavity``, a bundle.CavityArgs, passed by name; the air margin included), with
    the numpy twin of the cavity kernel instead of the native one."""
    from isl_rt.kernels import reference as R
    from isl_rt.pipeline import near_outside_air

    mask = R.cavity(x, cavity.channel, cavity.bone, cavity.margin, sides=cavity.sides, largest=cavity.largest)
    if cavity.air_margin:
        mask *= ~near_outside_air(x[:, cavity.channel], cavity.air_margin)
    return mask


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
                dif = dif * reference_cavity(x, cavity)[:, None]
            h = drn.infer({"difference": dif.astype(np.float32)})["embedding"]
            float(np.linalg.norm(h[0] - centre))
            R.heatmap(dif, x, m.heatmap.threshold, m.heatmap.box, m.heatmap.gamma)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one volume of two slices, one round, ONNX Runtime only (figures not to be quoted)")
    parser.add_argument("--bundle", default="", help="bundle folder (default: the shipped head-ct-tiny)")
    parser.add_argument("--volumes", type=int, default=1, help="phantom volumes per round")
    parser.add_argument("--slices", type=int, default=12, help="mid slices per volume (0 = all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2, help="inference threads of every pipeline")
    parser.add_argument("--batch-size", type=int, default=16, help="DeDN images per call of the optimised pipelines")
    parser.add_argument("--no-openvino", action="store_true", help="ONNX Runtime rows only")
    args = parser.parse_args(argv)

    import torch

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.io.phantom import generate_study
    from isl_rt.pipeline import Scorer, params_from_bundle, with_stride

    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.bundle or default_bundle_path())
    print(json.dumps(machine(args.threads)), flush=True)
    count, keep, rounds = (1, 2, 1) if args.quick else (args.volumes, args.slices, args.rounds)
    volumes = [generate_study(900_000 + i).hu for i in range(count)]
    if keep:
        volumes = [v[v.shape[0] // 2 - keep // 2:][:keep] for v in volumes]
    slices = sum(v.shape[0] for v in volumes)

    exact = params_from_bundle(bundle)
    partitions = {f"{exact.partition.k}x{exact.partition.k}": exact, "stride2": with_stride(exact, 2)}
    backends = [("onnxruntime", "fp32")]
    use_openvino = not (args.no_openvino or args.quick) and importlib.util.find_spec("openvino") is not None
    if use_openvino:
        backends += [("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]
    pairs = {}
    for backend, precision in backends:
        pair = open_backends(bundle, backend, threads=args.threads, precision="" if backend == "onnxruntime" else precision)
        pair.__enter__()
        pairs[(backend, precision)] = pair
    runs = {(b, p, name): Scorer(params, pairs[(b, p)].dedn, pairs[(b, p)].drn, dedn_batch=args.batch_size)
            for b, p in backends for name, params in partitions.items()}
    for scorer in runs.values():
        scorer.score(volumes[0][:1])  # warm-up
    with open_backends(bundle, "torch") as ref_pair:
        reference_scan([volumes[0][:1]], bundle, ref_pair.dedn, ref_pair.drn)  # warm-up
        seconds: dict[Any, list[float]] = {key: [] for key in runs}
        stages: dict[Any, list[dict[str, float]]] = {key: [] for key in runs}
        reference: list[float] = []
        for _ in range(rounds):
            reference.append(reference_scan(volumes, bundle, ref_pair.dedn, ref_pair.drn))
            for key, scorer in runs.items():
                start = time.perf_counter()
                totals: dict[str, float] = {}
                for hu in volumes:
                    for stage, value in scorer.score(hu).seconds.items():
                        totals[stage] = totals.get(stage, 0.0) + value
                seconds[key].append(time.perf_counter() - start)
                stages[key].append(totals)
    for pair in pairs.values():
        pair.__exit__(None, None, None)

    print(json.dumps({"pipeline": "reference", "backend": "torch-eager-cpu", "precision": "fp32", "partition": next(iter(partitions)),
                      "slices": slices, "rounds": rounds, "slices_per_s": round(slices / float(np.median(reference)), 3)}), flush=True)
    count = bench.dedn_flops(bundle.dedn_path, bundle.manifest.size, bundle.manifest.channels)
    if count.flops is None:
        raise SystemExit(f"DeDN FLOPs {count.method}")
    flops = count.flops
    cpu = None
    if use_openvino:
        from isl_rt.backends.openvino import check_status, cpu_info

        cpu = cpu_info()
    best_dedn = 0.0
    for (backend, precision, name), times in seconds.items():
        ratios = [r / t for r, t in zip(reference, times)]
        dedn = [s["dedn"] for s in stages[(backend, precision, name)]]
        groups = partitions[name].partition.groups
        gflops = flops * slices * groups / float(np.median(dedn)) / 1e9
        best_dedn = max(best_dedn, gflops)
        share = [1 - (s["dedn"] + s["drn"]) / sum(s.values()) for s in stages[(backend, precision, name)]]
        row: dict[str, Any] = {
            "pipeline": "optimised", "backend": backend, "precision": precision, "partition": name,
            "dedn_passes_per_slice": groups, "slices": slices, "rounds": rounds,
            "slices_per_s": round(slices / float(np.median(times)), 3),
            "speedup_vs_reference": round(float(np.median(ratios)), 2),
            "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "dedn_gflops": round(gflops, 2), "share_outside_dedn_drn": round(float(np.median(share)), 4),
        }
        if backend == "openvino":
            row["dedn_runs"] = getattr(pairs[(backend, precision)].dedn, "runs", "")
            if precision != "fp32" and cpu is not None:
                passed, why = check_status(bundle, precision, cpu)
                row["accuracy_check"] = {"passed": passed, "why": why, "partition": next(iter(partitions))}
        print(json.dumps(row), flush=True)

    rates: dict[str, Any] = {"numpy_fp32_matmul_gflops": round(bench.numpy_matmul_gflops(), 1),
                             # PyTorch's BF16 path: native with AVX512-BF16 or AMX, emulated elsewhere
                             "torch_bf16_matmul_gflops": round(bench.torch_matmul_gflops("cpu", "bf16", args.threads, n=256, repeats=3), 2)}
    if use_openvino:
        for precision in ("f32", "bf16"):
            rate, ran = bench.openvino_matmul_gflops("fp32" if precision == "f32" else precision, args.threads)
            rates[f"openvino_{precision}_matmul_gflops"] = round(rate, 1)
            rates[f"openvino_{precision}_matmul_ran"] = ran
    bf16_rate = max(rates["torch_bf16_matmul_gflops"], rates.get("openvino_bf16_matmul_gflops", 0.0))
    print(json.dumps({
        "summary": "scan",
        "bundle": bundle.manifest.name,
        "cpu_bf16": None if cpu is None else cpu.bf16,
        "dedn_gflop_per_image": round(flops / 1e9, 3),
        "best_dedn_gflops": round(best_dedn, 2),
        **rates,
        "best_dedn_share_of_fp32_matmul": round(best_dedn / rates["numpy_fp32_matmul_gflops"], 3),
        "best_dedn_share_of_bf16_matmul": round(best_dedn / bf16_rate, 3) if bf16_rate else None,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
