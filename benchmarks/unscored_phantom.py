"""What "never a silent normal" costs the phantom bundle: a phantom cohort scanned with every slice
scored, as the runtime did before (a slice without a cranial cavity scored by the DRN on an empty
difference image), and with the slices without a cavity not scored (the runtime now).

    python benchmarks/unscored_phantom.py --cohort build/ph-eval \
        [--before export/head-ct-tiny] [--after build/tiny-recal] [--out build/unscored-phantom] [--threads 1]

``--before`` is the bundle as it was calibrated before (its fused scan score's healthy scales and
thresholds fitted on scan scores of every slice); ``--after`` the same networks recalibrated the
way export/README.md says (``isl-rt calibrate`` with the same ``--scan-fusion``) on scores of the
scored slices only. Prints per run the scan AUC over the cohort's series (the cohort's labels.csv,
``label`` 1 = a disorder), the slices not scored, and the share of healthy and disordered series
flagged at the bundle's scan threshold. ``--series N``: the first N series; ``--quick``: the first 4.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(bundle_dir: Path, cohort: Path, out: Path, threads: int, *, every_slice: bool, limit: int = 0) -> dict[str, Any]:
    """Scan ``cohort`` (its first ``limit`` series; 0 = all) with the bundle into ``out`` and
    return the figures; ``every_slice`` scores slices without a cranial cavity too (the old rule)."""
    import shutil

    from isl_rt import pipeline
    from isl_rt.backends import open_backends
    from isl_rt.bundle import load_bundle
    from isl_rt.metrics import auc

    bundle = load_bundle(bundle_dir)
    root = cohort
    if limit:
        root = out / "cohort"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        for series in sorted(p for p in cohort.iterdir() if p.name.startswith("series_"))[:limit]:
            (root / series.name).symlink_to(series.resolve())
    floor = pipeline.MIN_REGION_FRACTION
    pipeline.MIN_REGION_FRACTION = -1.0 if every_slice else floor  # -1: every slice counts as having a cavity
    try:
        began = time.perf_counter()
        with open_backends(bundle, "onnxruntime", threads=threads) as pair:
            scorer = pipeline.Scorer(pipeline.params_from_bundle(bundle), pair.dedn, pair.drn)
            summary = pipeline.scan_directory(root, out / "scores.csv", bundle, scorer, backend_name=pair.name, resume=False)
        seconds = time.perf_counter() - began
    finally:
        pipeline.MIN_REGION_FRACTION = floor
    with (cohort / "labels.csv").open(newline="") as handle:
        labels = {r["SeriesInstanceUID"]: int(r["label"]) for r in csv.DictReader(handle)}
    with (out / "scores.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    y = np.array([labels[r["SeriesInstanceUID"]] for r in rows])
    s = np.array([float(r["scan_score"]) for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    unscored = sum(int(r["n_slices"]) - int(r["n_scored"]) for r in rows)
    result = {"bundle": str(bundle_dir), "every_slice": every_slice, "series": len(rows), "disorder": int(y.sum()),
              "slices": sum(int(r["n_slices"]) for r in rows), "not_scored": unscored, "seconds": seconds,
              "refused": summary.rejected + summary.errors}
    if 0 < y.sum() < y.size:
        result.update(auc=auc(y, s), flagged_healthy=float(flagged[y == 0].mean()), flagged_disorder=float(flagged[y == 1].mean()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="a phantom cohort (isl-rt phantom) with labels.csv")
    parser.add_argument("--before", type=Path, default=ROOT / "export" / "head-ct-tiny")
    parser.add_argument("--after", type=Path, default=None, help="the recalibrated bundle (default: --before)")
    parser.add_argument("--out", type=Path, default=Path("build/unscored-phantom"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--series", type=int, default=0, metavar="N", help="the cohort's first N series only (0: all)")
    parser.add_argument("--quick", action="store_true", help="the first 4 series only")
    args = parser.parse_args(argv)
    if not (args.cohort / "labels.csv").is_file():
        print(f"{args.cohort}/labels.csv is missing: write a cohort with isl-rt phantom first.", file=sys.stderr)
        return 1
    limit = 4 if args.quick else args.series
    results = [run(args.before, args.cohort, args.out / "before", args.threads, every_slice=True, limit=limit),
               run(args.after or args.before, args.cohort, args.out / "after", args.threads, every_slice=False, limit=limit)]
    for r in results:
        print(json.dumps(r, default=float), flush=True)
    print("| rule | bundle | series | slices not scored | scan AUC | healthy flagged | disorder flagged |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        figures = (f"{r['auc']:.3f} | {r['flagged_healthy']:.3f} | {r['flagged_disorder']:.3f}" if "auc" in r else "- | - | -")
        rule = "every slice scored (before)" if r["every_slice"] else "slices without a cavity not scored"
        print(f"| {rule} | `{Path(r['bundle']).name}` | {r['series']} | {r['not_scored']} of {r['slices']} | {figures} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
