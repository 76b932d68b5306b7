"""Series discovery reads headers only: time and memory for many files.

    python benchmarks/bench_discovery.py [--files 10000] [--per-series 100] [--matrix 64]

Writes ``--files`` small CT slices (``--matrix`` square, int16) in series of ``--per-series``
into a temporary folder, runs ``isl_rt.io.dicom.discover`` on it and prints one JSON line: files,
series, seconds, ms per file, peak Python heap during discovery (tracemalloc) and the pixel bytes
on disk, which discovery must not hold. Time and peak-RSS growth come from an untraced run, the
heap peak from a second, traced one. The folder is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from isl_rt.io.dicom import discover


def write_files(root: Path, files: int, per_series: int, matrix: int) -> int:
    pixels = np.zeros((matrix, matrix), np.int16).tobytes()
    study = generate_uid()
    for start in range(0, files, per_series):
        series = generate_uid()
        folder = root / f"series{start // per_series:04d}"
        folder.mkdir(parents=True)
        for i in range(min(per_series, files - start)):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", study, series
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0, 0, i * 5.0]
            ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 5.0
            ds.Rows = ds.Columns = matrix
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
            ds.PixelData = pixels
            ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return files * len(pixels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--per-series", type=int, default=100)
    parser.add_argument("--matrix", type=int, default=64)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="isl-discovery-"))
    try:
        pixel_bytes = write_files(root, args.files, args.per_series, args.matrix)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        found = discover(root)
        seconds = time.perf_counter() - start  # timed without tracing, which slows Python down
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        del found
        tracemalloc.start()
        found = discover(root)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "benchmark": "discovery", "files": found.n_files, "series": len(found.series), "skipped": len(found.skipped),
        "seconds": round(seconds, 2), "ms_per_file": round(1e3 * seconds / max(1, found.n_files), 3),
        "peak_python_heap_mib": round(peak / 2**20, 1), "peak_rss_growth_mib": round(rss_growth / 1024, 1), "pixel_data_on_disk_mib": round(pixel_bytes / 2**20, 1),
        "platform": platform.platform(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
