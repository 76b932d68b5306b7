"""The real-data bundle on the phantom cohort: DICOM CT of another source, read through the
bundle's brain window, with 18 disorder types the real data do not hold.

    python benchmarks/real_bundle_phantom.py [--bundle export/head-ct-real-tiny]
        [--cohort build/accuracy-cohort] [--out build/real-bundle-phantom] [--threads 0]
        [--results benchmarks/RESULTS.md]

``head-ct-real-tiny`` was trained and calibrated on pre-windowed PNG slices of intracerebral
haemorrhage from one hospital; its slice score counts bright residual (blood is brighter than the
brain the DeDN paints in its place). What this measures, with no choice made on it: how that
bundle scores DICOM CT it has never seen the like of (synthetic heads of another look, through
``input.hu_window``), disorder type by type, against the cohort's healthy series:

- ``scan score``: the bundle's scan score (the mean of its slice scores);
- ``top slice``: the series' highest slice score;
- ``any slice flagged``: the share of each type's series with at least one slice above the
  bundle's slice threshold (calibrated on the real validation patients), and of the healthy
  series;
- with ``--calibration-cohort`` (a phantom cohort of another seed, as a site would calibrate on
  its own healthy scans): the share of each type's series whose top slice score is above the
  threshold that keeps 95% of that cohort's healthy series below it (``calibrate_threshold``'s
  rule, the one ``isl-rt calibrate`` uses). No disorder label of either cohort is read to fit it.

The cohort is the 300-series phantom cohort of benchmarks/accuracy.py (seed 2026). The scan goes
to ``--out/scores.csv`` as ``isl-rt scan`` writes it, and an interrupted run continues.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from accuracy import ensure_cohort, machine, update_results_between  # noqa: E402
from phantom_fusion import table  # noqa: E402

MARK_START, MARK_END = "<!-- real_bundle_phantom:start -->", "<!-- real_bundle_phantom:end -->"


def scan_cohort(bundle: Any, cohort: Path, out: Path, threads: int) -> Any:
    """``isl-rt scan`` of the cohort with ``bundle`` into ``out/scores.csv`` (resumed when begun)."""
    from isl_rt.backends import open_backends
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    with open_backends(bundle, "onnxruntime", threads=threads) as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn)
        return scan_directory(cohort, out / "scores.csv", bundle, scorer, backend_name=pair.description, resume=True)


def series_rows(cohort: Path, out: Path, slice_threshold: float) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(scored rows: label, type, scan score, top slice score, any slice flagged; rows not scored)."""
    from isl_rt.outputs import safe_name
    from isl_rt.pipeline import series_json_dir

    with (cohort / "labels.csv").open(newline="") as handle:
        labels = {r["SeriesInstanceUID"]: r for r in csv.DictReader(handle)}
    scored, other = [], []
    with (out / "scores.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            truth = labels.get(row["SeriesInstanceUID"])
            if truth is None:
                continue
            if row["status"] != "ok":
                other.append({"type": truth["disorder_type"], "status": row["status"], "error": row["error"]})
                continue
            detail = json.loads((series_json_dir(out / "scores.csv") / f"{safe_name(row['series'])}.json").read_text())
            slices = np.asarray(detail["slice_scores"], dtype=np.float64)  # NaN (null): a slice not scored
            scored.append({"label": int(truth["label"]), "type": truth["disorder_type"], "scan": float(row["scan_score"]),
                           "top": float(np.nanmax(slices)), "flagged": bool((slices > slice_threshold).any()),
                           "level_shift": detail["level_shift"]})
    return scored, other


def flag_line(rows: list[dict[str, Any]], flagged: np.ndarray, what: str) -> list[str]:
    """Each type's share of series ``flagged`` (bool, one per row), in :func:`table`'s column order."""
    kinds = np.array([r["type"] for r in rows])
    types = sorted(set(kinds) - {"healthy"})
    healthy = float(flagged[kinds == "healthy"].mean())
    return [f"| {what}: share of series (healthy series: {healthy:.2f}) | - | - | - | "
            + " | ".join(f"{flagged[kinds == t].mean():.2f}" for t in types) + " |"]


def shown(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (the command as a user types it)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(ROOT / "export" / "head-ct-real-tiny"))
    parser.add_argument("--cohort", default="build/accuracy-cohort")
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default="build/real-bundle-phantom")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--calibration-cohort", default="", help="a phantom cohort of another seed whose healthy "
                        "series give a site's own threshold of the top slice score (e.g. build/dev-cohort-s26)")
    parser.add_argument("--calibration-scans", type=int, default=120)
    parser.add_argument("--calibration-seed", type=int, default=11)
    parser.add_argument("--results", default="", help="RESULTS.md to write the tables into")
    args = parser.parse_args(argv)

    from isl_rt.bundle import load_bundle

    out, cohort = Path(args.out), Path(args.cohort)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(machine()), flush=True)
    bundle = load_bundle(Path(args.bundle))
    if bundle.manifest.slice_threshold is None or not bundle.manifest.input_spec.reads("hu"):
        print(f"{args.bundle} needs a slice threshold and a brain window for DICOM CT (input.hu_window).", file=sys.stderr)
        return 1
    ensure_cohort(cohort, args.scans, args.seed)
    began = time.perf_counter()
    summary = scan_cohort(bundle, cohort, out, args.threads)
    seconds = time.perf_counter() - began
    threshold = bundle.manifest.slice_threshold.slice_score
    rows, other = series_rows(cohort, out, threshold)
    scores = {"scan score (mean slice score)": np.array([r["scan"] for r in rows]),
              "top slice score": np.array([r["top"] for r in rows])}
    shifts = np.array([r["level_shift"] for r in rows], dtype=np.float64)
    reasons = sorted({o["error"] for o in other})
    flags = flag_line(rows, np.array([r["flagged"] for r in rows]), "any slice above the bundle's slice threshold")
    site = ""
    if args.calibration_cohort:
        from isl_rt.bundle import calibrate_threshold

        calibration, out_cal = Path(args.calibration_cohort), out / "calibration"
        out_cal.mkdir(exist_ok=True)
        ensure_cohort(calibration, args.calibration_scans, args.calibration_seed)
        scan_cohort(bundle, calibration, out_cal, args.threads)
        healthy_top = [r["top"] for r in series_rows(calibration, out_cal, threshold)[0] if r["label"] == 0]
        cut = calibrate_threshold(healthy_top, 0.95).scan_score
        flags += flag_line(rows, np.array([r["top"] > cut for r in rows]), "top slice above the site's threshold")
        site = (f" The site's threshold: top slice score {cut:.6g}, from the {len(healthy_top)} healthy series of "
                f"{args.calibration_cohort} (seed {args.calibration_seed}).")
    section = "\n".join([
        MARK_START,
        "",
        f"Command: `python benchmarks/real_bundle_phantom.py --bundle {shown(args.bundle)} --cohort {args.cohort} --out {args.out}"
        + (f" --calibration-cohort {args.calibration_cohort}" if args.calibration_cohort else "") + "` "
        f"— {len(rows)} of {len(rows) + len(other)} series scored ({summary.ok} scanned in this run, in "
        f"{seconds:.0f} s), {sum(r['label'] for r in rows)} with a disorder; slice threshold {threshold:.6g}; "
        f"brain-level shift of the series {np.min(shifts):+.3f} to {np.max(shifts):+.3f}.{site}",
        *([""] + [f"Not scored: {len(other)} ({'; '.join(reasons)})."] if other else []),
        "",
        *table(rows, scores, args.resamples),
        *flags,
        "",
        MARK_END,
        "",
    ])
    print(section)
    Path(out, "metrics.json").write_text(json.dumps({"rows": rows, "not_scored": other, "machine": machine()}, indent=1))
    if args.results:
        update_results_between(Path(args.results), section, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
