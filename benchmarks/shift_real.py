"""Real head CT under simulated acquisition shifts: the held-out patients of PHE-SICH-CT-IDS, each
slice altered the way another scanner or site would alter it, scored by the same bundle.

    python benchmarks/shift_real.py --bundle export/head-ct-real-tiny \
        [--data ../shared/data/phe-sich-ct-ids] [--part test] [--out build/shift_real] [--results]

Issue 14 asks for the slice AUC across centres; this project has one centre's data, so that is not
measured. What can be measured is how the bundle's slice score and its calibrated slice threshold
hold when the images change in the ways sites differ. Every shift is fixed here, before any run
(none is tuned), and applied to the 8-bit brain-window PNGs as a site's own export would be:

- ``wider``/``narrower``: the brain window 25% wider / 20% narrower about its centre
  (gray' = 0.5 + (gray − 0.5) × 0.8 or × 1.25);
- ``brighter``: the window's level 5% of its width lower (gray' = gray + 0.05);
- ``noise``: Gaussian noise of 0.02 (about 2.5 of the data set's grey steps; a lower dose),
  seeded per slice;
  (these four leave white and black pixels as they are: bone lies hundreds of HU above any brain
  window and air as far below, so another site's brain window shows them white and black too);
- ``smooth``: a Gaussian blur of 1 pixel (a softer reconstruction kernel);
- ``fov``: a 15% larger field of view (the head 0.87 times its size, centred, air around it).

- ``dicom``: the slices as the site's scanner stored them, a DICOM CT series in HU per patient,
  read through the bundle's brain window (manifest ``input.hu_window``; a bundle without one
  refuses them). The HU are the inverse of the patient's own brain window: its width is the
  number of grey steps its slices use less one (120 HU for 94 of the 99 patients, 80 for five),
  its level 40 HU (assumed; the bundle's brain level absorbs a level error), black written as
  air (−1000 HU) and white as bone (1000 HU), 0.45 mm pixels and 5 mm slices.

Every shifted image is quantised back to 8 bits. For each shift: the slice AUC (95% CI from 1000
draws of 30% of the patients, as ``isl-rt evaluate``) and, at the bundle's slice threshold
(calibrated on the unshifted validation patients), the share of haemorrhage slices and of
lesion-free slices flagged. The test patients were never used for training, calibration or
choices; this script makes no choice either.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MARK_START = "<!-- shift_real:start -->"
MARK_END = "<!-- shift_real:end -->"
FRACTION = 0.3


def _within_window(change: Callable[[np.ndarray, int], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    """``change`` applied to the pixels inside the window only: white (bone, hundreds of HU above any
    brain window) and black (air) stay white and black, as they would in another site's window."""
    return lambda gray, seed: np.where((gray > 0) & (gray < 1), change(gray, seed), gray)


def _contrast(factor: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return _within_window(lambda gray, seed: 0.5 + (gray - 0.5) * factor)


def _noise(sigma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return _within_window(lambda gray, seed: gray + np.random.default_rng(seed).normal(0.0, sigma, gray.shape))


def _smooth(sigma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    from scipy import ndimage

    return lambda gray, seed: ndimage.gaussian_filter(gray, sigma)


def _field_of_view(scale: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """The head ``scale`` times its size about the image centre (a field of view 1/scale as wide),
    air (0) where the old image does not reach."""
    from scipy import ndimage

    def apply(gray: np.ndarray, seed: int) -> np.ndarray:
        centre = (np.array(gray.shape) - 1) / 2.0
        matrix = np.eye(2) / scale
        return ndimage.affine_transform(gray, matrix, offset=centre - matrix @ centre, order=1, cval=0.0)

    return apply


#: name -> (what a site does, the transform of a gray image in [0, 1] and a per-slice seed)
SHIFTS: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray] | None]] = {
    "none": ("the test slices as they are", None),
    "wider": ("brain window 25% wider", _contrast(0.8)),
    "narrower": ("brain window 20% narrower", _contrast(1.25)),
    "brighter": ("window level 5% of its width lower", _within_window(lambda gray, seed: gray + 0.05)),
    "noise": ("Gaussian noise 0.02 (lower dose)", _noise(0.02)),
    "smooth": ("Gaussian blur 1 px (softer kernel)", _smooth(1.0)),
    "fov": ("field of view 15% larger (head 0.87×)", _field_of_view(1 / 1.15)),
    "dicom": ("DICOM CT in HU, read through the bundle's brain window", None),
}

#: the brain window's level (HU) assumed for the data set's images when they are written as HU
DICOM_LEVEL = 40.0


def window_width(gray8: np.ndarray) -> int:
    """The width (HU) of the brain window that made 8-bit slices ``gray8`` of one patient: integer
    HU through a window W HU wide take W + 1 grey values, the number the slices use."""
    return int(np.unique(gray8).size) - 1


def gray_to_hu(gray8: np.ndarray, width: int, level: float = DICOM_LEVEL) -> np.ndarray:
    """int16 HU of 8-bit brain-window slices: the inverse of the window (level, width), black as air
    (−1000 HU) and white as bone (1000 HU), which any brain window shows black and white."""
    hu = np.rint(gray8.astype(np.float64) * width / 255.0) + (level - width / 2.0)
    hu = np.where(gray8 == 0, -1000.0, np.where(gray8 == 255, 1000.0, hu))
    return hu.astype(np.int16)


def dicom_tree(rows: list[dict[str, str]], tree: Path) -> dict[str, tuple[int, str]]:
    """Writes each patient's slices of ``rows`` under ``tree/<patient>/`` as one DICOM CT series in
    HU (:func:`gray_to_hu`, the width from :func:`window_width`); returns SOPInstanceUID (the
    slice's ``source`` in the slices CSV) -> (label, patient)."""
    import pydicom
    from PIL import Image

    from isl_rt.io.phantom import PhantomStudy, write_study

    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_patient.setdefault(row["patient"], []).append(row)
    truth = {}
    for patient, mine in by_patient.items():
        mine.sort(key=lambda r: int(r["slice"]))
        gray8 = np.stack([np.asarray(Image.open(r["image"]).convert("L")) for r in mine])
        hu = gray_to_hu(gray8, window_width(gray8))
        study = PhantomStudy(seed=int(patient), hu=hu, lesion_mask=np.zeros(hu.shape, np.uint8), pixel_spacing=(0.45, 0.45),
                             slice_thickness=5.0, disorder="unknown", size_class="", urgency="", anatomy={})
        record = write_study(study, tree / patient)
        for row, path in zip(mine, record.files):  # both inferior first; a DICOM slice's source is its SOP UID
            truth[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = (int(row["lesion"]), patient)
    return truth


def shifted_tree(rows: list[dict[str, str]], shift: str, tree: Path) -> dict[str, tuple[int, str]]:
    """Writes the slices of ``rows`` (split CSV rows) under ``tree/<patient>/`` as ``shift`` alters
    them (links to the originals for ``none``), replacing whatever ``tree`` held; returns resolved
    image path -> (label, patient)."""
    import shutil

    from PIL import Image

    transform = SHIFTS[shift][1]
    if tree.exists():  # never score slices an earlier run (or another version of a shift) wrote
        shutil.rmtree(tree)
    if shift == "dicom":
        return dicom_tree(rows, tree)
    truth = {}
    for row in rows:
        source = Path(row["image"])
        folder = tree / row["patient"]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        if transform is None:
            target.symlink_to(source.resolve())
        else:
            with Image.open(source) as img:
                gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
            seed = int(row["patient"]) * 1000 + int(row["slice"])
            altered = np.clip(np.rint(transform(gray, seed) * 255.0), 0, 255).astype(np.uint8)
            Image.fromarray(altered).save(target)
        truth[str(target.resolve())] = (int(row["lesion"]), row["patient"])
    return truth


def run(args: argparse.Namespace) -> dict[str, Any]:
    from isl_rt.backends import open_backends
    from isl_rt.bench import machine
    from isl_rt.bundle import load_bundle
    from isl_rt.labels import write_split
    from isl_rt.metrics import auc, bootstrap_auc
    from isl_rt.outputs import slices_csv_path
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    out = Path(args.out)
    split = write_split(Path(args.data) / "labels.csv", out / "split", seed=args.split_seed, label_column="lesion")
    patients = set(split["parts"][args.part]["groups"][: args.patients or None])
    with (out / "split" / f"{args.part}.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["patient"] in patients]
    bundle = load_bundle(Path(args.bundle))
    threshold = bundle.manifest.slice_threshold
    results: dict[str, Any] = {}
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn)
        for shift in args.shifts:
            truth = shifted_tree(rows, shift, out / shift / "images")
            scores_csv = out / shift / "scores.csv"
            began = time.perf_counter()
            summary = scan_directory(out / shift / "images", scores_csv, bundle, scorer, backend_name=pair.description,
                                     resume=False)
            seconds = time.perf_counter() - began
            with slices_csv_path(scores_csv).open(newline="") as handle:
                scored = [(truth[r["source"] if r["source"] in truth else str(Path(r["source"]).resolve())], float(r["slice_score"]))
                          for r in csv.DictReader(handle)]
            y = np.array([t[0] for t, _ in scored], dtype=np.int64)
            groups = np.array([t[1] for t, _ in scored])
            s = np.array([v for _, v in scored], dtype=np.float64)
            row: dict[str, Any] = {"slices": int(y.size), "lesion_slices": int(y.sum()), "series_ok": summary.ok,
                                   "series_not_scored": summary.errors + summary.rejected, "seconds": seconds}
            if 0 < y.sum() < y.size:  # every series refused (or one class only): no AUC, the row says so
                ci = bootstrap_auc(y, s, resamples=args.resamples, fraction=FRACTION, seed=args.seed, groups=groups)
                row.update(auc=auc(y, s), ci95=[ci.low, ci.high], healthy_q95=float(np.quantile(s[y == 0], 0.95)))
            if threshold is not None and 0 < y.sum() < y.size:
                row["flagged_lesion"] = float(np.mean(s[y == 1] > threshold.slice_score))
                row["flagged_lesion_free"] = float(np.mean(s[y == 0] > threshold.slice_score))
            results[shift] = row
            print(json.dumps({shift: row}), flush=True)
    return {"bundle": bundle.manifest.name, "part": args.part, "split_seed": args.split_seed, "patients": len(patients),
            "slice_threshold": None if threshold is None else threshold.slice_score, "shifts": results,
            "machine": machine()}


def markdown(result: dict[str, Any], argv: list[str]) -> str:
    lines = [
        MARK_START,
        "",
        f"`python benchmarks/shift_real.py {' '.join(argv)}` — bundle `{result['bundle']}`, split seed "
        f"{result['split_seed']}, {result['patients']} {result['part']} patients; "
        + ("no slice threshold." if result["slice_threshold"] is None else
           f"slice threshold {result['slice_threshold']:.6g} (calibrated on the unshifted validation patients)."),
        "",
        "| shift | what a site does | series scored | slices | AUC | 95% CI | healthy 95th pct | haemorrhage slices flagged | lesion-free slices flagged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shift, row in result["shifts"].items():
        flags = (f"{row['flagged_lesion']:.3f} | {row['flagged_lesion_free']:.3f}" if "flagged_lesion" in row else "- | -")
        scores = (f"{row['auc']:.3f} | {row['ci95'][0]:.3f}–{row['ci95'][1]:.3f} | {row['healthy_q95']:.6g}" if "auc" in row
                  else "- | - | -")
        lines.append(f"| {shift} | {SHIFTS[shift][0]} | {row['series_ok']} of {row['series_ok'] + row['series_not_scored']} | "
                     f"{row['slices']} | {scores} | {flags} |")
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from accuracy_real import data_missing, protocol_arguments

    argv = sys.argv[1:] if argv is None else argv
    parser = protocol_arguments(__doc__.splitlines()[0], "build/shift_real")
    parser.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 1
    result = run(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    text = markdown(result, [a for a in argv if a != "--results"])
    print(text)
    if args.results and args.part == "test" and not args.patients:
        from accuracy import update_results_between

        update_results_between(HERE / "RESULTS.md", text, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
