"""Does the input gate reject real heads? Counted on real head CT and on the phantom.

    python benchmarks/bench_gate.py [--real ../shared/data/phe-sich-ct-ids] [--phantom 40] [--seed 4242]

Real data: every patient folder of PHE-SICH-CT-IDS (pre-windowed 8-bit PNG slices, 99 series,
2,920 slices) goes through the image gate as ``scan`` runs it and stricter (the header check of
a whole head series: the folder's size and, which ``scan`` does not ask of image folders, its
image count; then the pixel check on all its slices). Phantom: ``--phantom N`` series written
with ``--seed`` go through the CT gate (header, then pixels on the decoded HU volume). Prints one
JSON line per series, then one summary line per data set: series and slices seen, series and
slices rejected (each with its reason), slices on which no cranial cavity was found or none that
looks like a head (see isl_rt/io/gate.py), the lowest share of head slices in a series, and the
gate's own time per slice (decoding not counted). A healthy gate rejects 0 series here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

#: beside the project, never in it (``ISL_RT_REAL_DATA`` points elsewhere), as tests/test_real_data.py finds it
DEFAULT_REAL = Path(os.environ.get("ISL_RT_REAL_DATA",
                                   Path(__file__).resolve().parents[1].parent / "shared" / "data" / "phe-sich-ct-ids"))


def machine() -> dict[str, object]:
    import numpy

    return {"python": platform.python_version(), "numpy": numpy.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def summary(name: str, rows: list[dict[str, object]]) -> dict[str, object]:
    slices = sum(int(r["slices"]) for r in rows)
    seconds = sum(float(r["gate_seconds"]) for r in rows)
    rejected = [r for r in rows if r["reason"]]
    return {
        "kind": "summary", "data": name, "series": len(rows), "slices": slices,
        "rejected_series": len(rejected), "rejected_slices": sum(int(r["slices"]) for r in rejected),
        "reasons": sorted({str(r["reason"]) for r in rejected}),
        "slices_without_cavity": sum(int(r["slices"]) - int(r["cavity_slices"]) for r in rows),
        "slices_not_showing_a_head": sum(int(r["slices"]) - int(r["head_slices"]) for r in rows),
        "lowest_head_slice_share": min((int(r["head_slices"]) / int(r["slices"]) for r in rows), default=0.0),
        "gate_ms_per_slice": round(1000 * seconds / max(slices, 1), 2), "machine": machine(),
    }


def real_series(root: Path) -> list[dict[str, object]]:
    from isl_rt.io import gate, images

    rows = []
    for ref in images.discover_images(root / "images"):
        stack = images.load_images(ref)
        n, _, h, w = stack.images.shape
        start = time.perf_counter()
        verdict = gate.check_image_header(n, h, w)
        stats = gate.image_slice_stats(stack.images)
        if verdict.usable:
            verdict = gate.check_image_pixels(stats)
        seconds = time.perf_counter() - start
        rows.append({"kind": "series", "data": "real", "series": ref.series_id, "slices": n, "cavity_slices": verdict.facts.get("cavity_slices", 0),
                     "head_slices": verdict.facts.get("head_slices", 0),
                     "reason": verdict.reason or "", "facts": verdict.facts, "gate_seconds": seconds})
    return rows


def phantom_series(n: int, seed: int) -> list[dict[str, object]]:
    from isl_rt.io import dicom, gate
    from isl_rt.io.phantom import write_cohort

    rows = []
    with tempfile.TemporaryDirectory(prefix="isl-gate-") as tmp:
        write_cohort(Path(tmp) / "cohort", n, 0.5, seed)
        for ref in dicom.discover(Path(tmp) / "cohort").series:
            volume = dicom.load_volume(ref)
            start = time.perf_counter()
            verdict = gate.check_ct_header(ref)
            stats = gate.ct_slice_stats(volume.hu, ref.pixel_spacing)
            if verdict.usable:
                verdict = gate.check_ct_pixels(stats)
            seconds = time.perf_counter() - start
            rows.append({"kind": "series", "data": "phantom", "series": ref.path.name, "slices": ref.n_slices,
                         "cavity_slices": verdict.facts.get("cavity_slices", 0),
                     "head_slices": verdict.facts.get("head_slices", 0), "reason": verdict.reason or "", "facts": verdict.facts,
                         "gate_seconds": seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="PHE-SICH-CT-IDS folder (images/ inside)")
    parser.add_argument("--phantom", type=int, default=40, help="phantom series to write and check (0: none)")
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args(argv)
    for name, run in (("real", lambda: real_series(args.real)), ("phantom", lambda: phantom_series(args.phantom, args.seed))):
        if (name == "real" and not (args.real / "images").is_dir()) or (name == "phantom" and args.phantom <= 0):
            continue
        rows = run()
        for row in rows:
            print(json.dumps(row))
        print(json.dumps(summary(name, rows)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
