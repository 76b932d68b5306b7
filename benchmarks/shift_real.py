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

Another site's export (issue 29), for one patient's series at a time, every pixel included:

- ``w80``/``w200``/``w400``: a window 80, 200, 400 HU wide about the same level, gray' =
  0.5 + (gray − 0.5)·120/W for all pixels, clipped: at W > 120 the skull is not white
  (0.5 + 0.5·120/W) and air not black;
- ``gamma0.7``/``gamma1.4``: gray' = gray^γ; ``jpeg50``/``jpeg95``: a JPEG history at that quality;
- ``half``: stored at half size (256 px, PIL's BOX filter); ``rot+10``/``rot-10``: rotated 10°;
- ``crop``: cropped to the box of the skull on all slices + 4% (non-square); ``pad``: on a black
  canvas 1.25× as tall and 1.5× as wide; ``text``: white text in the corners (PIL's default font);
- ``site``: crop + window 200 + gamma 0.8 + text + JPEG 75 (cropped first: the crop finds the skull as white);
- ``single``: each slice its own one-image series (``tree/<patient>_<slice>/``): no neighbour for
  the ``adjacent`` rule.

- ``w200white``/``w400white``: a window 200 or 400 HU wide that still shows the skull white and
  air black (``_contrast(120/W)`` inside the window): the brain's tissues packed into fewer gray steps.

The scan maps every image series onto the bundle's presentation first, as ``isl-rt scan`` does
(``isl_rt.presentation``; the row counts the series it changed); ``--raw`` scans them as read
(``ScanParams.present`` off), the runtime before that mapping. ``--calibrate N [N ...]`` scores the
last max(N) validation patients (never those a ``--part val`` run scores) under the same shift and
sets, for each N, a site slice threshold from the lesion-free slices of the first N of them
(``calibrate_slice_threshold``, the bundle's target specificity). ``--quick``: 2 patients, shifts
none, w200, site, single.

A slice not scored (an empty slice score: no cranial cavity; or no row: its series refused) is
counted, apart for haemorrhage slices, and left out of the AUC and the flag rates.

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
from dataclasses import replace
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


def _window_width(width: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """A brain window ``width`` HU wide about the same level, for every pixel (white and black too:
    a site's skull that is not white, air that is not black): gray' = 0.5 + (gray − 0.5)·120/W,
    clipped (W < 120 expands)."""
    return lambda gray, seed: np.clip(0.5 + (gray - 0.5) * (120.0 / width), 0.0, 1.0)


def _gamma(gamma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda gray, seed: np.power(np.clip(gray, 0.0, 1.0), gamma)


def _jpeg(quality: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """A JPEG history: the 8-bit slice saved as JPEG of ``quality`` and read back."""
    def apply(gray: np.ndarray, seed: int) -> np.ndarray:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(_to8(gray)).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as img:
            return np.asarray(img.convert("L"), dtype=np.float64) / 255.0

    return apply


def _downsample(factor: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """Stored small: the slice resized by ``factor`` (PIL's area-averaging BOX filter)."""
    def apply(gray: np.ndarray, seed: int) -> np.ndarray:
        from PIL import Image

        h, w = gray.shape
        small = Image.fromarray(_to8(gray)).resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BOX)
        return np.asarray(small, dtype=np.float64) / 255.0

    return apply


def _rotate(degrees: float) -> Callable[[np.ndarray, int], np.ndarray]:
    from scipy import ndimage

    return lambda gray, seed: ndimage.rotate(gray, degrees, reshape=False, order=1, mode="constant", cval=0.0)


def _to8(gray: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(gray, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


#: the margin of a crop to the skull's box, as a share of the image's size
CROP_MARGIN = 0.04


def _crop_series(stack: np.ndarray) -> np.ndarray:
    """The series cropped to the box of its skull on all slices (white pixels of each slice's
    largest bright patch, so not a head holder apart from it) grown by :data:`CROP_MARGIN` of
    the image's size: one non-square field of view for the series, as an export cropped to the
    head keeps."""
    from scipy import ndimage

    rows, cols = [], []
    for gray in stack:
        labels, count = ndimage.label(gray > 0.1, structure=np.ones((3, 3), dtype=bool))
        if not count:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        skull = (labels == int(np.argmax(sizes))) & (gray >= 250.0 / 255.0)
        r, c = np.nonzero(skull)
        if r.size:
            rows += [r.min(), r.max()]
            cols += [c.min(), c.max()]
    if not rows:
        return stack
    h, w = stack.shape[1:]
    m = int(round(CROP_MARGIN * max(h, w)))
    r0, r1 = max(0, min(rows) - m), min(h, max(rows) + m + 1)
    c0, c1 = max(0, min(cols) - m), min(w, max(cols) + m + 1)
    return stack[:, r0:r1, c0:c1]


def _pad_series(stack: np.ndarray) -> np.ndarray:
    """The series on a larger black canvas, 1.25 times as tall and 1.5 times as wide (centred)."""
    n, h, w = stack.shape
    out = np.zeros((n, int(round(h * 1.25)), int(round(w * 1.5))), dtype=stack.dtype)
    top, left = (out.shape[1] - h) // 2, (out.shape[2] - w) // 2
    out[:, top:top + h, left:left + w] = stack
    return out


def _text_series(stack: np.ndarray) -> np.ndarray:
    """White burned-in text in the four corners of every slice (PIL ImageDraw's default font): a
    site name, the window, the side and the slice number."""
    from PIL import Image, ImageDraw

    out = []
    for i, gray in enumerate(stack):
        img = Image.fromarray(_to8(gray))
        draw = ImageDraw.Draw(img)
        h, w = gray.shape
        draw.text((3, 2), "SITE B HOSPITAL", fill=255)
        draw.text((3, h - 14), f"IM {i + 1}  5.0 mm", fill=255)
        draw.text((w - 60, 2), "W 200 L 40", fill=255)
        draw.text((w - 12, h // 2), "L", fill=255)
        out.append(np.asarray(img, dtype=np.float64) / 255.0)
    return np.stack(out)


def _per_slice(change: Callable[[np.ndarray, int], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    """A per-slice change applied to each slice of a series [N,H,W] (slice i seeded seed + i)."""
    return lambda stack, seed: np.stack([change(g, seed + i) for i, g in enumerate(stack)])


def _site(stack: np.ndarray, seed: int) -> np.ndarray:
    """A site composite: cropped to the skull, window 200 HU wide, gamma 0.8, text, JPEG 75. The
    crop comes first: it finds the skull as white pixels, which a window 200 HU wide no longer
    shows (cropping after the window left the series uncropped)."""
    stack = _crop_series(stack)
    stack = np.stack([_gamma(0.8)(_window_width(200.0)(g, 0), 0) for g in stack])
    return _per_slice(_jpeg(75))(_text_series(stack), seed)


#: name -> (what a site does, the transform of one patient's series [N,H,W] in [0, 1] and a seed)
SERIES_SHIFTS: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "w80": ("window 80 HU wide (all pixels; expanded, clipped)", _per_slice(_window_width(80.0))),
    "w200": ("window 200 HU wide: skull gray 0.80, air 0.20", _per_slice(_window_width(200.0))),
    "w400": ("window 400 HU wide: skull gray 0.65, air 0.35", _per_slice(_window_width(400.0))),
    "w200white": ("window 200 HU wide, skull still white, air black", _per_slice(_contrast(120.0 / 200.0))),
    "w400white": ("window 400 HU wide, skull still white, air black", _per_slice(_contrast(120.0 / 400.0))),
    "gamma0.7": ("gamma 0.7 (brain lighter)", _per_slice(_gamma(0.7))),
    "gamma1.4": ("gamma 1.4 (brain darker)", _per_slice(_gamma(1.4))),
    "jpeg50": ("JPEG quality 50", _per_slice(_jpeg(50))),
    "jpeg95": ("JPEG quality 95", _per_slice(_jpeg(95))),
    "half": ("stored at half size (256 px)", _per_slice(_downsample(0.5))),
    "crop": ("cropped to the skull's box + 4% (non-square)", lambda stack, seed: _crop_series(stack)),
    "pad": ("on a black canvas 1.25× as tall, 1.5× as wide", lambda stack, seed: _pad_series(stack)),
    "rot+10": ("rotated 10° anticlockwise", _per_slice(_rotate(10.0))),
    "rot-10": ("rotated 10° clockwise", _per_slice(_rotate(-10.0))),
    "text": ("white text in the corners", lambda stack, seed: _text_series(stack)),
    "site": ("crop + window 200 + gamma 0.8 + text + JPEG 75", _site),
}


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
    **{name: (what, None) for name, (what, _) in SERIES_SHIFTS.items()},
    "single": ("each slice its own one-image series (no neighbour)", None),
}

#: the shifts of ``--quick`` (a smoke run, the test's)
QUICK_SHIFTS = ["none", "w200", "site", "single"]

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
    them (links to the originals for ``none``; for ``single`` links under ``tree/<patient>_<slice>/``,
    one folder per slice), replacing whatever ``tree`` held; returns resolved image path -> (label,
    patient)."""
    import shutil

    from PIL import Image

    transform = SHIFTS[shift][1]
    if tree.exists():  # never score slices an earlier run (or another version of a shift) wrote
        shutil.rmtree(tree)
    if shift == "dicom":
        return dicom_tree(rows, tree)
    truth = {}
    if shift in SERIES_SHIFTS:
        change = SERIES_SHIFTS[shift][1]
        by_patient: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            by_patient.setdefault(row["patient"], []).append(row)
        for patient, mine in by_patient.items():
            mine.sort(key=lambda r: int(r["slice"]))
            stack = []
            for row in mine:
                with Image.open(row["image"]) as img:
                    stack.append(np.asarray(img.convert("L"), dtype=np.float64) / 255.0)
            altered = change(np.stack(stack), int(patient) * 1000)
            folder = tree / patient
            folder.mkdir(parents=True, exist_ok=True)
            for row, gray in zip(mine, altered):
                target = folder / Path(row["image"]).name
                Image.fromarray(_to8(gray)).save(target)
                truth[str(target.resolve())] = (int(row["lesion"]), patient)
        return truth
    for row in rows:
        source = Path(row["image"])
        folder = tree / (f"{row['patient']}_{int(row['slice']):02d}" if shift == "single" else row["patient"])
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


def _scores(truth: dict[str, tuple[int, str]], slices_csv: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, patients, slice scores with NaN for a slice not scored) of every slice in ``truth``:
    an empty or non-finite ``slice_score`` in the slices CSV, or no row at all (a refused series),
    is a slice not scored."""
    score = {key: float("nan") for key in truth}
    with slices_csv.open(newline="") as handle:
        for r in csv.DictReader(handle):
            key = r["source"] if r["source"] in truth else str(Path(r["source"]).resolve())
            if key in truth:
                score[key] = float(r["slice_score"]) if r["slice_score"].strip() else float("nan")
    keys = sorted(truth)
    return (np.array([truth[k][0] for k in keys], dtype=np.int64), np.array([truth[k][1] for k in keys]),
            np.array([score[k] for k in keys], dtype=np.float64))


def _scan(rows: list[dict[str, str]], shift: str, folder: Path, bundle: Any, scorer: Any,
          backend: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any, list[dict[str, Any]]]:
    """The slices of ``rows`` under ``shift`` scanned from ``folder``: (labels, patients, scores,
    the scan summary, the presentation record of every scored series)."""
    from isl_rt.outputs import slices_csv_path
    from isl_rt.pipeline import scan_directory, series_json_dir

    truth = shifted_tree(rows, shift, folder / "images")
    scores_csv = folder / "scores.csv"
    summary = scan_directory(folder / "images", scores_csv, bundle, scorer, backend_name=backend, resume=False)
    records = []
    for doc in series_json_dir(scores_csv).glob("*.json"):
        if not doc.name.startswith("_"):
            records.append(json.loads(doc.read_text()).get("presentation") or {})
    return (*_scores(truth, slices_csv_path(scores_csv)), summary, records)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from isl_rt.backends import open_backends
    from isl_rt.bench import machine
    from isl_rt.bundle import calibrate_slice_threshold, load_bundle
    from isl_rt.labels import write_split
    from isl_rt.metrics import auc, bootstrap_auc
    from isl_rt.pipeline import Scorer, params_from_bundle

    out = Path(args.out)
    split = write_split(Path(args.data) / "labels.csv", out / "split", seed=args.split_seed, label_column="lesion")
    chosen = split["parts"][args.part]["groups"][: args.patients or None]
    patients = set(chosen)
    with (out / "split" / f"{args.part}.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["patient"] in patients]
    calibration_rows: list[dict[str, str]] = []
    calibration_patients: list[str] = []
    if args.calibrate:  # the last N validation patients: apart from the first ones a --part val run scores
        calibration_patients = [g for g in split["parts"]["val"]["groups"] if g not in patients][-max(args.calibrate):]
        with (out / "split" / "val.csv").open(newline="") as handle:
            calibration_rows = [r for r in csv.DictReader(handle) if r["patient"] in set(calibration_patients)]
    bundle = load_bundle(Path(args.bundle))
    threshold = bundle.manifest.slice_threshold
    results: dict[str, Any] = {}
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        params = params_from_bundle(bundle)
        scorer = Scorer(replace(params, present=False) if args.raw else params, pair.dedn, pair.drn)
        for shift in args.shifts:
            began = time.perf_counter()
            y_all, groups_all, s_all, summary, records = _scan(rows, shift, out / shift, bundle, scorer, pair.description)
            seconds = time.perf_counter() - began
            ready = np.isfinite(s_all)
            y, groups, s = y_all[ready], groups_all[ready], s_all[ready]
            row: dict[str, Any] = {"slices": int(y_all.size), "lesion_slices": int(y_all.sum()),
                                   "not_scored": int((~ready).sum()), "lesion_not_scored": int((~ready & (y_all == 1)).sum()),
                                   "series_ok": summary.ok, "series_not_scored": summary.errors + summary.rejected,
                                   "seconds": seconds}
            mapped = [r for r in records if r and not r.get("identity", True)]
            row["presented"] = {"series": len(records), "changed": len(mapped),
                                "window": sum(tuple(r.get("window") or (0.0, 1.0)) != (0.0, 1.0) for r in mapped),
                                "gamma": sum(r.get("gamma", 1.0) != 1.0 for r in mapped),
                                "contrast": sum(r.get("contrast", 1.0) != 1.0 for r in mapped),
                                "blanked_pixels": int(sum(r.get("blanked_pixels", 0) for r in mapped))}
            both = 0 < y.sum() < y.size
            if both:  # the scored slices hold both classes (else no AUC, the row says so)
                ci = bootstrap_auc(y, s, resamples=args.resamples, fraction=FRACTION, seed=args.seed, groups=groups)
                row.update(auc=auc(y, s), ci95=[ci.low, ci.high], healthy_q95=float(np.quantile(s[y == 0], 0.95)))
            if threshold is not None and both:  # shares of the scored slices
                row["flagged_lesion"] = float(np.mean(s[y == 1] > threshold.slice_score))
                row["flagged_lesion_free"] = float(np.mean(s[y == 0] > threshold.slice_score))
            if calibration_rows:
                cy, cg, cs, _, _ = _scan(calibration_rows, shift, out / shift / "calibration", bundle, scorer,
                                         pair.description)
                row["calibration"] = {}
                target = threshold.target_specificity if threshold is not None else 0.95
                for n in sorted(set(args.calibrate)):  # the first n of the calibration patients
                    mine = np.isin(cg, calibration_patients[:n]) & (cy == 0) & np.isfinite(cs)
                    entry: dict[str, Any] = {"patients": min(n, len(calibration_patients)), "healthy_slices": int(mine.sum())}
                    if mine.any() and both:
                        site = calibrate_slice_threshold(cs[mine], target, n_series=n).slice_score
                        entry.update(slice_threshold=site, flagged_lesion=float(np.mean(s[y == 1] > site)),
                                     flagged_lesion_free=float(np.mean(s[y == 0] > site)))
                    row["calibration"][str(n)] = entry
            results[shift] = row
            print(json.dumps({shift: row}, default=float), flush=True)
    return {"bundle": bundle.manifest.name, "part": args.part, "split_seed": args.split_seed, "patients": len(patients),
            "raw": bool(args.raw), "calibration_patients": calibration_patients, "calibrate": sorted(set(args.calibrate or [])),
            "slice_threshold": None if threshold is None else threshold.slice_score, "shifts": results,
            "machine": machine()}


def markdown(result: dict[str, Any], argv: list[str]) -> str:
    sizes = [str(n) for n in result.get("calibrate") or []]
    lines = [
        MARK_START,
        "",
        f"`python benchmarks/shift_real.py {' '.join(argv)}` — bundle `{result['bundle']}`, split seed "
        f"{result['split_seed']}, {result['patients']} {result['part']} patients"
        + (", scanned as read (--raw: no mapping onto the bundle's presentation)" if result.get("raw") else
           ", each series mapped onto the bundle's presentation as the scan does")
        + "; " + ("no slice threshold." if result["slice_threshold"] is None else
                  f"slice threshold {result['slice_threshold']:.6g} (calibrated on the unshifted validation patients)."),
        "Slices not scored (no cranial cavity, or the series refused) are left out of the AUC and the flag rates "
        "and counted apart; 'mapped' counts the series whose presentation the scan changed."
        + (f" Site thresholds: from the lesion-free slices of the first N of {len(result['calibration_patients'])} "
           "validation patients under the same shift, flags as haemorrhage / lesion-free slices flagged." if sizes else ""),
        "",
        "| shift | what a site does | series scored | mapped | slices | not scored (haemorrhage) | AUC | 95% CI "
        "| haemorrhage slices flagged | lesion-free slices flagged |" + "".join(f" site N={n} |" for n in sizes),
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(sizes),
    ]
    for shift, row in result["shifts"].items():
        flags = (f"{row['flagged_lesion']:.3f} | {row['flagged_lesion_free']:.3f}" if "flagged_lesion" in row else "- | -")
        scores = f"{row['auc']:.3f} | {row['ci95'][0]:.3f}–{row['ci95'][1]:.3f}" if "auc" in row else "- | -"
        mapped = row.get("presented", {}).get("changed", "-")
        line = (f"| {shift} | {SHIFTS[shift][0]} | {row['series_ok']} of {row['series_ok'] + row['series_not_scored']} | "
                f"{mapped} | {row['slices']} | {row['not_scored']} ({row['lesion_not_scored']}) | {scores} | {flags} |")
        for n in sizes:
            c = row.get("calibration", {}).get(n, {})
            line += f" {c['flagged_lesion']:.3f} / {c['flagged_lesion_free']:.3f} |" if "slice_threshold" in c else " - |"
        lines.append(line)
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from accuracy_real import data_missing, protocol_arguments

    argv = sys.argv[1:] if argv is None else argv
    parser = protocol_arguments(__doc__.splitlines()[0], "build/shift_real")
    parser.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--raw", action="store_true",
                        help="scan the shifted series as read, without mapping them onto the bundle's presentation")
    parser.add_argument("--calibrate", type=int, nargs="+", default=[], metavar="N",
                        help="also site slice thresholds from the lesion-free slices of N validation patients under "
                             "the same shift (calibrate_slice_threshold's rule), for each N, and the flag rates at them")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: 2 patients (unless --patients), shifts {' '.join(QUICK_SHIFTS)} (unless "
                             "--shifts), 20 resamples")
    parser.add_argument("--results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients = args.patients or 2
        args.shifts = args.shifts if "--shifts" in argv else list(QUICK_SHIFTS)
        args.resamples = min(args.resamples, 20)
    if data_missing(args.data):
        return 1
    result = run(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    text = markdown(result, [a for a in argv if a != "--results"])
    print(text)
    if args.results and args.part == "test" and not args.patients and not args.quick:
        from accuracy import update_results_between

        update_results_between(HERE / "RESULTS.md", text, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
