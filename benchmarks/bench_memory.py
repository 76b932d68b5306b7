"""Memory of a long scan: peak and current RSS after each series.

    python benchmarks/bench_memory.py --series 100 [--bundle PATH] [--cohort DIR]

Writes a phantom cohort of ``--series`` series (seed 555; or scans an existing ``--cohort``),
scans it with ``isl_rt.pipeline.scan_directory`` on ONNX Runtime, and prints one JSON line per
checkpoint (after series 1, 10, 25, 50, 100, ...) with the process's peak RSS so far and its
current RSS, then a summary line. A flat current RSS means memory does not grow with the number
of series.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--bundle", default="")
    parser.add_argument("--cohort", default="", help="scan this folder instead of writing a cohort")
    args = parser.parse_args(argv)

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.io.phantom import write_cohort
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    work = Path(tempfile.mkdtemp(prefix="isl-memory-"))
    cohort = Path(args.cohort) if args.cohort else work / "cohort"
    if not args.cohort:
        write_cohort(cohort, args.series, 0.5, 555)
    bundle = load_bundle(args.bundle or default_bundle_path())
    checkpoints = {1, 10, 25, 50, 100, 200, 500, 1000}
    samples: list[dict[str, float]] = []

    def on_series(event: object) -> None:
        row = event.row  # type: ignore[attr-defined]
        if row.get("status") != "ok":
            return
        done = len(samples) + 1
        sample = {"series_done": done, "peak_rss_mib": round(peak_rss_mib(), 1), "current_rss_mib": round(current_rss_mib(), 1)}
        samples.append(sample)
        if done in checkpoints:
            print(json.dumps(sample), flush=True)

    start = time.perf_counter()
    with open_backends(bundle, "onnxruntime") as pair:
        summary = scan_directory(cohort, work / "scores.csv", bundle, Scorer(params_from_bundle(bundle), pair.dedn, pair.drn),
                                 backend_name=pair.name, resume=False, on_series=on_series)
    tenth = samples[max(0, len(samples) // 10 - 1)]
    print(json.dumps({
        "summary": "memory", "series": summary.ok, "slices": summary.slices, "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "current_rss_mib_after_10pct": tenth["current_rss_mib"], "current_rss_mib_at_end": samples[-1]["current_rss_mib"],
        "cohort": str(cohort),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
