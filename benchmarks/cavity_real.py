"""How often does the cranial cavity miss the brain on real head CT, with the four-sided rule and with sides/largest?

    python benchmarks/cavity_real.py [--data ../shared/data/phe-sich-ct-ids] [--margin 2] > benchmarks/cavity_real.jsonl

Reads every slice of PHE-SICH-CT-IDS (pre-windowed 512x512 brain-window PNGs, bone saturated
white; its README), turns it into the runtime's input the way image folders are read - pseudo-HU
round(v * 4000) of the grey value v in [0, 1], through the window kernel with level 2000 and
width 4000 at S = 128 - and computes the cavity (``isl_rt.kernels.cavity``, bone = 0.975 of full
scale) with each rule: the four-sided one (sides 4, the default), sides 3, largest, and both.
Prints one JSON line for the machine, one for the data, then one per rule:

- ``empty``, ``empty_or_below_5pct``: slices whose cavity is empty or covers less than 5 % of the
  slice (the brain cut away, or a slice with little brain: the vertex, the skull base);
- ``mostly_dark``: slices whose cavity is mostly (more than half) darker than 0.02 - air, fat
  and padding, which a brain window shows black while brain and CSF are grey: the cavity lies
  outside the head, e.g. between the skull and a head holder; ``dark_share``: the share of all
  cavity pixels that are that dark;
- ``lesion_pixels_inside``: over the annotated lesion pixels of the slices with a lesion mask
  (resampled the same way, > 0.5), the share inside the cavity; ``mask_slices_below_half_inside``:
  slices with less than half of their lesion inside.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from isl_rt import extensions
from isl_rt import kernels as K

SIZE = 128
BONE = 0.975  # of full scale: the saturated white of bone in a brain window
SMALL = 0.05  # a cavity below this share of the slice misses most of the brain
DARK = 0.02  # grey below 5 of 255 in a brain window: air, fat, padding - not brain or CSF
RULES = {"four_sides": (4, False), "sides_3": (3, False), "largest": (4, True), "sides_3_largest": (3, True)}


def default_data() -> Path:
    """../shared/data/phe-sich-ct-ids next to the checkout or one of its parents."""
    for parent in Path(__file__).resolve().parents[1].parents:
        if (parent / "shared" / "data" / "phe-sich-ct-ids" / "labels.csv").is_file():
            return parent / "shared" / "data" / "phe-sich-ct-ids"
    return Path("../shared/data/phe-sich-ct-ids")


def to_input(paths: list[Path]) -> np.ndarray:
    """float32 [N, 1, S, S]: grey PNGs as the runtime reads image folders."""
    from PIL import Image

    grey = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths])
    return K.window(np.rint(grey / 255.0 * 4000).astype(np.int16), [(2000.0, 4000.0)], SIZE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="the PHE-SICH-CT-IDS folder")
    parser.add_argument("--margin", type=int, default=2, help="the cavity margin in pixels at S = 128")
    args = parser.parse_args(argv)
    with open(args.data / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    start = time.perf_counter()
    x = np.concatenate([to_input([args.data / r["image"] for r in rows[i: i + 32]]) for i in range(0, len(rows), 32)])
    masked = [i for i, r in enumerate(rows) if r["mask"]]
    lesion = np.concatenate([to_input([args.data / rows[i]["mask"] for i in masked[j: j + 32]])
                             for j in range(0, len(masked), 32)])[:, 0] > 0.5
    load_s = time.perf_counter() - start

    print(json.dumps({"kind": "machine", "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2),
                      "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
                      "omp_threads": extensions.native().build_info()["openmp_max_threads"]}), flush=True)
    print(json.dumps({"kind": "data", "path": str(args.data), "slices": len(rows), "patients": len({r["patient"] for r in rows}),
                      "lesion_slices": sum(r["lesion"] == "1" for r in rows), "slices_with_mask": len(masked),
                      "lesion_pixels_at_s": int(lesion.sum()), "size": SIZE, "bone": BONE, "margin": args.margin,
                      "load_s": round(load_s, 1)}), flush=True)
    for name, (sides, largest) in RULES.items():
        start = time.perf_counter()
        cavity = K.cavity(x, 0, BONE, args.margin, sides=sides, largest=largest) > 0
        seconds = time.perf_counter() - start
        area = cavity.sum(axis=(1, 2))
        share = area / (SIZE * SIZE)
        dark = (cavity & (x[:, 0] < DARK)).sum(axis=(1, 2))
        inside = cavity[masked] & lesion
        row: dict[str, Any] = {
            "rule": name, "sides": sides, "largest": largest, "margin": args.margin, "slices": len(rows),
            "empty": int((share == 0).sum()), "empty_or_below_5pct": int((share < SMALL).sum()),
            "median_share": round(float(np.median(share)), 4),
            "mostly_dark": int(((area > 0) & (dark > 0.5 * area)).sum()),
            "dark_share": round(float(dark.sum() / max(1, area.sum())), 4),
            "lesion_pixels_inside": round(float(inside.sum() / max(1, lesion.sum())), 4),
            "mask_slices_below_half_inside": int((inside.sum(axis=(1, 2)) < 0.5 * lesion.sum(axis=(1, 2))).sum()),
            "kernel_ms_per_slice": round(1e3 * seconds / len(rows), 3),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
