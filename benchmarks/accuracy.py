"""Accuracy of a model bundle on a held-out phantom cohort, with the paper's ablations.

    python benchmarks/accuracy.py [--cohort build/accuracy-cohort] [--scans 300] [--seed 2026]
        [--bundle export/head-ct-tiny] [--slice-drn build/ckpt-slice/drn_best.pt] [--stride 2]
        [--out build/accuracy] [--limit N] [--results benchmarks/RESULTS.md]

1. The cohort: ``--scans`` phantom series (60% with one of the 18 disorder types, 40% healthy)
   drawn with ``--seed``, a seed no training or calibration run of the shipped bundle uses
   (training 1000..1099 and 3000..3039, calibration 31337). Written once into ``--cohort`` and reused.
2. Every series is scored, in one pass, by:
   - ``isl``: the full ISL pipeline as ``isl-rt scan`` runs it, K×K cells, ONNX Runtime, with the
     paper's scan score (the mean DRN slice score; a bundle's scan fusion is measured by
     benchmarks/phantom_fusion.py);
   - ``d_score``: the pixel-sum D-score — the sum of the (cavity-masked) difference image x_dif
     over pixels and channels, averaged over slices; no DRN;
   - ``slice_drn`` (with ``--slice-drn``): the original-image ablation — a DRN trained the same
     way (``isl-rt train drn --input slice``) on the windowed slices instead of x_dif;
   - ``residual`` / ``residual_patch``: the signed residual of the same pass (no DRN): the share of
     the slice, inside the cavity, brighter in the first window than its dedisorder image by more
     than 0.1 (``area``), or the share in the largest 4-connected patch of those pixels (``largest``);
     averaged over slices, as ``isl-rt scan`` averages a residual bundle's slice scores;
     ``residual_inset``: ``largest`` leaving out 4 pixels along the cavity's border;
     ``residual_adjacent``: the same, counting only the pixels that are also bright on the slice
     before or after (the real bundle's slice score);
   - ``strided``: the partition ablation — the same networks on a coarser partition,
     ``Partition.strided(K, stride)``: stride² passes of K²/stride² non-adjacent cells each
     instead of K² passes of one cell. Its DRN is the bundle's, trained on K×K differences.
   The time of each pipeline's scoring calls gives its slices/s (DICOM decoding excluded).
3. ``isl_rt.evaluate`` computes each method's tables (per disorder type, size and urgency, 95%
   CIs from 1000 resamples of 30% of the scans) into ``--out/<method>/``; the Markdown tables
   go into ``--results`` between the accuracy markers, with this command.

Per-series results are appended to ``--out/per_series.jsonl`` as they come, so an interrupted
run continues where it stopped. One JSON object per line is printed: the machine, then one
summary per method.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
#: the signed residual's threshold in the bundle's first window (the real bundle's, chosen on
#: real validation patients; not tuned on the phantom)
RESIDUAL = (0, 0.1)
#: the residual rows: (measure, inset, adjacent) of ``isl_rt.pipeline.residual_scores`` (also the
#: rows of benchmarks/accuracy_real.py)
RESIDUAL_ROWS = {"residual": ("area", 0, False), "residual_patch": ("largest", 0, False),
                 "residual_inset": ("largest", 4, False), "residual_adjacent": ("largest", 4, True)}
METHODS = ("isl", "d_score", "slice_drn", "strided", *RESIDUAL_ROWS)


def machine() -> dict[str, Any]:
    import onnxruntime

    return {"kind": "machine", "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def ensure_cohort(path: Path, scans: int, seed: int) -> None:
    from isl_rt.io.phantom import write_cohort

    if (path / "labels.csv").is_file():
        return
    print(f"writing {scans} phantom series (seed {seed}) into {path} ...", file=sys.stderr)
    write_cohort(path, scans, 0.6, seed)


class SliceDRN:
    """The original-image ablation's DRN (a torch checkpoint of ``isl-rt train drn --input slice``)."""

    def __init__(self, path: Path) -> None:
        import torch

        from isl_rt.training.drn import DRNTrainConfig, load_drn

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.model, meta = load_drn(path)
        config = DRNTrainConfig.from_dict(meta["config"])
        if config.input != "slice":
            raise SystemExit(f"{path} is a DRN of difference images; --slice-drn needs one trained with --input slice.")
        self.centre = np.asarray(meta["centre"], dtype=np.float64)
        self.cavity = config.cavity_spec()

    def scores(self, x: np.ndarray, windows: Any) -> np.ndarray:
        import torch

        from isl_rt.pipeline import mask_cavity

        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.cavity is not None:
            x = x.copy()
            mask_cavity(x, x, self.cavity.resolve(windows))
        with torch.no_grad():
            h = torch.cat([self.model(torch.from_numpy(x[i : i + 32])) for i in range(0, len(x), 32)]).double().numpy()
        return np.linalg.norm(h - self.centre[None], axis=1)


def check_run_key(args: argparse.Namespace, bundle: Any, out: Path) -> None:
    """per_series.jsonl continues only the run it was started by: the same bundle (its manifest),
    slice DRN, stride and cohort. Another run's rows would silently mix two models' scores."""
    from isl_rt.bundle import sha256_file

    key = {
        "bundle_manifest_sha256": sha256_file(bundle.root / "manifest.json"),
        "slice_drn_sha256": sha256_file(Path(args.slice_drn)) if args.slice_drn else "",
        "stride": args.stride,
        "cohort": str(Path(args.cohort).resolve()),
    }
    key_path = out / "run.json"
    if (out / "per_series.jsonl").is_file():
        before = json.loads(key_path.read_text()) if key_path.is_file() else {}
        changed = sorted(name for name in key if before.get(name) != key[name] and not (name == "slice_drn_sha256" and not before.get(name)))
        if changed:
            raise SystemExit(
                f"{out / 'per_series.jsonl'} holds scores of another run (different {', '.join(changed)}): "
                "remove it or pass another --out."
            )
    key_path.write_text(json.dumps(key, indent=1) + "\n")


def score_cohort(args: argparse.Namespace, bundle: Any, out: Path) -> None:
    """Scores every series of the cohort by every method into per_series.jsonl (seconds per series included)."""
    from isl_rt.backends import open_backends
    from isl_rt.io import dicom
    from isl_rt.pipeline import Scorer, params_from_bundle, residual_scores, with_stride

    params = params_from_bundle(bundle)
    strided = with_stride(params, args.stride)
    done_path = out / "per_series.jsonl"
    done = {json.loads(line)["uid"] for line in done_path.read_text().splitlines()} if done_path.is_file() else set()
    found = dicom.discover(Path(args.cohort))
    refs = found.series[: args.limit] if args.limit else found.series
    with open_backends(bundle, "onnxruntime") as pair, done_path.open("a") as sink:
        full = Scorer(params, pair.dedn, pair.drn, dedn_batch=args.batch_size)
        coarse = Scorer(strided, pair.dedn, pair.drn, dedn_batch=args.batch_size)
        for number, ref in enumerate(refs, start=1):
            if ref.series_uid in done:
                continue
            hu = dicom.load_volume(ref).hu
            start = time.perf_counter()
            s = full.score(hu)
            mid = time.perf_counter()
            c = coarse.score(hu)
            seconds = {"isl": mid - start, "strided": time.perf_counter() - mid}
            row = {
                "uid": ref.series_uid,
                "slices": int(len(s.slice_scores)),
                # the paper's scan score (over the scored slices), also for a bundle with a scan fusion
                "isl": float(np.nanmean(s.slice_scores)),
                "d_score": float(s.difference.sum(axis=(1, 2, 3)).mean()),
                **{name: float(residual_scores(s.x, s.inpainted, s.region, (*RESIDUAL, *rest))[0].mean())
                   for name, rest in RESIDUAL_ROWS.items()},
                "strided": float(np.nanmean(c.slice_scores)),
                "seconds": seconds,
            }
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(f"{number}/{len(refs)} {ref.series_uid[-12:]} isl {row['isl']:.4f}", file=sys.stderr, flush=True)


def add_slice_drn(args: argparse.Namespace, bundle: Any, out: Path) -> None:
    """The original-image ablation's scan scores for every row that lacks one (a cheap second pass:
    windowing and one DRN call per slice), so the DRN may be trained after the main pass."""
    from isl_rt import kernels
    from isl_rt.io import dicom
    from isl_rt.outputs import write_atomic

    path = out / "per_series.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if all("slice_drn" in row for row in rows):
        return
    model = SliceDRN(Path(args.slice_drn))
    refs = {ref.series_uid: ref for ref in dicom.discover(Path(args.cohort)).series}
    for row in rows:
        if "slice_drn" not in row:
            x = kernels.window(dicom.load_volume(refs[row["uid"]]).hu, bundle.windows_array, bundle.manifest.size)
            row["slice_drn"] = float(model.scores(x, bundle.manifest.windows).mean())
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def write_scores(out: Path, rows: list[dict[str, Any]], method: str, threshold: float | None) -> Path:
    path = out / f"scores_{method}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["SeriesInstanceUID", "scan_score", "flagged", "status", "error"])
        for row in rows:
            flagged = "" if threshold is None else int(row[method] > threshold)
            writer.writerow([row["uid"], f"{row[method]:.9g}", flagged, "ok", ""])
    return path


def _fmt_ci(ci: list[float]) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}"


def markdown(results: dict[str, dict[str, Any]], rates: dict[str, float], args: argparse.Namespace, n_series: int,
             command: str, stride_groups: int, k: int) -> str:
    from isl_rt.evaluate import group_table

    isl = results["isl"]
    lines = [
        MARK_START,
        "## Accuracy on a held-out phantom cohort",
        "",
        "Command (repository root, after `pip install \".[train,test]\"`; the slice-DRN ablation needs",
        "`isl-rt train drn phantom:40:3000 --ckpt build/ckpt-slice --input slice --seed 0` into a folder holding a copy of the DeDN checkpoint first):",
        "",
        f"    {command}",
        "",
        f"Cohort: {n_series} phantom series written by `isl-rt phantom --seed {args.seed}` ({isl['n_disorder']} with a disorder, "
        f"{isl['n_healthy']} healthy, {len(isl['by_disorder'])} disorder types); seed {args.seed} is used by no training or "
        "calibration run. The phantom generator also made the training data, so these figures say how the method does on "
        "this generator, not on real CT.",
        "",
        f"### Full ISL (the mean DRN slice score of `isl-rt scan`'s pass): AUC {isl['auc']:.3f} (95% CI {_fmt_ci(isl['auc_ci95'])})",
        "",
        f"Balanced threshold {isl['balanced_threshold']['threshold']:.4g}: sensitivity {isl['balanced_threshold']['sensitivity']:.3f}, "
        f"specificity {isl['balanced_threshold']['specificity']:.3f}. Bundle threshold: sensitivity "
        f"{isl['bundle_threshold']['sensitivity']:.3f}, specificity {isl['bundle_threshold']['specificity']:.3f}.",
        "",
    ]
    lines += group_table("By disorder type (each against all healthy scans)", isl["by_disorder"], heading="####")
    lines += group_table("By lesion size (the paper's Table 1)", isl["by_size"], heading="####")
    lines += group_table("By treatment urgency (the paper's Table 2)", isl["by_urgency"], heading="####")
    lines += [
        "### Ablation (the paper: original image 0.657 < D-score 0.752 < full ISL 0.868)",
        "",
        "| method | what scores a slice | AUC | 95% CI | small lesions AUC |",
        "|---|---|---:|---|---:|",
    ]
    what = {
        "slice_drn": "DRN trained the same way on the windowed slice itself",
        "d_score": "sum of the cavity-masked difference image x_dif",
        "isl": "DRN on x_dif (full ISL)",
        "residual": "signed residual: share of the cavity brighter than x_dd by > 0.1 (first window)",
        "residual_patch": "signed residual: largest 4-connected patch of those pixels",
        "residual_inset": "the same, leaving out 4 px along the cavity's border",
        "residual_adjacent": "the same, counting only pixels also bright on an adjacent slice",
    }
    for method in ("slice_drn", "d_score", "isl", *RESIDUAL_ROWS):
        if method in results:
            r = results[method]
            small = r["by_size"].get("small", {}).get("auc", float("nan"))
            lines.append(f"| {method} | {what[method]} | {r['auc']:.3f} | {_fmt_ci(r['auc_ci95'])} | {small:.3f} |")
    lines += [
        "",
        "### Partition ablation",
        "",
        "Slices/s: the scoring calls of both pipelines in the same run (ONNX Runtime, 2 cores, DICOM decoding excluded).",
        "The strided partition reuses the bundle's DRN, which was trained on K×K single-cell differences.",
        "",
        "| partition | DeDN passes per slice | slices/s | AUC | 95% CI |",
        "|---|---:|---:|---:|---|",
        f"| {k}×{k} single cells (the paper, default) | {k * k} | {rates['isl']:.2f} | {isl['auc']:.3f} | {_fmt_ci(isl['auc_ci95'])} |",
        f"| strided {args.stride} ({stride_groups} groups of non-adjacent cells) | {stride_groups} | {rates['strided']:.2f} | "
        f"{results['strided']['auc']:.3f} | {_fmt_ci(results['strided']['auc_ci95'])} |",
        "",
        "Per-method reports (Markdown, JSON, ROC PNGs) are written to `" + str(args.out) + "/<method>/`.",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def update_results(path: Path, section: str) -> None:
    update_results_between(path, section, MARK_START, MARK_END)


def update_results_between(path: Path, section: str, start: str, end: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the text
    between those markers in ``path``, or at its end."""
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="build/accuracy-cohort")
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--bundle", default=str(ROOT / "export" / "head-ct-tiny"))
    parser.add_argument("--slice-drn", default="", help="drn_best.pt of isl-rt train drn --input slice")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="build/accuracy")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N series (a quick look)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--results", default="", help="RESULTS.md to write the tables into (not with --limit)")
    args = parser.parse_args(argv)

    from isl_rt.bundle import load_bundle
    from isl_rt.evaluate import evaluate

    print(json.dumps(machine()), flush=True)
    ensure_cohort(Path(args.cohort), args.scans, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(args.bundle)
    check_run_key(args, bundle, out)
    score_cohort(args, bundle, out)
    if args.slice_drn:
        add_slice_drn(args, bundle, out)
    rows = [json.loads(line) for line in (out / "per_series.jsonl").read_text().splitlines()]
    if args.limit:
        rows = rows[: args.limit]
    threshold = bundle.manifest.threshold.scan_score if bundle.manifest.threshold else None
    labels = Path(args.cohort) / "labels.csv"
    results: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        if not all(method in row for row in rows):
            continue
        scores = write_scores(out, rows, method, threshold if method == "isl" else None)
        results[method] = evaluate(scores, labels, out / method, resamples=args.resamples)
        print(json.dumps({"kind": "method", "method": method, "auc": round(results[method]["auc"], 4),
                          "ci95": [round(v, 4) for v in results[method]["auc_ci95"]], "n": results[method]["n_scans"]}), flush=True)
    slices = sum(row["slices"] for row in rows)
    spent = {key: sum(row["seconds"][key] for row in rows) for key in ("isl", "strided")}
    rates = {key: slices / spent[key] if spent[key] else float("nan") for key in spent}
    print(json.dumps({"kind": "partition", "slices": slices, "slices_per_s": {k: round(v, 3) for k, v in rates.items()},
                      "speedup_strided_vs_cells": round(rates["strided"] / rates["isl"], 3)}), flush=True)
    if args.results and not args.limit:
        k = bundle.manifest.partition.k
        command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
        update_results(Path(args.results), markdown(results, rates, args, len(rows), command.strip(), args.stride**2, k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
