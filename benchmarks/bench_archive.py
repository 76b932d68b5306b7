"""Archive scale: the same phantom cohort scanned by the local engine and by a Ray actor pool.

    python benchmarks/bench_archive.py --series 200 [--stride 2] [--actors 2] [--bundle PATH]

Writes ``--series`` phantom series (seed 777), then scans them with ``isl-rt scan``'s two engines
on this machine, one after the other, with the same bundle, backend (ONNX Runtime) and partition:
``local`` (:func:`isl_rt.pipeline.scan_directory`, ``--threads`` CPU threads, the next series
decoded on a thread while one is scored) and ``ray`` (:class:`isl_rt.ray_engine.RayPool`, a local
Ray instance with ``--actors`` actors of ``--threads // --actors`` threads each). Prints JSON lines:
the machine, one line per engine (wall time, slices/s, seconds per series, CPU seconds per series
(user + system; the driver's and the actors' apart), start-up time of the pool, peak RSS of the
driver and of each actor, niceness), and the ratio line. On a shared machine the CPU seconds are
the fair comparison: Ray starts its workers at a lower priority than the driver (higher nice), so
their wall time depends on what else runs. The CSVs of the two runs are
compared row for row (timings left out); a difference fails the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import ray

    from isl_rt import bench

    return {"kind": "machine", **bench.machine(), "ray": ray.__version__, "nice": os.nice(0)}


def peak_rss_mib(pid: int | None = None) -> float:
    """VmHWM of a process (this one by default), MiB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default) so far."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[16])


def stable_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]
    return sorted(rows, key=lambda r: (r["path"], r["series"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--stride", type=int, default=0, help="the scan's --stride (0 = the bundle's partition)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the local scan, shared by the actors")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--bundle", default="")
    parser.add_argument("--cohort", default="", help="scan this folder instead of writing a cohort")
    args = parser.parse_args(argv)

    import ray

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.io.phantom import write_cohort
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory, with_stride
    from isl_rt.ray_engine import ActorSpec, RayOptions, RayPool

    print(json.dumps(machine()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="isl-archive-"))
    cohort = Path(args.cohort) if args.cohort else work / "cohort"
    if not args.cohort:
        write_cohort(cohort, args.series, 0.5, 777)
    bundle = load_bundle(args.bundle or default_bundle_path())
    results: dict[str, dict[str, Any]] = {}

    start = time.perf_counter()
    cpu_before = cpu_seconds()
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        scorer = Scorer(with_stride(params_from_bundle(bundle), args.stride), pair.dedn, pair.drn)
        ready = time.perf_counter() - start
        summary = scan_directory(cohort, work / "local.csv", bundle, scorer, backend_name=pair.name, resume=False)
    wall = time.perf_counter() - start
    local_cpu = cpu_seconds() - cpu_before
    results["local"] = {"cpu_s_per_series": round(local_cpu / summary.ok, 3), "nice": os.nice(0),"engine": "local", "threads": args.threads, "series": summary.ok, "slices": summary.slices,
                        "wall_s": round(wall, 2), "startup_s": round(ready, 2), "scan_s": round(summary.seconds, 2),
                        "slices_per_s": round(summary.slices / summary.seconds, 3),
                        "s_per_series": round(summary.seconds / summary.ok, 3),
                        "driver_peak_rss_mib": round(peak_rss_mib(), 1)}
    print(json.dumps(results["local"]), flush=True)

    per_actor = max(1, args.threads // args.actors)
    start = time.perf_counter()
    ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    spec = ActorSpec(bundle.root.resolve(), "onnxruntime", per_actor, "", args.stride, 16, None, None, 3, Path.cwd())
    with RayPool(spec, RayOptions("local", args.actors, 0.0)) as pool:
        ready = time.perf_counter() - start
        actors_before = [cpu_seconds(pid) for pid in pool.pids]
        driver_before = cpu_seconds()
        summary = pool.scan(cohort, work / "ray.csv", bundle, resume=False)
        driver_cpu = cpu_seconds() - driver_before
        actor_cpu = sum(cpu_seconds(pid) - before for pid, before in zip(pool.pids, actors_before))
        actor_rss = [round(peak_rss_mib(pid), 1) for pid in pool.pids]
        actor_nice = [niceness(pid) for pid in pool.pids]
    wall = time.perf_counter() - start
    ray.shutdown()
    results["ray"] = {"actor_cpu_s_per_series": round(actor_cpu / summary.ok, 3),
                      "driver_cpu_s_per_series": round(driver_cpu / summary.ok, 4), "driver_nice": os.nice(0),
                      "actor_nice": actor_nice, "engine": "ray", "actors": args.actors, "threads_per_actor": per_actor, "series": summary.ok,
                      "slices": summary.slices, "wall_s": round(wall, 2), "startup_s": round(ready, 2),
                      "scan_s": round(summary.seconds, 2), "slices_per_s": round(summary.slices / summary.seconds, 3),
                      "s_per_series": round(summary.seconds / summary.ok, 3),
                      "driver_peak_rss_mib": round(peak_rss_mib(), 1), "actor_peak_rss_mib": actor_rss}
    print(json.dumps(results["ray"]), flush=True)

    same = stable_rows(work / "local.csv") == stable_rows(work / "ray.csv")
    local, distributed = results["local"], results["ray"]
    print(json.dumps({
        "kind": "ratio", "series": args.series, "stride": args.stride, "same_rows": same,
        "ray_over_local_slices_per_s": round(distributed["slices_per_s"] / local["slices_per_s"], 3),
        "ray_over_local_cpu_s_per_series": round((distributed["actor_cpu_s_per_series"] + distributed["driver_cpu_s_per_series"])
                                                 / local["cpu_s_per_series"], 3),
        "ray_minus_local_s_per_series": round(distributed["s_per_series"] - local["s_per_series"], 3),
        "ray_startup_minus_local_s": round(distributed["startup_s"] - local["startup_s"], 2),
        "cohort": str(cohort),
    }), flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
