"""Gantry tilt on a real scanner's head CT: the GE head of dcm_qa_ct (28 slices, tilt 18.5°, uneven
spacing) scored as acquired (what ``isl-rt scan`` does) and resampled to axial as dcm2niix does.

    python benchmarks/tilt_real.py [--bundle export/head-ct-real-tiny] [--data ../shared/data/dcm-qa-ct/GE]
                                   [--threads 2] [--quick] [--json]

A tilted series is a sheared stack: slice i's origin lies (z_i − z_ref) along the table, so relative
to slice ``ref`` it is displaced within its own plane by ``(IPP_i − IPP_ref) · col`` along the column
direction (rows index), ``(z_i − z_ref) · sin(tilt)``, i.e. its distance along the stack normal ×
tan(tilt). dcm2niix corrects the tilt by undoing that shear, shifting each slice in-plane by that much
(linear interpolation, air outside); for a scorer that reads each slice on its own that is a
translation of each slice, and the only thing it can change is what a rule comparing neighbouring
slices (the ``adjacent`` support of the slice score) sees at "the same place". The reference is the
middle slice, so the shifts are centred. Each slice is scored both ways by one Scorer
(``Scorer.score`` on the HU volume, the bundle's brain window), and the per-slice scores, the scan
scores, the largest difference and the slices above the bundle's slice threshold are printed.

``--quick`` scores the 6 middle slices only (a smoke run of a few seconds). The data are read, never
written. ``ISL_RT_DCM_QA_CT`` points to the dcm-qa-ct folder when it is not ``../shared/data/dcm-qa-ct``.
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

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ISL_RT_DCM_QA_CT", REPO.parent / "shared" / "data" / "dcm-qa-ct"))
QUICK_SLICES = 6


def tilt_shifts(positions: np.ndarray, orientation: tuple[float, ...], pixel_spacing: tuple[float, float],
                ref: int | None = None) -> np.ndarray:
    """float [N, 2]: per slice, the in-plane shift (rows, columns) in pixels that puts it on the grid
    of slice ``ref`` (default the middle one): the shear of a tilted stack undone, as dcm2niix does.
    ``positions`` [N, 3] are the slices' ImagePositionPatient in stack order."""
    positions = np.asarray(positions, dtype=np.float64)
    row_dir, col_dir = np.asarray(orientation[:3], np.float64), np.asarray(orientation[3:], np.float64)
    ref = len(positions) // 2 if ref is None else ref
    offset = positions - positions[ref]
    # output[r', c'] = input[r' - shift_r, c' - shift_c]: content moves by the offset within the plane
    return np.stack([offset @ col_dir / pixel_spacing[0], offset @ row_dir / pixel_spacing[1]], axis=1)


def deshear(hu: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """int16 [N, H, W]: each slice translated by its (rows, columns) shift, linear interpolation,
    air (-1024 HU) where the slice reaches outside its field of view."""
    from scipy import ndimage

    out = np.empty_like(hu)
    for i, (dr, dc) in enumerate(shifts):
        moved = ndimage.shift(hu[i].astype(np.float32), (dr, dc), order=1, mode="constant", cval=-1024.0)
        out[i] = np.rint(moved).astype(np.int16)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from isl_rt.backends import open_backends
    from isl_rt.bundle import load_bundle
    from isl_rt.io import dicom
    from isl_rt.pipeline import Scorer, params_from_bundle

    found = dicom.discover(Path(args.data))
    if len(found.series) != 1:
        raise SystemExit(f"{args.data}: expected one DICOM CT series, found {len(found.series)}")
    ref = found.series[0]
    volume = dicom.load_volume(ref)
    tilt = float(np.degrees(np.arccos(abs(np.cross(ref.orientation[:3], ref.orientation[3:])[2]))))
    shifts = tilt_shifts(ref.positions, ref.orientation, ref.pixel_spacing)
    hu = volume.hu
    index = np.arange(len(hu))
    if args.quick:
        start = max(0, len(hu) // 2 - QUICK_SLICES // 2)
        index = index[start : start + QUICK_SLICES]
    acquired = hu[index]
    resampled = deshear(hu, shifts)[index]
    bundle = load_bundle(Path(args.bundle))
    threshold = bundle.manifest.slice_threshold
    began = time.perf_counter()
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn)
        a, r = scorer.score(acquired), scorer.score(resampled)
    seconds = time.perf_counter() - began
    sa, sr = a.slice_scores.astype(np.float64), r.slice_scores.astype(np.float64)
    diff = np.abs(sa - sr)
    worst = int(np.nanargmax(diff)) if np.isfinite(diff).any() else 0
    cut = None if threshold is None else threshold.slice_score
    z = np.asarray(ref.positions)[:, 2]
    return {
        "data": str(args.data), "bundle": bundle.manifest.name, "tilt_deg": round(tilt, 2), "quick": bool(args.quick),
        "slices": [
            {"slice": int(i), "z_mm": round(float(z[i]), 2), "shift_px": round(float(shifts[i, 0]), 2),
             "acquired": float(sa[k]), "resampled": float(sr[k]), "difference": float(sr[k] - sa[k])}
            for k, i in enumerate(index)
        ],
        "scan_score": {"acquired": float(a.scan_score), "resampled": float(r.scan_score)},
        "largest_difference": {"slice": int(index[worst]), "value": float(np.nan_to_num(diff[worst]))},
        "mean_abs_difference": float(np.nanmean(diff)) if np.isfinite(diff).any() else 0.0,
        "slice_threshold": cut,
        "flagged": None if cut is None else {"acquired": int(np.sum(sa > cut)), "resampled": int(np.sum(sr > cut))},
        "seconds": round(seconds, 2),
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['data']}: tilt {result['tilt_deg']}°, bundle {result['bundle']}"
             + (" (--quick: middle slices only)" if result["quick"] else ""),
             f"{'slice':>5} {'z mm':>8} {'shift px':>9} {'acquired':>12} {'resampled':>12} {'difference':>12}"]
    for s in result["slices"]:
        lines.append(f"{s['slice']:>5} {s['z_mm']:>8.2f} {s['shift_px']:>9.2f} {s['acquired']:>12.6g} "
                     f"{s['resampled']:>12.6g} {s['difference']:>12.3g}")
    sc, ld = result["scan_score"], result["largest_difference"]
    lines.append(f"scan score: acquired {sc['acquired']:.6g}, resampled {sc['resampled']:.6g}; largest slice difference "
                 f"{ld['value']:.6g} (slice {ld['slice']}); mean |difference| {result['mean_abs_difference']:.3g}")
    if result["flagged"] is not None:
        f = result["flagged"]
        lines.append(f"slices above the slice threshold {result['slice_threshold']:.6g}: acquired {f['acquired']}, "
                     f"resampled {f['resampled']} of {len(result['slices'])}")
    lines.append(f"{result['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO / "export" / "head-ct-real-tiny"))
    parser.add_argument("--data", default=str(DATA / "GE"), help="the folder of the tilted series (read only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"the {QUICK_SLICES} middle slices only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not Path(args.data).is_dir():
        print(f"{args.data} is missing: dcm-qa-ct is not here (set ISL_RT_DCM_QA_CT); nothing measured", file=sys.stderr)
        return 1
    result = run(args)
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
