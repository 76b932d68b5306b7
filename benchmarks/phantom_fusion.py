"""Scan-score fusion on the phantom: the DRN's scan score and the bright and dark residual, each
judged against healthy scans only, fused by their maximum.

    python benchmarks/phantom_fusion.py [--bundle export/head-ct-tiny] [--dev-cohort build/dev-cohort-s26]
        [--cohort build/accuracy-cohort] [--out build/phantom-fusion] [--results benchmarks/RESULTS.md]

Why: the phantom bundle's DRN finds volume changes (atrophy, hydrocephalus, chronic infarcts)
and misses blood; the real bundle's bright residual finds blood and misses everything darker than
brain (benchmarks/accuracy.py rows). Three parts, each a scan score of one pass of the bundle:

- ``drn``: the mean DRN slice score (the paper's scan score, ``isl-rt scan``'s);
- ``bright``: the mean over slices of the largest 4-connected patch where the brain window is
  brighter than the dedisorder image by more than 0.2, 4 px in from the cavity's border, on two
  adjacent slices (``isl_rt.pipeline.residual_scores`` with measure ``largest``, inset 4, adjacent);
- ``dark``: the same where the slice is darker than the dedisorder image by more than 0.2,
  over the whole cavity (inset 0): CSF-density lesions, enlarged CSF spaces, oedema.

Each part is put on a healthy scale, (score − median) / (90th percentile − median) of the
healthy scans of ``--dev-cohort`` only (a cohort of another seed; no label of a disorder is read
to fit it), and the fused scan score is the largest of the three: a scan is as abnormal as its
most abnormal evidence. The parts, the thresholds, the insets and the scale were chosen on the
development cohort (seed 11, 120 series) before the test cohort was scored with them.

The test cohort is the 300-series cohort of benchmarks/accuracy.py (seed 2026). Per-series part
scores go to ``--out/<cohort>.jsonl`` as they come (an interrupted run continues).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from accuracy import ensure_cohort, machine, update_results_between  # noqa: E402

MARK_START, MARK_END = "<!-- phantom_fusion:start -->", "<!-- phantom_fusion:end -->"
#: the parts, in ``isl-rt calibrate --scan-fusion`` words (an empty window: the bundle's first);
#: named drn, bright and dark in the tables (the phantom bundle's slice score is the DRN's)
SCAN_FUSION = "slice,bright::0.2:4,dark::0.2:0"
PARTS = ("drn", "bright", "dark")


def fusion_parts(window: str) -> tuple[Any, ...]:
    from isl_rt.cli.scan import parse_scan_fusion

    return parse_scan_fusion(SCAN_FUSION, window)


def part_scores(bundle: Any, cohort: Path, sink_path: Path) -> list[dict[str, Any]]:
    """The three part scores of every series of ``cohort`` (cached in ``sink_path``), computed by
    the runtime's own :func:`isl_rt.pipeline.fusion_part_scores` from one pass of the bundle."""
    from isl_rt.backends import open_backends
    from isl_rt.io import dicom
    from isl_rt.pipeline import Scorer, fusion_args, fusion_part_scores, params_from_bundle

    done = {}
    if sink_path.is_file():
        done = {row["uid"]: row for row in map(json.loads, sink_path.read_text().splitlines())}
    labels = {r["SeriesInstanceUID"]: r for r in csv.DictReader((cohort / "labels.csv").read_text().splitlines())}
    refs = [ref for ref in dicom.discover(cohort).series if ref.series_uid not in done]
    if refs:
        from isl_rt.bundle import ScanFusionSpec

        windows = bundle.manifest.windows
        fusion = fusion_args(ScanFusionSpec(fusion_parts(windows[0].name)), windows)
        params = replace(params_from_bundle(bundle), fusion=None)  # the parts of the mean slice score, unfused
        with open_backends(bundle, "onnxruntime") as pair, sink_path.open("a") as sink:
            scorer = Scorer(params, pair.dedn, pair.drn)
            for number, ref in enumerate(refs, start=1):
                start = time.perf_counter()
                s = scorer.score(dicom.load_volume(ref).hu)
                values = fusion_part_scores(s.x, s.inpainted, s.region, s.slice_scores, fusion)
                row = {"uid": ref.series_uid, **dict(zip(PARTS, map(float, values))),
                       "seconds": round(time.perf_counter() - start, 2)}
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                done[row["uid"]] = row
                print(f"{cohort.name} {number}/{len(refs)} {row}", file=sys.stderr, flush=True)
    rows = []
    for uid, row in done.items():
        label = labels[uid]
        rows.append({**row, "label": int(label["label"]), "type": label["disorder_type"]})
    return rows


def check_run_key(bundle: Any, cohorts: list[Path], out: Path) -> None:
    """The cached part scores in ``out`` belong to one pair of networks and what they read (the
    manifest's files, windows, partition, Canny and cavity: not its thresholds or fusion scales,
    which the part scores do not depend on) and these cohorts; another run's rows would silently
    mix two models' scores."""
    m = bundle.manifest.to_dict()
    key = json.loads(json.dumps({"networks": {name: m[name] for name in ("files", "windows", "partition", "canny", "cavity", "size")},
                                 "cohorts": [str(c.resolve()) for c in cohorts]}))
    path = out / "run.json"
    if path.is_file() and json.loads(path.read_text()) != key:
        raise SystemExit(f"{out} holds part scores of another bundle or cohort: remove it or pass another --out.")
    path.write_text(json.dumps(key, indent=1) + "\n")


def fitted_fusion(bundle: Any, rows: list[dict[str, Any]]) -> Any:
    """The fusion's healthy scales fitted on the healthy rows (:func:`isl_rt.bundle.fit_scan_fusion`)."""
    from isl_rt.bundle import ScanFusionSpec, fit_scan_fusion

    healthy = [[r[p] for p in PARTS] for r in rows if r["label"] == 0]
    if not healthy:
        raise SystemExit("The development cohort has no healthy series to fit the healthy scale on.")
    return fit_scan_fusion(ScanFusionSpec(fusion_parts(bundle.manifest.windows[0].name)), healthy)


def fused(rows: list[dict[str, Any]], bundle: Any, spec: Any) -> np.ndarray:
    """The runtime's fused scan score (:func:`isl_rt.pipeline.fused_scan_score`) of each row."""
    from isl_rt.pipeline import fused_scan_score, fusion_args

    runtime = fusion_args(spec, bundle.manifest.windows)
    return np.array([fused_scan_score(np.array([r[p] for p in PARTS]), runtime) for r in rows], dtype=np.float64)


def table(rows: list[dict[str, Any]], scores: dict[str, np.ndarray], resamples: int) -> list[str]:
    from isl_rt.metrics import auc, bootstrap_auc

    y = np.array([r["label"] for r in rows])
    kinds = np.array([r["type"] for r in rows])
    types = sorted(set(kinds) - {"healthy"})
    healthy = kinds == "healthy"
    lines = ["| score | AUC | 95% CI | lowest type | " + " | ".join(t.replace("_", " ") for t in types) + " |",
             "|---|---|---|---|" + "---|" * len(types)]
    for name, s in scores.items():
        ci = bootstrap_auc(y, s, resamples=resamples)
        per = [auc(np.r_[np.ones((kinds == t).sum()), np.zeros(healthy.sum())], np.r_[s[kinds == t], s[healthy]])
               for t in types]
        lines.append(f"| {name} | {auc(y, s):.3f} | {ci.low:.3f}–{ci.high:.3f} | {min(per):.3f} | "
                     + " | ".join(f"{v:.2f}" for v in per) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(ROOT / "export" / "head-ct-tiny"))
    parser.add_argument("--dev-cohort", default="build/dev-cohort-s26")
    parser.add_argument("--dev-scans", type=int, default=120)
    parser.add_argument("--dev-seed", type=int, default=11)
    parser.add_argument("--cohort", default="build/accuracy-cohort")
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default="build/phantom-fusion")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--results", default="", help="RESULTS.md to write the tables into")
    args = parser.parse_args(argv)

    from isl_rt.bundle import load_bundle

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(machine()), flush=True)
    bundle = load_bundle(Path(args.bundle))
    dev_path, test_path = Path(args.dev_cohort), Path(args.cohort)
    ensure_cohort(dev_path, args.dev_scans, args.dev_seed)
    ensure_cohort(test_path, args.scans, args.seed)
    check_run_key(bundle, [dev_path, test_path], out)
    dev = part_scores(bundle, dev_path, out / "dev.jsonl")
    test = part_scores(bundle, test_path, out / "test.jsonl")
    spec = fitted_fusion(bundle, dev)
    scores = {p: np.array([r[p] for r in test]) for p in PARTS}
    scores["fused"] = fused(test, bundle, spec)
    shipped = bundle.manifest.scan_fusion
    same_parts = shipped is not None and shipped.fitted and shipped.unfitted() == spec.unfitted()
    if same_parts:
        scores["fused, the bundle's own scales"] = fused(test, bundle, shipped)
    lines = table(test, scores, args.resamples)
    n_healthy = sum(r["label"] == 0 for r in dev)
    section = "\n".join([
        MARK_START,
        "",
        f"Command: `python benchmarks/phantom_fusion.py --bundle {args.bundle} --dev-cohort {args.dev_cohort} "
        f"--cohort {args.cohort} --out {args.out}`",
        "",
        f"Test cohort: {len(test)} series (seed {args.seed}), {sum(r['label'] for r in test)} with a disorder. "
        f"Healthy scales from the {n_healthy} healthy series of the development cohort (seed {args.dev_seed}): "
        + ", ".join(f"{name} median {p.median:.4g}, spread {p.spread:.4g}" for name, p in zip(PARTS, spec.parts)) + "."
        + ("" if not same_parts else f" The bundle's own scales come from {shipped.n_healthy_scans} healthy scans (`isl-rt calibrate`)."),
        "",
        *lines,
        "",
        MARK_END,
        "",
    ])
    print(section)
    if args.results:
        update_results_between(Path(args.results), section, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
