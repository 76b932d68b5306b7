"""Real head CT: the slice-level protocol on held-out patients of PHE-SICH-CT-IDS.

    python benchmarks/accuracy_real.py --bundle export/head-ct-real-tiny \
        [--data ../shared/data/phe-sich-ct-ids] [--split-seed 0] [--out build/accuracy_real] \
        [--slice-drn CKPT/drn_best.pt] [--threads 0] [--write-results]

1. The patients are split as ``isl-rt split`` does (seeded, by patient, 60/20/20); only the test
   patients are used here. The bundle must have been trained on the training patients and
   calibrated on the validation patients of the same seed (its manifest's notes say which).
2. The test patients are scanned with the bundle as ``isl-rt scan`` does (``scan_directory``:
   slices CSV and heat maps).
3. ``isl_rt.evaluate_slices`` gives the slice-level report: AUC with a CI from resampling
   patients, lesion-size terciles, localisation. Localisation is reported three times: on the
   masks as drawn, on each mask part filled to its convex hull, and on all of a slice's mask
   filled to one convex hull (the dataset's masks often trace the oedema ring around a haematoma,
   leaving the blood itself outside, see its README; most rings are drawn in pieces, whose own
   hulls still leave the blood out).
4. From the same scan, per slice, the paper's ablation and simple baselines:
   ``isl``: the DRN's slice score (full ISL); ``dscore``: the pixel-sum D-score, the sum of the
   difference image inside the scored region (no DRN); ``slice_drn`` (with ``--slice-drn``): a DRN
   trained the same way on the windowed slice itself (``isl-rt train drn --input slice``);
   ``residual``: pixels inside the cavity where the slice is brighter than its dedisorder image by
   more than 0.1 (the signed reconstruction residual; threshold set on validation patients);
   ``residual_patch``: the largest 4-connected patch of those pixels (a haemorrhage is one compact
   patch, the DeDN's errors of healthy tissue scattered specks and lines; chosen on validation);
   ``residual_inset``: the same, leaving out the 4 pixels along the cavity's border (where the
   DeDN's errors of healthy tissue are largest; chosen on validation);
   ``residual_adjacent``: the same, counting only the pixels that are bright on the slice before
   or after too (blood fills a volume, the DeDN's errors are specks; chosen on validation);
   ``bright``: pixels inside the cavity with gray value in [0.6, 0.95) (fresh blood is brighter than
   brain in a brain window; no network); ``cavity``: the share of the slice inside the cranial
   cavity (the slice's level, no lesion information at all).
   Every score gets its plain AUC (95% CI resampling patients) and a *level-matched* AUC: lesion
   and lesion-free slices compared only within the same quintile of cavity share (haemorrhages
   sit at mid levels, where the cavity is large, so a score that only knows the level already
   reaches a high plain AUC; ``cavity`` shows how high).
5. Where the heat map's maximum lies on the lesion slices with a mask, against two localisers that
   know nothing of the networks (the brightest blood-range pixel, gray in [0.6, 0.95) after a 3×3
   mean, inside the cavity less its 4-pixel border; the innermost pixel of the largest such patch),
   on two masks: the slice's mask filled to one hull (as above), and that hull grown into the
   blood-range tissue it touches (the 8-connected patches of smoothed gray in [0.6, 0.95) that
   come within 2 pixels of the hull). The second mask is derived, not drawn: it asks whether the
   maximum sits on the haematoma whose ring the annotators outlined, which the drawn rings leave
   out. It is evidence of what limits the hit rate, not the hit rate.

Prints the markdown tables and writes ``metrics.json`` into ``--out``; ``--write-results`` puts
the tables into benchmarks/RESULTS.md between this script's markers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy import RESIDUAL_ROWS  # noqa: E402  (the residual rows of both accuracy benchmarks)
DEFAULT_DATA = Path(os.environ.get("ISL_RT_REAL_DATA", HERE.parents[1] / "shared" / "data" / "phe-sich-ct-ids"))
MARK_START = "<!-- accuracy_real:start -->"
MARK_END = "<!-- accuracy_real:end -->"
RESIDUAL_THRESHOLD = 0.1
BRIGHT = (0.6, 0.95)
LEVEL_BINS = 5
#: share of the patients drawn (without replacement) in each resample of a CI
FRACTION = 0.3
METHODS = {
    "isl": "full ISL: DRN of the difference image (the paper)",
    "slice_drn": "original slice → DRN (trained the same way on the windowed slice)",
    "dscore": "pixel-sum D-score: sum of the difference image in the cavity",
    "residual": "signed residual: cavity pixels brighter than the dedisorder image by > 0.1",
    "residual_patch": "signed residual, largest 4-connected patch of those pixels",
    "residual_inset": "the same, leaving out 4 px along the cavity's border",
    "residual_adjacent": "the same, counting only pixels also bright on an adjacent slice",
    "bright": "baseline: cavity pixels with gray in [0.6, 0.95)",
    "cavity": "baseline: share of the slice inside the cavity (level only)",
}


class Features:
    """A ResultWriter for scan_directory: per-slice scores of every method, keyed by image path.

    Whatever the bundle's own slice score, ``isl`` is the DRN's (run here on the same difference
    images when the bundle scores slices by the residual) and ``residual`` the signed residual
    (the bundle's threshold and window, else 0.1 in the first window)."""

    def __init__(self, scorer: Any, slice_drn: Any, windows: Any) -> None:
        from isl_rt.bundle import ResidualArgs

        self.rows: dict[str, dict[str, float]] = {}
        self.windows = windows
        self.scorer = scorer
        self.params = scorer.params
        self.slice_drn = slice_drn
        self.residual = self.params.residual or ResidualArgs(0, RESIDUAL_THRESHOLD)

    def write(self, result: Any) -> list[Path]:
        from isl_rt.pipeline import residual_scores

        s = result.scores
        x = s.x[:, 0]
        region = np.ones(x.shape, dtype=bool) if s.region is None else s.region > 0
        isl = s.slice_scores if self.params.residual is None else self.scorer.drn_scores(s.difference)
        residual = {name: residual_scores(s.x, s.inpainted, s.region,
                                          self.residual._replace(measure=m, inset=i, adjacent=a))[0]
                    for name, (m, i, a) in RESIDUAL_ROWS.items()}
        bright = (x >= BRIGHT[0]) & (x < BRIGHT[1]) & region
        extra = None if self.slice_drn is None else self.slice_drn.scores(s.x, self.windows)
        for i, path in enumerate(result.files):
            self.rows[str(Path(path).resolve())] = {
                "isl": float(isl[i]),
                "dscore": float(s.difference[i].sum()),
                **{name: float(values[i]) for name, values in residual.items()},
                "bright": float(bright[i].sum()),
                "cavity": float(region[i].mean()),
                **({} if extra is None else {"slice_drn": float(extra[i])}),
            }
        return []


#: The localisers and masks of the "where the maximum lies" table.
LOCALISERS = {
    "heat": "the bundle's heat map",
    "brightest": "baseline: brightest blood-range pixel in the cavity",
    "blood_patch": "baseline: innermost pixel of the largest blood-range patch in the cavity",
}
LOCATION_MASKS = {
    "slice-hull": "the slice's mask filled to one hull",
    "grown": "that hull grown into the blood-range tissue it touches (derived)",
}
GROW_REACH = 2  # pixels between the hull and a blood-range patch that joins it


class Maxima:
    """A ResultWriter for scan_directory: for every lesion slice with a mask, whether each
    localiser's maximum lies inside each mask (:data:`LOCALISERS`, :data:`LOCATION_MASKS`)."""

    def __init__(self, masks: dict[str, Path]) -> None:
        self.masks = masks  # resolved image path -> mask path
        self.hits: dict[str, dict[str, list[bool]]] = {k: {m: [] for m in LOCATION_MASKS} for k in LOCALISERS}

    def write(self, result: Any) -> list[Path]:
        from PIL import Image
        from scipy import ndimage

        from isl_rt.evaluate_slices import fill_mask, read_mask
        from isl_rt.metrics import heat_distance
        from isl_rt.pipeline import inset_region, region_on_source_grid

        s = result.scores
        region = np.ones(s.x[:, 0].shape, dtype=bool) if s.region is None else s.region > 0
        inner = inset_region(region, 4)
        eight = np.ones((3, 3), dtype=bool)
        on_source = {}  # (scored region, inset region) on each source grid met
        for i, path in enumerate(result.files):
            mask_path = self.masks.get(str(Path(path).resolve()))
            if mask_path is None:
                continue
            drawn = read_mask(mask_path)
            if not drawn.any():
                continue
            hull = fill_mask(drawn, "slice-hull")
            with Image.open(path) as img:
                gray = ndimage.uniform_filter(np.asarray(img.convert("L"), dtype=np.float32) / 255.0, 3)
            if gray.shape not in on_source:
                on_source[gray.shape] = (region_on_source_grid(region, gray.shape), region_on_source_grid(inner, gray.shape))
            scored, scored_inner = on_source[gray.shape]
            blood = (gray >= BRIGHT[0]) & (gray < BRIGHT[1])
            patches, _ = ndimage.label(blood, structure=eight)
            touching = np.unique(patches[ndimage.binary_dilation(hull, iterations=GROW_REACH) & blood])
            grown = hull | np.isin(patches, touching[touching > 0])
            cavity_blood = blood & scored_inner[i]
            own, count = ndimage.label(cavity_blood, structure=eight)
            innermost = np.zeros_like(gray)
            if count:
                largest = np.bincount(own.ravel())[1:].argmax() + 1
                innermost = ndimage.distance_transform_edt(own == largest).astype(np.float32)
            maps = {"heat": np.where(scored[i], result.heat[i], 0.0),
                    "brightest": np.where(cavity_blood, gray, 0.0), "blood_patch": innermost}
            for name, values in maps.items():
                for mask_name, mask in (("slice-hull", hull), ("grown", grown)):
                    self.hits[name][mask_name].append(heat_distance(values, mask) == 0.0)
        return []

    def table(self) -> dict[str, dict[str, dict[str, int]]]:
        return {k: {m: {"hits": int(sum(v)), "n": len(v)} for m, v in by_mask.items()} for k, by_mask in self.hits.items()}


#: The groups of the false-positives table: the third of the series, then the distance in slices
#: from the nearest lesion slice (1, 2, 3 or more, none in the series).
THIRDS = ("lower third (skull base)", "middle third", "upper third (vertex)")
DISTANCES = ("next to a lesion slice", "2 slices from one", "3 or more slices from one", "no lesion slice in the series")


def false_positives(slices_csv: Path, labels_csv: Path) -> dict[str, Any]:
    """The lesion-free slices the bundle's slice threshold flags (the slices CSV's ``flagged``), by
    where they lie: the third of their series (from the skull base up), their distance in slices
    from the nearest lesion slice of the same patient, and how many patients hold them."""
    import csv

    from isl_rt.evaluate_slices import image_key

    with Path(labels_csv).open(newline="") as handle:
        label = {image_key(r["image"]): int(r["lesion"]) for r in csv.DictReader(handle)}
    series: dict[str, list[tuple[int, int, bool]]] = {}
    with Path(slices_csv).open(newline="") as handle:
        for r in csv.DictReader(handle):
            key = image_key(r["source"])
            if key in label and r["flagged"] in ("0", "1"):
                series.setdefault(r["series"], []).append((int(r["slice"]), label[key], r["flagged"] == "1"))
    groups: dict[str, list[bool]] = {}
    per_patient: dict[str, int] = {}
    for name, rows in series.items():
        n = max(i for i, _, _ in rows) + 1
        lesions = [i for i, y, _ in rows if y]
        for i, y, flagged in rows:
            if y:
                continue
            third = THIRDS[min(2, 3 * i // n)]
            gap = min((abs(i - j) for j in lesions), default=None)
            near = DISTANCES[3] if gap is None else DISTANCES[min(gap, 3) - 1]
            for group in (third, near):
                groups.setdefault(group, []).append(flagged)
            per_patient[name] = per_patient.get(name, 0) + flagged
    counts = sorted(per_patient.values(), reverse=True)
    total = sum(counts)
    half = next((k + 1 for k in range(len(counts)) if sum(counts[: k + 1]) * 2 >= total), 0)
    return {"groups": {g: {"n": len(groups[g]), "flagged": int(sum(groups[g]))} for g in THIRDS + DISTANCES if g in groups},
            "flagged": total, "patients": len(counts), "patients_with_any": sum(c > 0 for c in counts),
            "patients_holding_half": half}


class Writers:
    """Several ResultWriters as one."""

    def __init__(self, *writers: Any) -> None:
        self.writers = writers

    def write(self, result: Any) -> list[Path]:
        return [path for w in self.writers for path in w.write(result)]


def _distance(loc: dict[str, Any]) -> str:
    """The median distance of the misses' heat-map maxima from the mask, in source pixels."""
    median = loc.get("miss_distance_median")
    return "-" if median is None else f"{median:.1f} ({loc['n_miss_distances']})"


def own_method(spec: Any) -> str:
    """The METHODS row that is the bundle's own slice score."""
    if spec.kind != "residual":
        return "isl"
    own = (spec.measure, spec.inset, spec.adjacent)
    return next((name for name, row in RESIDUAL_ROWS.items() if row == own), "")


def level_matched_auc(y: np.ndarray, score: np.ndarray, level: np.ndarray, edges: np.ndarray) -> float:
    """AUC over (lesion, lesion-free) pairs of the same level bin only, pooled with pair weights."""
    from isl_rt.metrics import auc

    bins = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, len(edges) - 2)
    total = weight = 0.0
    for b in range(len(edges) - 1):
        inside = bins == b
        pos, neg = int(y[inside].sum()), int((1 - y[inside]).sum())
        if pos and neg:
            total += pos * neg * auc(y[inside], score[inside])
            weight += pos * neg
    return total / weight if weight else float("nan")


def auc_table(y: np.ndarray, groups: np.ndarray, scores: dict[str, np.ndarray], level: np.ndarray,
              resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    from isl_rt.metrics import auc, bootstrap_auc

    edges = np.quantile(level, np.linspace(0, 1, LEVEL_BINS + 1))
    edges[-1] += 1e-9
    rng = np.random.default_rng(seed)
    patients = np.unique(groups)
    size = max(1, int(round(FRACTION * patients.size)))  # the paper's protocol, as isl-rt evaluate
    draws = [rng.choice(patients, size=size, replace=False) for _ in range(resamples)]
    out = {}
    for name, score in scores.items():
        ci = bootstrap_auc(y, score, resamples=resamples, fraction=FRACTION, seed=seed, groups=groups)
        matched = []
        for chosen in draws:
            idx = np.concatenate([np.flatnonzero(groups == g) for g in chosen])
            if 0 < y[idx].sum() < idx.size:
                matched.append(level_matched_auc(y[idx], score[idx], level[idx], edges))
        low, high = np.nanquantile(matched, [0.025, 0.975]) if matched else (float("nan"), float("nan"))
        out[name] = {"auc": auc(y, score), "ci95": [ci.low, ci.high],
                     "level_matched_auc": level_matched_auc(y, score, level, edges),
                     "level_matched_ci95": [float(low), float(high)]}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from isl_rt.backends import open_backends
    from isl_rt.bench import machine
    from isl_rt.bundle import load_bundle
    from isl_rt.evaluate_slices import evaluate_slices
    from isl_rt.labels import write_split
    from isl_rt.outputs import slices_csv_path
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = write_split(Path(args.data) / "labels.csv", out / "split", seed=args.split_seed, label_column="lesion")
    test_patients = split["parts"][args.part]["groups"][: args.patients or None]
    tree = out / f"{args.part}-images"  # the chosen patients' folders only, as links
    tree.mkdir(exist_ok=True)
    for patient in test_patients:
        link = tree / patient
        if not link.exists():
            link.symlink_to((Path(args.data) / "images" / patient).resolve(), target_is_directory=True)
    bundle = load_bundle(Path(args.bundle))
    params = params_from_bundle(bundle)
    slice_drn = None
    if args.slice_drn:
        from accuracy import SliceDRN

        slice_drn = SliceDRN(Path(args.slice_drn))
    scores_csv = out / "scores.csv"
    test_csv = out / "split" / f"{args.part}.csv"
    from isl_rt.labels import read_slice_labels

    truth = {str(r.image.resolve()): r for r in read_slice_labels(test_csv, label_column="lesion")}
    maxima = Maxima({k: r.mask for k, r in truth.items() if r.label == 1 and r.mask is not None})
    began = time.perf_counter()
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        scorer = Scorer(params, pair.dedn, pair.drn)
        features = Features(scorer, slice_drn, bundle.manifest.windows)
        summary = scan_directory(tree, scores_csv, bundle, scorer, backend_name=pair.description, resume=False,
                                 heatmaps=out / "heatmaps", results=Writers(features, maxima))
    seconds = time.perf_counter() - began
    report = {fill: evaluate_slices(slices_csv_path(scores_csv), test_csv, out / f"report-{fill}", label_column="lesion",
                                    heatmaps=out / "heatmaps", resamples=args.resamples, fraction=FRACTION, mask_fill=fill)
              for fill in ("hull", "slice-hull", "none")}
    keys = [k for k in features.rows if k in truth]  # the scanned slices (labels of other patients are ignored)
    y = np.array([truth[k].label for k in keys])
    groups = np.array([truth[k].group for k in keys])
    names = [m for m in METHODS if all(m in features.rows[k] for k in keys)]
    table = auc_table(y, groups, {m: np.array([features.rows[k][m] for k in keys]) for m in names},
                      np.array([features.rows[k]["cavity"] for k in keys]), args.resamples, args.seed)
    return {
        "bundle": bundle.manifest.name, "bundle_root": str(bundle.root), "split_seed": args.split_seed, "part": args.part,
        "slice_score": bundle.manifest.slice_score_spec.describe(),
        "own_method": own_method(bundle.manifest.slice_score_spec),
        "test_patients": len(test_patients), "slices": len(keys), "lesion_slices": int(y.sum()),
        "scan": {"ok": summary.ok, "errors": summary.errors, "seconds": seconds, "backend": summary.backend},
        "slice_report": {fill: {k: report[fill][k] for k in ("auc", "by_size", "localisation") if k in report[fill]}
                         for fill in report},
        "methods": table, "maxima": maxima.table(), "false_positives": false_positives(slices_csv_path(scores_csv), test_csv),
        "machine": machine(),
    }


def _ci(values: list[float]) -> str:
    return f"{values[0]:.3f}–{values[1]:.3f}"


def markdown(result: dict[str, Any], argv: list[str]) -> str:
    hull, drawn = result["slice_report"]["hull"], result["slice_report"]["none"]
    lines = [
        MARK_START,
        "## Real head CT: slice level on held-out patients (PHE-SICH-CT-IDS)",
        "",
        f"`python benchmarks/accuracy_real.py {' '.join(argv)}` — bundle `{result['bundle']}`, split seed "
        f"{result['split_seed']}: {result['test_patients']} {'test' if result['part'] == 'test' else 'validation'} patients, "
        f"{result['slices']} slices ({result['lesion_slices']} with a haemorrhage)"
        f"{', never used for training, calibration or choices' if result['part'] == 'test' else ''}. "
        f"The bundle's slice score: {result['slice_score']}. "
        f"Scan: {result['scan']['ok']} series, {result['scan']['seconds']:.0f} s ({result['scan']['backend']}).",
        "",
        "| method | what scores a slice | AUC | 95% CI | level-matched AUC | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["methods"].items():
        own = " **(the bundle's)**" if name == result.get("own_method") else ""
        lines.append(f"| {name} | {METHODS[name]}{own} | {row['auc']:.3f} | {_ci(row['ci95'])} | "
                     f"{row['level_matched_auc']:.3f} | {_ci(row['level_matched_ci95'])} |")
    lines += ["", "Level-matched: lesion and lesion-free slices compared only within the same quintile of cavity share; "
              f"CIs: 1000 draws of 30% of the {'test' if result['part'] == 'test' else 'validation'} patients (all their slices), "
              "as `isl-rt evaluate`.", "",
              "The bundle's slice score by lesion size (mask-area terciles, each against all lesion-free slices):", "",
              "| group | lesion slices | AUC | 95% CI |", "|---|---|---|---|"]
    for group, row in hull.get("by_size", {}).items():
        if isinstance(row, dict) and "auc" in row:
            lines.append(f"| {group} | {row['n']} | {row['auc']:.3f} | {_ci(row['ci95'])} |")
    lines += ["", "Localisation of the bundle's heat map (inside the cavity):", "",
              "| masks | pixel AUROC | pixel AUROC, lesion slices | hit rate | misses: median distance (px) |",
              "|---|---|---|---|---|"]
    pieces = result["slice_report"].get("slice-hull", {})
    for label, rep in (("each part filled to its convex hull", hull), ("all of the slice's mask filled to one hull", pieces),
                       ("as drawn", drawn)):
        loc = rep.get("localisation") or {}
        if loc:
            lines.append(f"| {label} | {loc['pixel_auroc']:.3f} | {loc['pixel_auroc_lesion_slices']:.3f} | "
                         f"{loc['hit_rate']:.3f} ({loc['hits']}/{loc['n_lesion_slices']}) | {_distance(loc)} |")
    maxima = result.get("maxima")
    if maxima:
        lines += ["", "Where the maximum lies (lesion slices with a mask; the grown mask is derived, see the script):", "",
                  "| localiser | " + " | ".join(LOCATION_MASKS.values()) + " |", "|---|" + "---|" * len(LOCATION_MASKS)]
        for name, by_mask in maxima.items():
            cells = [f"{c['hits'] / c['n']:.3f} ({c['hits']}/{c['n']})" if c["n"] else "-" for c in by_mask.values()]
            lines.append(f"| {LOCALISERS[name]} | " + " | ".join(cells) + " |")
    fp = result.get("false_positives")
    if fp and fp["groups"]:
        lines += ["", f"Lesion-free slices flagged at the bundle's slice threshold, by where they lie ({fp['flagged']} flagged; "
                  f"{fp['patients_with_any']} of {fp['patients']} patients hold any, {fp['patients_holding_half']} hold half of them):",
                  "", "| where | lesion-free slices | flagged |", "|---|---|---|"]
        for group, c in fp["groups"].items():
            lines.append(f"| {group} | {c['n']} | {c['flagged'] / c['n']:.3f} ({c['flagged']}) |")
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def protocol_arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The command line both real-data benchmarks share: the bundle, the data, the split and the
    part scored, the output folder and the CI's resampling."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--part", choices=("test", "val"), default="test",
                        help="test: the figures; val: the validation patients, for choices (never the test patients)")
    parser.add_argument("--out", default=out)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--patients", type=int, default=0, help="use only the first N patients of the part (a smoke run)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def data_missing(data: str) -> bool:
    """True, after saying so, when ``data`` is not the PHE-SICH-CT-IDS folder."""
    if (Path(data) / "labels.csv").is_file():
        return False
    print(f"{data} holds no labels.csv: pass --data (the PHE-SICH-CT-IDS folder).", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = protocol_arguments(__doc__.splitlines()[0], "build/accuracy_real")
    parser.add_argument("--slice-drn", default="", help="drn_best.pt of isl-rt train drn --input slice on the same patients")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 1
    result = run(args)
    Path(args.out, "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    text = markdown(result, [a for a in argv if a != "--write-results"])
    print(text)
    if args.write_results and args.part == "test":
        from accuracy import update_results_between

        update_results_between(HERE / "RESULTS.md", text, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
