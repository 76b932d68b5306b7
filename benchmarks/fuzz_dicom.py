"""Fuzzing the DICOM reader (header classification, pixel loading, the gate's pixel statistics).

    pip install atheris
    python benchmarks/fuzz_dicom.py --seeds CORPUS          # write the seed corpus
    python benchmarks/fuzz_dicom.py CORPUS -runs=500000 -rss_limit_mb=1536 -timeout=20 \
        -artifact_prefix=findings/

Each input becomes a file read the way ``scan`` reads one: ``isl_rt.io.dicom._classify`` (which
must never raise), and when the file is a CT slice ``load_volume`` on it (which may raise only
InputError, and must stay within the decode bound of ``isl_rt.io.limits``) and the gate's
``ct_slice_stats``. Inputs whose first byte is even are taken as the file's bytes, mutated by
libFuzzer; odd ones are structure-aware: a FuzzedDataProvider picks one of the seed data sets
and overwrites its geometry, pixel-format, rescale and transfer-syntax attributes and the length
of its PixelData with fuzzed values, so the reader meets well-formed files that lie. Any other
exception, a hang beyond -timeout or an RSS beyond -rss_limit_mb is a finding; libFuzzer writes
it under -artifact_prefix; ``--materialise FINDING OUT`` writes the file a finding stands for
(as a raw input, so it replays without atheris) and ``--replay FILE...`` runs inputs again.
Materialised findings live in tests/data/fuzz/dicom/, replayed by tests/test_fuzz_findings.py.
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
from typing import Any

import numpy as np

try:
    import atheris
except ImportError:  # replaying findings (tests/test_fuzz_findings.py) needs no atheris
    atheris = None

with atheris.instrument_imports(include=["pydicom", "isl_rt"]) if atheris else contextlib.nullcontext():
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        CTImageStorage, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
        ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid,
    )

    from isl_rt.errors import InputError
    from isl_rt.io import dicom, gate



@functools.cache
def work_folder() -> Path:
    """Where inputs are written (memory-backed where /dev/shm exists)."""
    return Path(tempfile.mkdtemp(prefix="isl-fuzz-dicom-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


# (keyword, kind) of the attributes the structure-aware half overwrites
FIELDS: list[tuple[str, str]] = [
    ("Rows", "us"), ("Columns", "us"), ("BitsAllocated", "us"), ("BitsStored", "us"), ("HighBit", "us"),
    ("PixelRepresentation", "us"), ("SamplesPerPixel", "us"), ("NumberOfFrames", "is"),
    ("PhotometricInterpretation", "cs"), ("PlanarConfiguration", "us"), ("RescaleSlope", "ds"),
    ("RescaleIntercept", "ds"), ("PixelSpacing", "ds2"), ("ImageOrientationPatient", "ds6"),
    ("ImagePositionPatient", "ds3"), ("SliceThickness", "ds"), ("PixelPaddingValue", "us"),
    ("PixelPaddingRangeLimit", "us"), ("Modality", "cs"), ("ImageType", "cs"), ("SOPClassUID", "ui"),
    ("SeriesInstanceUID", "ui"), ("BodyPartExamined", "cs"), ("EchoTime", "ds"),
]
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
            RLELossless, JPEG2000Lossless, JPEGLSLossless]


def ct_dataset(rows: int = 16, cols: int = 16, signed: bool = True) -> Dataset:
    """A small, valid axial CT slice."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.Modality = CTImageStorage, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 5
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    values = np.random.default_rng(rows).integers(0, 2000, (rows, cols))
    ds.PixelData = values.astype(np.int16 if signed else np.uint16).tobytes()
    return ds


def encode(ds: Dataset, syntax: Any) -> bytes | None:
    """The data set saved with ``syntax`` (compressed where the encoders are installed)."""
    ds = ds.copy()
    try:
        if syntax.is_compressed:
            ds.compress(syntax)
        else:
            ds.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        with _no_validation():
            ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    except Exception:  # an encoder that is not installed
        return None


class _no_validation:
    def __enter__(self) -> None:
        self.before = config.settings.writing_validation_mode
        config.settings.writing_validation_mode = config.IGNORE

    def __exit__(self, *exc: object) -> None:
        config.settings.writing_validation_mode = self.before


SEED_DATASETS = [ct_dataset(16, 16, True), ct_dataset(12, 20, False), ct_dataset(1, 1, True)]


def fuzzed_value(fdp: atheris.FuzzedDataProvider, kind: str) -> Any:
    if kind == "us":
        return fdp.PickValueInList([0, 1, 2, 7, 8, 12, 15, 16, 17, 32, 64, 255, 4096, 16384, 65535,
                                    fdp.ConsumeIntInRange(0, 65535)])
    if kind == "is":
        return str(fdp.PickValueInList([0, 1, 2, -1, 1000000, fdp.ConsumeInt(4)]))
    if kind == "cs":
        return fdp.PickValueInList(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "MR", "CT",
                                    "LOCALIZER", "HEAD", "CHEST", fdp.ConsumeUnicodeNoSurrogates(12)])
    if kind == "ui":
        return fdp.PickValueInList([str(CTImageStorage), "1.2.840.10008.5.1.4.1.1.4", "", "1.2.3",
                                    fdp.ConsumeUnicodeNoSurrogates(40)])
    numbers = ["nan", "inf", "-inf", "0", "-1", "1e308", "1e-308", "1", "0.5", "-1024", "32768", "1\\2", "",
               repr(fdp.ConsumeFloat())]
    count = {"ds": 1, "ds2": 2, "ds3": 3, "ds6": 6}[kind]
    return [fdp.PickValueInList(numbers) for _ in range(count)] if count > 1 else fdp.PickValueInList(numbers)


def structured_file(data: bytes) -> bytes | None:
    fdp = atheris.FuzzedDataProvider(data)
    ds = fdp.PickValueInList(SEED_DATASETS).copy()
    syntax = fdp.PickValueInList(SYNTAXES)
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        keyword, kind = fdp.PickValueInList(FIELDS)
        value = fuzzed_value(fdp, kind)
        try:
            with _no_validation():
                setattr(ds, keyword, value)
        except Exception:  # pydicom refuses the value outright: nothing to read
            continue
    raw = encode(ds, syntax)
    if raw is None:
        return None
    length = fdp.ConsumeIntInRange(0, 2)
    if length == 1:  # cut anywhere in the file
        raw = raw[: fdp.ConsumeIntInRange(0, len(raw))]
    elif length == 2:  # append bytes
        raw = raw + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    return raw


def read_like_scan(path: Path) -> None:
    """What scan does with one file; raises only on a finding."""
    got = dicom._classify(path, dicom.MAX_TILT_DEG)  # contract: never raises
    if not isinstance(got, dicom._Slice):
        return
    ref = dicom._build_series(got.series_uid, [got], [])
    if not isinstance(ref, dicom.SeriesRef):
        return
    gate.check_ct_header(ref)
    try:
        volume = dicom.load_volume(ref)
    except InputError:
        return
    assert volume.hu.dtype == np.int16 and volume.hu.shape == (1, ref.rows, ref.columns)
    gate.check_ct_pixels(gate.ct_slice_stats(volume.hu, ref.pixel_spacing))


def as_file(data: bytes) -> bytes | None:
    """The file an input stands for: its bytes, or the structure-aware edit of a seed."""
    if not data:
        return None
    return data[1:] if data[0] % 2 == 0 else structured_file(data[1:])


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
    raw = as_file(data)
    if raw is None:
        return
    target = (folder or work_folder()) / "slice.dcm"
    target.write_bytes(raw)
    read_like_scan(target)


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, ds in enumerate(SEED_DATASETS):
        for syntax in SYNTAXES:
            raw = encode(ds, syntax)
            if raw is not None:
                (folder / f"seed-{i}-{syntax.name.replace(' ', '_')}").write_bytes(b"\x00" + raw)
                n += 1
    for i in range(8):  # structure-aware starting points
        (folder / f"structured-{i}").write_bytes(bytes([1]) + os.urandom(64))
        n += 1
    return n


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--seeds":
        print(f"{write_seeds(Path(argv[2]))} seeds written to {argv[2]}")
        return
    if len(argv) == 4 and argv[1] == "--materialise":  # a finding as the file it stands for
        raw = as_file(Path(argv[2]).read_bytes())
        Path(argv[3]).write_bytes(b"\x00" + (raw or b""))
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
