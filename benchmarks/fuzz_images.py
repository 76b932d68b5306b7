"""Fuzzing the image reader (PNG, JPEG, TIFF slices) and the gate's image statistics.

    pip install atheris
    python benchmarks/fuzz_images.py --seeds CORPUS         # write the seed corpus
    python benchmarks/fuzz_images.py CORPUS -runs=500000 -rss_limit_mb=1536 -timeout=20 \
        -artifact_prefix=findings/

Each input's first byte picks the file suffix (.png, .jpg, .tif); the rest is the file. It is
read as ``scan`` reads an image slice: ``isl_rt.io.images._read_image`` (which may raise only
InputError, and must refuse anything over the limits of ``isl_rt.io.limits`` before decoding)
and the gate's ``image_slice_stats`` on what it returns. Any other exception, a hang beyond
-timeout or an RSS beyond -rss_limit_mb is a finding; ``--replay FILE...`` runs findings again
(without atheris). Findings live in tests/data/fuzz/images/, replayed by tests/test_fuzz_findings.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

try:
    import atheris
except ImportError:  # replaying findings (tests/test_fuzz_findings.py) needs no atheris
    atheris = None

with atheris.instrument_imports(include=["PIL", "isl_rt"]) if atheris else contextlib.nullcontext():
    from PIL import Image

    from isl_rt.errors import InputError
    from isl_rt.io import gate, images



@functools.cache
def work_folder() -> Path:
    """Where inputs are written (memory-backed where /dev/shm exists)."""
    return Path(tempfile.mkdtemp(prefix="isl-fuzz-images-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

SUFFIXES = (".png", ".jpg", ".tif")


def read_like_scan(path: Path) -> None:
    """What scan does with one image file; raises only on a finding."""
    try:
        image, depth = images._read_image(path)
    except InputError:
        return
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] in (1, 3), image.shape
    assert depth in (8, 16) and np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    gate.check_image_pixels(gate.image_slice_stats(image[None]))


#: ISL_FUZZ_COUNT=FILE: the executions so far are written there every 1000 inputs (a lower bound
#: that survives an interrupted run, which prints no final count)
_COUNT_FILE = os.environ.get("ISL_FUZZ_COUNT")
_executions = 0


def _count() -> None:
    global _executions
    _executions += 1
    if _COUNT_FILE and _executions % 1000 == 0:
        Path(_COUNT_FILE).write_text(f"{_executions}\n")


def one_input(data: bytes, folder: Path | None = None) -> None:
    _count()
    if not data:
        return
    path = (folder or work_folder()) / f"slice{SUFFIXES[data[0] % len(SUFFIXES)]}"
    path.write_bytes(data[1:])
    read_like_scan(path)


def seed_images() -> dict[str, bytes]:
    """Small valid images of every mode and format the reader takes, and some it refuses."""
    rng = np.random.default_rng(0)
    gray = (rng.random((12, 10)) * 255).astype(np.uint8)
    seeds: dict[str, tuple[Image.Image, str, dict]] = {
        "gray.png": (Image.fromarray(gray), "PNG", {}),
        "gray16.png": (Image.fromarray((gray.astype(np.uint16) * 257)), "PNG", {}),
        "rgb.png": (Image.fromarray(np.dstack([gray] * 3)), "PNG", {}),
        "rgba.png": (Image.fromarray(np.dstack([gray] * 4)), "PNG", {}),
        "palette.png": (Image.fromarray(gray).convert("P"), "PNG", {}),
        "la.png": (Image.fromarray(np.dstack([gray] * 2), "LA"), "PNG", {}),
        "bilevel.png": (Image.fromarray(gray > 128), "PNG", {}),
        "gray.jpg": (Image.fromarray(gray), "JPEG", {"quality": 90}),
        "rgb.jpg": (Image.fromarray(np.dstack([gray] * 3)), "JPEG", {}),
        "cmyk.jpg": (Image.fromarray(np.dstack([gray] * 4), "CMYK"), "JPEG", {}),
        "gray.tif": (Image.fromarray(gray), "TIFF", {}),
        "gray16.tif": (Image.fromarray(gray.astype(np.uint16) * 257), "TIFF", {}),
        "int32.tif": (Image.fromarray(gray.astype(np.int32)), "TIFF", {}),
        "float.tif": (Image.fromarray(gray.astype(np.float32)), "TIFF", {}),
        "deflate.tif": (Image.fromarray(gray), "TIFF", {"compression": "tiff_deflate"}),
    }
    out: dict[str, bytes] = {}
    for name, (img, fmt, options) in seeds.items():
        buffer = io.BytesIO()
        img.save(buffer, fmt, **options)
        out[name] = buffer.getvalue()
    pages = io.BytesIO()
    Image.fromarray(gray).save(pages, "TIFF", save_all=True, append_images=[Image.fromarray(gray)])
    out["pages.tif"] = pages.getvalue()
    return out


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in seed_images().items():
        suffix = "." + name.rsplit(".", 1)[1]
        (folder / name).write_bytes(bytes([SUFFIXES.index(suffix)]) + raw)
    return len(list(folder.iterdir()))


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--seeds":
        print(f"{write_seeds(Path(argv[2]))} seeds written to {argv[2]}")
        return
    if len(argv) > 2 and argv[1] == "--replay":
        for name in argv[2:]:
            one_input(Path(name).read_bytes())
            print(f"{name}: no finding")
        return
    warnings.simplefilter("ignore")  # pydicom and Pillow warn on most fuzzed headers; printing them is most of the time
    logging.disable(logging.CRITICAL)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
