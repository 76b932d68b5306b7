"""A hostile corpus: the bad input a scanner-side box meets, one folder per kind.

    python benchmarks/hostile_corpus.py OUT      # writes OUT/<kind>/..., one JSON line per kind

Every kind is a folder ``OUT/<kind>/`` (the name says what is wrong) and :data:`CASES` says what
``isl-rt scan`` must make of it: the status of each row it gives (``ok`` only for the few real
heads among them), so a test can scan the whole corpus and compare. Head series are
``simple_head_slice`` stacks (256×256, 0.8 mm pixels, 12 slices of 5 mm) that the input gate
accepts; every other kind breaks one thing: a header value, the pixels, the files, the names or
the folder structure. Series UIDs are derived from the kind's name, so two corpora written to
different folders hold the same series.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid,
)

from isl_rt.io.phantom import simple_head_slice

SIZE = 256
PIXEL_MM = 0.8
N_SLICES = 12
SPACING_MM = 5.0


class Writer:
    """Writes the CT files of one kind; UIDs come from the kind's name and a counter."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.count = 0
        self.study_uid = self.uid()

    def uid(self) -> str:
        self.count += 1
        return str(generate_uid(entropy_srcs=["isl-rt hostile corpus", self.kind, str(self.count)]))

    def ct_file(self, path: Path, hu: np.ndarray, *, z: float, series_uid: str, pixel_mm: float = PIXEL_MM,
                edit: Callable[[Dataset], None] | None = None, syntax: UID = ExplicitVRLittleEndian) -> None:
        """One signed 16-bit CT slice holding ``hu`` (intercept 0), then ``edit`` on its data set."""
        rows, cols = hu.shape
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = self.uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.Modality = CTImageStorage, "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study_uid, series_uid
        ds.SeriesNumber, ds.SeriesDescription = 2, self.kind
        ds.PatientID = "HOSTILE"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-cols * pixel_mm / 2, -rows * pixel_mm / 2, z]
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.SliceThickness = SPACING_MM
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = np.clip(hu, -32768, 32767).astype(np.int16).tobytes()
        if syntax.is_compressed:
            ds.compress(syntax)
        path.parent.mkdir(parents=True, exist_ok=True)
        before = config.settings.writing_validation_mode
        config.settings.writing_validation_mode = config.IGNORE  # to write NaN slopes and the like
        try:
            if edit is not None:
                edit(ds)
            ds.save_as(path, enforce_file_format=True)
        finally:
            config.settings.writing_validation_mode = before

    def head_series(self, folder: Path, *, n: int = N_SLICES, spacing: float = SPACING_MM, pixel_mm: float = PIXEL_MM,
                    hu: Callable[[int], np.ndarray] | None = None, edit: Callable[[Dataset], None] | None = None,
                    syntax: UID = ExplicitVRLittleEndian, prefix: str = "IM") -> list[Path]:
        """A series of ``n`` slices (a head the gate accepts unless ``hu``/``edit`` say otherwise)."""
        uid = self.uid()
        files = []
        for i in range(n):
            path = folder / f"{prefix}{i:04d}.dcm"
            values = simple_head_slice(SIZE, seed=i) if hu is None else hu(i)
            self.ct_file(path, values, z=spacing * i, series_uid=uid, pixel_mm=pixel_mm, edit=edit, syntax=syntax)
            files.append(path)
        return files


def _set(**values: Any) -> Callable[[Dataset], None]:
    def edit(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    return edit


def _uniform(value: int) -> Callable[[int], np.ndarray]:
    return lambda i: np.full((SIZE, SIZE), value, dtype=np.int16)


def _mr_pixels(i: int) -> np.ndarray:
    """An MR-like head: background 0, dark skull, bright brain; never below 0."""
    head = simple_head_slice(SIZE, seed=i).astype(np.int32)
    out = np.zeros_like(head)
    out[head > 500] = 80
    tissue = (head > -200) & (head <= 500)
    out[tissue] = 600 + 4 * head[tissue]
    return out


def _chest(i: int) -> np.ndarray:
    """A chest on 512×512 at 0.8 mm: a 340 mm body, a rib cage, two lungs."""
    y, x = np.mgrid[:512, :512]
    r = np.hypot((y - 256) / 170.0, (x - 256) / 215.0)
    hu = np.full((512, 512), -1000, dtype=np.int32)
    hu[r < 1.0] = 40
    hu[(r > 0.84) & (r < 0.9)] = 800
    for side in (-1, 1):
        hu[np.hypot((y - 250) / 130.0, (x - 256 - side * 95) / 80.0) < 1.0] = -850
    return hu


def _no_skull(i: int) -> np.ndarray:
    head = simple_head_slice(SIZE, seed=i)
    return np.where(head > 500, 40, head)


def _metal(i: int) -> np.ndarray:
    return np.where(simple_head_slice(SIZE, seed=i) > -500, 4000, -1000)


# ---- the kinds ------------------------------------------------------------------------------


def head_ok(root: Path, w: Writer) -> None:
    w.head_series(root)


def two_heads_one_folder(root: Path, w: Writer) -> None:
    w.head_series(root, prefix="A")
    w.head_series(root, prefix="B")


def header_kind(**values: Any) -> Callable[[Path, Writer], None]:
    return lambda root, w: w.head_series(root, edit=_set(**values))


def pixel_kind(hu: Callable[[int], np.ndarray], **values: Any) -> Callable[[Path, Writer], None]:
    return lambda root, w: w.head_series(root, hu=hu, edit=_set(**values) if values else None)


def matrix_16(root: Path, w: Writer) -> None:
    w.head_series(root, pixel_mm=14.0, hu=lambda i: simple_head_slice(16, seed=i))


def _rle_declaring(side: int) -> Callable[[Dataset], None]:
    """Make a slice a small RLE file whose header declares ``side``×``side`` pixels."""
    def edit(ds: Dataset) -> None:
        ds.Rows = ds.Columns = side
        ds.file_meta.TransferSyntaxUID = RLELossless
        header = np.zeros(16, dtype="<u4")
        header[0], header[1], header[2] = 2, 64, 64 + 4096
        ds.PixelData = encapsulate([header.tobytes() + b"\x81\x00" * 4096])  # runs of zeros
        ds["PixelData"].VR = "OB"
    return edit


def rle_bomb(root: Path, w: Writer) -> None:
    """12 small RLE files whose headers declare 16384×16384 (the decoder would need 512 MiB each)."""
    w.head_series(root, edit=_rle_declaring(16384))


def rle_series_over_a_gibibyte(root: Path, w: Writer) -> None:
    """130 small RLE files of 2048×2048 (each within the matrix limit), 1.02 GiB decoded in all."""
    w.head_series(root, n=130, spacing=1.0, edit=_rle_declaring(2048))


def forged_codestream(root: Path, w: Writer) -> None:
    """A JPEG 2000 series whose first file's codestream declares 40000×40000."""
    files = w.head_series(root, syntax=JPEG2000Lossless)
    data = bytearray(files[0].read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51")
    data[siz + 8 : siz + 16] = (40000).to_bytes(4, "big") * 2
    files[0].write_bytes(bytes(data))


def chest(root: Path, w: Writer) -> None:
    w.head_series(root, hu=_chest)


def truncated_file_in_a_head(root: Path, w: Writer) -> None:
    files = w.head_series(root)
    extra = root / "IM9999.dcm"
    w.ct_file(extra, simple_head_slice(SIZE, seed=99), z=SPACING_MM * N_SLICES, series_uid=_series_uid(files[0]))
    extra.write_bytes(extra.read_bytes()[:3000])


def _series_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def two_broken_series_one_folder(root: Path, w: Writer) -> None:
    """Two series in one folder, each with slices of two matrix sizes (one error row each)."""
    for prefix in ("A", "B"):
        uid = w.uid()
        for i in range(4):
            size = SIZE if i % 2 else SIZE // 2
            w.ct_file(root / f"{prefix}{i}.dcm", simple_head_slice(size, seed=i), z=5.0 * i, series_uid=uid)


def two_localizer_series_one_folder(root: Path, w: Writer) -> None:
    for prefix in ("A", "B"):
        w.head_series(root, n=2, prefix=prefix, edit=_set(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                                                          ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))


def no_pixel_data(root: Path, w: Writer) -> None:
    def edit(ds: Dataset) -> None:
        del ds.PixelData
    w.head_series(root, n=1, edit=edit)


def duplicate_files(root: Path, w: Writer) -> None:
    files = w.head_series(root)
    (root / "copy_of_IM0003.dcm").write_bytes(files[3].read_bytes())


def non_utf8_names(root: Path, w: Writer) -> None:
    folder = os.fsencode(root) + b"/series_\xff\xfe"
    files = w.head_series(Path(os.fsdecode(folder)))
    os.rename(files[0], os.fsencode(files[0]).replace(b"IM0000", b"IM_\xe9\x00"[:-1]))
    with open(os.fsencode(root) + b"/notes_\xff.txt", "wb") as handle:
        handle.write(b"not DICOM")


def symlinks(root: Path, w: Writer) -> None:
    """A link to a hidden folder (scanned through the link), a second link to it, a link loop, a
    link to itself and a dangling link."""
    target = root / ".target"
    w.head_series(target)
    (root / "link").symlink_to(".target", target_is_directory=True)
    (root / "link_again").symlink_to(".target", target_is_directory=True)
    (target / "loop").symlink_to("..", target_is_directory=True)
    (root / "self").symlink_to("self")
    (root / "dangling").symlink_to("nothing-here")


def fifo(root: Path, w: Writer) -> None:
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "pipe.dcm")


def huge_sparse_file(root: Path, w: Writer) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "huge.dcm", "wb") as handle:
        handle.truncate(80 * 2**20)


def files_that_are_not_dicom(root: Path, w: Writer) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty.dcm").write_bytes(b"")
    (root / "random.dcm").write_bytes(np.random.default_rng(5).bytes(4096))
    (root / "text.dcm").write_text("PatientName: not really\n")


def dicomdir(root: Path, w: Writer) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = w.uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "HOSTILE"
    root.mkdir(parents=True, exist_ok=True)
    ds.save_as(root / "DICOMDIR", enforce_file_format=True)


def preamble_then_garbage(root: Path, w: Writer) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + np.random.default_rng(6).bytes(2000))


def unsupported_transfer_syntax(root: Path, w: Writer) -> None:
    """Native pixels labelled JPEG 2000 Part 2 multi-component, which no decoder here reads."""
    def edit(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.92")
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
    w.head_series(root, edit=edit)


def coronal(root: Path, w: Writer) -> None:
    w.head_series(root, edit=_set(ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))


def nan_position_in_one_file(root: Path, w: Writer) -> None:
    files = w.head_series(root)
    ds = pydicom.dcmread(files[5])
    before = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        ds.ImagePositionPatient = ["nan", "nan", "nan"]
        ds.save_as(files[5], enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = before


def huge_element_length(root: Path, w: Writer) -> None:
    """A header whose private element declares 4 GB (the file is 200 bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    meta = b"\x02\x00\x10\x00UI\x14\x00" + b"1.2.840.10008.1.2.1\x00"
    body = b"\x09\x00\x10\x10OB\x00\x00" + (0xFFFFFFF0).to_bytes(4, "little") + b"\x00" * 64
    (root / "long.dcm").write_bytes(b"\x00" * 128 + b"DICM" + meta + body)


def deep_sequence(root: Path, w: Writer) -> None:
    """A slice whose private sequence nests 5000 levels deep (recursion in the parser)."""
    files = w.head_series(root, n=1)
    data = files[0].read_bytes()
    undefined = b"\xff\xff\xff\xff"
    outer, inner = b"\x09\x00\x02\x10SQ\x00\x00" + undefined, b"\x09\x00\x01\x10SQ\x00\x00" + undefined
    item, item_end, seq_end = b"\xfe\xff\x00\xe0" + undefined, b"\xfe\xff\x0d\xe0" + bytes(4), b"\xfe\xff\xdd\xe0" + bytes(4)
    depth = 5000
    nested = outer + (item + inner) * depth + seq_end + (item_end + seq_end) * depth
    at = data.index(b"\x10\x00\x20\x00LO")  # PatientID (0010,0020): group 0009 goes before it
    files[0].write_bytes(data[:at] + nested + data[at:])


def colour_series(root: Path, w: Writer) -> None:
    def edit(ds: Dataset) -> None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(ds.Rows * ds.Columns * 3)
    w.head_series(root, n=2, edit=edit)


def no_preamble_implicit(root: Path, w: Writer) -> None:
    """A good head written the old ACR-NEMA way: implicit VR, no preamble, no file meta."""
    files = w.head_series(root)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buffer = pydicom.filebase.DicomBytesIO()
        pydicom.filewriter.write_dataset(buffer, ds)  # the data set alone, implicit little endian
        path.write_bytes(buffer.getvalue())


def padding_only(root: Path, w: Writer) -> None:
    w.head_series(root, hu=_uniform(-2000), edit=_set(PixelPaddingValue=-2000))


@dataclass(frozen=True)
class Case:
    write: Callable[[Path, Writer], None]
    #: the status of each row a scan gives the kind, sorted
    statuses: tuple[str, ...]


CASES: dict[str, Case] = {
    "head_ok": Case(head_ok, ("ok",)),
    "two_heads_one_folder": Case(two_heads_one_folder, ("ok", "ok")),
    "no_preamble_implicit": Case(no_preamble_implicit, ("ok",)),
    "duplicate_files": Case(duplicate_files, ("ok",)),
    "truncated_file_in_a_head": Case(truncated_file_in_a_head, ("error", "ok")),
    "nan_position_in_one_file": Case(nan_position_in_one_file, ("error", "ok")),
    "non_utf8_names": Case(non_utf8_names, ("ok", "skipped")),
    "symlinks": Case(symlinks, ("ok", "skipped", "skipped", "skipped", "skipped")),
    "slope_nan": Case(header_kind(RescaleSlope=float("nan")), ("rejected",)),
    "slope_inf": Case(header_kind(RescaleSlope=float("inf")), ("rejected",)),
    "slope_1e308": Case(header_kind(RescaleSlope=1e308), ("rejected",)),
    "slope_zero": Case(header_kind(RescaleSlope=0), ("rejected",)),
    "slope_negative": Case(header_kind(RescaleSlope=-1), ("rejected",)),
    "slope_two_values": Case(header_kind(RescaleSlope=["1", "2"]), ("rejected",)),
    "intercept_1e9": Case(header_kind(RescaleIntercept=1e9), ("rejected",)),
    "mr_relabelled_as_ct": Case(pixel_kind(_mr_pixels, EchoTime=12.0, RepetitionTime=500.0), ("rejected",)),
    "mr_pixels_without_mr_tags": Case(pixel_kind(_mr_pixels), ("rejected",)),
    "body_part_chest": Case(header_kind(BodyPartExamined="CHEST"), ("rejected",)),
    "body_part_abdomen": Case(header_kind(BodyPartExamined="ABDOMEN"), ("rejected",)),
    "chest_anatomy": Case(chest, ("rejected",)),
    "uniform_air": Case(pixel_kind(_uniform(-1000)), ("rejected",)),
    "uniform_water": Case(pixel_kind(_uniform(0)), ("rejected",)),
    "uniform_bone": Case(pixel_kind(_uniform(1500)), ("rejected",)),
    "padding_only": Case(padding_only, ("rejected",)),
    "metal_everywhere": Case(pixel_kind(_metal), ("rejected",)),
    "no_skull": Case(pixel_kind(_no_skull), ("rejected",)),
    "matrix_16": Case(matrix_16, ("rejected",)),
    "rle_declares_16384": Case(rle_bomb, ("rejected",)),
    "rle_series_over_1_gib": Case(rle_series_over_a_gibibyte, ("rejected",)),
    # a short series that shows a head is scored as key images (the gate judges what it has)
    "few_slices": Case(lambda root, w: w.head_series(root, n=3), ("ok",)),
    "single_slice": Case(lambda root, w: w.head_series(root, n=1), ("ok",)),
    "thick_slices": Case(lambda root, w: w.head_series(root, spacing=20.0), ("rejected",)),
    "too_long": Case(lambda root, w: w.head_series(root, n=60, spacing=8.0), ("rejected",)),
    "tiny_field_of_view": Case(lambda root, w: w.head_series(root, pixel_mm=0.1), ("rejected",)),
    "forged_codestream_size": Case(forged_codestream, ("error",)),
    "unsupported_transfer_syntax": Case(unsupported_transfer_syntax, ("error",)),
    "two_broken_series_one_folder": Case(two_broken_series_one_folder, ("error", "error")),
    "two_localizer_series_one_folder": Case(two_localizer_series_one_folder, ("skipped", "skipped")),
    "no_pixel_data": Case(no_pixel_data, ("error",)),
    "huge_element_length": Case(huge_element_length, ("error",)),
    "deep_sequence": Case(deep_sequence, ("error",)),
    "colour_series": Case(colour_series, ("skipped",)),
    "coronal": Case(coronal, ("skipped",)),
    "fifo": Case(fifo, ("skipped",)),
    "huge_sparse_file": Case(huge_sparse_file, ("skipped",)),
    "files_that_are_not_dicom": Case(files_that_are_not_dicom, ("skipped", "skipped", "skipped")),
    "dicomdir": Case(dicomdir, ("skipped",)),
    "preamble_then_garbage": Case(preamble_then_garbage, ("error",)),
}


def write_corpus(out: Path, kinds: list[str] | None = None) -> dict[str, Case]:
    """Write every kind (or ``kinds``) under ``out``; returns the cases written."""
    chosen = {k: CASES[k] for k in (kinds or CASES)}
    for kind, case in chosen.items():
        folder = Path(out) / kind
        folder.mkdir(parents=True, exist_ok=True)
        case.write(folder, Writer(kind))
    return chosen


def kind_of(path: str, root: Path) -> str:
    """The kind a row's path belongs to (its first folder under the corpus root)."""
    return Path(path).relative_to(root).parts[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    for kind, case in write_corpus(args.out).items():
        print(json.dumps({"kind": kind, "statuses": case.statuses}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
