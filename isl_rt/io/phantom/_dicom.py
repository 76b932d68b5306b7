"""Write a phantom study as a DICOM CT series (one file per slice), the way scanners vary.

Per study (drawn from its seed) the writer varies what real archives vary and readers must cope
with: the vendor (manufacturer, model, kernel names), the pixel encoding (unsigned with
intercept -1024, signed with intercept -1024, or signed with intercept 0; slope 1 so that
``stored * slope + intercept`` equals the HU exactly), the window presets (one or two), the
instance-number direction, and the file names (random, SOP-UID based, unpadded numbers, or
``IM`` numbers counting down from the vertex), so that file-name order is often not slice
order and readers must sort by ImagePositionPatient.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from isl_rt.errors import InputError
from isl_rt.io.phantom._study import PhantomStudy

_UID_ROOT = "isl-rt-phantom"

# (manufacturer, model, kernels for smooth / standard / sharp reconstruction)
_VENDORS = (
    ("SIEMENS", "SOMATOM Definition AS+", ("H31s", "J40s", "H60s")),
    ("GE MEDICAL SYSTEMS", "Revolution CT", ("SOFT", "STANDARD", "BONEPLUS")),
    ("Philips", "iCT 256", ("UA", "UB", "YC")),
    ("TOSHIBA", "Aquilion ONE", ("FC21", "FC26", "FC30")),
)
_SHARPNESS = {"smooth": 0, "standard": 1, "sharp": 2}


@dataclass(frozen=True)
class SeriesRecord:
    """One written series: where it is, its UIDs, and its files in slice order (inferior first)."""

    folder: Path
    study_uid: str
    series_uid: str
    n_slices: int
    files: tuple[Path, ...]
    manufacturer: str
    rescale_intercept: float
    pixel_representation: int


def default_uids(study: PhantomStudy) -> tuple[str, str]:
    """Study and series UIDs reproducible from the study's seed, disorder and size."""
    key = [_UID_ROOT, str(study.seed), study.disorder, study.size_class]
    return str(generate_uid(entropy_srcs=[*key, "study"])), str(generate_uid(entropy_srcs=[*key, "series"]))


def write_study(
    study: PhantomStudy, folder: Path, *, study_uid: str | None = None, series_uid: str | None = None
) -> SeriesRecord:
    """Write ``study`` as a CT series into ``folder`` (created if needed); one file per slice."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Cannot write the phantom series into {folder}: it exists and is not a folder.")
    folder.mkdir(parents=True, exist_ok=True)
    d_study, d_series = default_uids(study)
    study_uid = study_uid or d_study
    series_uid = series_uid or d_series
    rng = np.random.default_rng(np.random.SeedSequence([study.seed, 3]))
    style = _draw_style(study, rng)
    base = _series_dataset(study, study_uid, series_uid, style)
    n = study.n_slices
    spacing = float(study.pixel_spacing[0])
    rows, cols = study.hu.shape[1:]
    fov = spacing * cols
    x0 = -fov / 2 + spacing / 2 + style.recon_offset[0]
    y0 = -fov / 2 + spacing / 2 + style.recon_offset[1]
    z0 = style.table_z0
    files: list[Path] = []
    for k in range(n):
        inst = k + 1 if style.ascending else n - k
        sop_uid = str(generate_uid(entropy_srcs=[_UID_ROOT, series_uid, str(k)]))
        ds = _slice_dataset(base, study, k, inst, sop_uid, (x0, y0, z0 + study.slice_thickness * k), style)
        path = folder / _file_name(style, k, inst, n, sop_uid, rng)
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SeriesRecord(
        folder,
        study_uid,
        series_uid,
        n,
        tuple(files),
        style.manufacturer,
        float(style.intercept),
        int(style.signed),
    )


@dataclass(frozen=True)
class _Style:
    """How one series is encoded and named (drawn per study from its seed)."""

    manufacturer: str
    model: str
    kernel: str
    signed: bool
    intercept: int
    pad: int
    pad_tag: bool
    two_windows: bool
    ascending: bool
    naming: str
    recon_offset: tuple[float, float]
    table_z0: float
    kvp: float
    mas: int
    date: str
    time: str
    age: int
    sex: str


def _draw_style(study: PhantomStudy, rng: np.random.Generator) -> _Style:
    vendor = _VENDORS[int(rng.integers(len(_VENDORS)))]
    sharp = _SHARPNESS.get(str(study.anatomy.get("kernel", "standard")), 1)
    encoding = str(rng.choice(["unsigned_1024", "signed_1024", "signed_0"]))
    if encoding == "unsigned_1024" and int(study.hu.min()) < -1024:
        encoding = "signed_1024"
    date = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 2000)))
    return _Style(
        manufacturer=vendor[0],
        model=vendor[1],
        kernel=vendor[2][sharp],
        signed=encoding != "unsigned_1024",
        intercept=0 if encoding == "signed_0" else -1024,
        pad=int(study.anatomy.get("pad_hu", -1024)),
        pad_tag=bool(rng.random() < 0.6),
        two_windows=bool(rng.random() < 0.5),
        ascending=bool(rng.random() < 0.6),
        naming=str(rng.choice(["random", "sop", "unpadded", "im_desc"])),
        recon_offset=(float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3))),
        table_z0=float(-rng.uniform(40, 220)),
        kvp=float(rng.choice([100.0, 120.0, 120.0, 140.0])),
        mas=int(rng.integers(220, 380)),
        date=date.strftime("%Y%m%d"),
        time=f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
        age=int(round(float(study.anatomy.get("age", 50)))),
        sex=str(rng.choice(["F", "M"])),
    )


def _series_dataset(study: PhantomStudy, study_uid: str, series_uid: str, style: _Style) -> Dataset:
    """Attributes shared by every slice of the series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = style.date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = style.time
    ds.AccessionNumber = f"PH{study.seed % 10**8:08d}"
    ds.Modality = "CT"
    ds.Manufacturer = style.manufacturer
    ds.InstitutionName = "isl-rt phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.SeriesDescription = f"Head {study.slice_thickness:.1f} {style.kernel}"
    ds.ManufacturerModelName = style.model
    ds.PatientName = f"PHANTOM^{study.seed % 10000:04d}"
    ds.PatientID = f"PHANTOM{study.seed:010d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = style.sex
    ds.PatientAge = f"{style.age:03d}Y"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = f"{study.slice_thickness:.1f}"
    ds.KVP = f"{style.kvp:.0f}"
    ds.SpacingBetweenSlices = f"{study.slice_thickness:.1f}"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{study.pixel_spacing[1] * study.hu.shape[2]:.2f}"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.XRayTubeCurrent = str(style.mas)
    ds.ConvolutionKernel = style.kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{study.seed % 10**6}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = str(generate_uid(entropy_srcs=[_UID_ROOT, study_uid, "for"]))
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(study.hu.shape[1]), int(study.hu.shape[2])
    ds.PixelSpacing = [f"{study.pixel_spacing[0]:.6g}", f"{study.pixel_spacing[1]:.6g}"]
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 1 if style.signed else 0
    intercept = style.intercept
    top = int(study.hu.max()) - intercept
    ds.BitsStored = 12 if (not style.signed and top <= 4095) else 16
    ds.HighBit = int(ds.BitsStored) - 1
    if style.two_windows:
        ds.WindowCenter, ds.WindowWidth = ["40", "600"], ["80", "2800"]
        ds.WindowCenterWidthExplanation = ["BRAIN", "BONE"]
    else:
        ds.WindowCenter, ds.WindowWidth = "40", "80"
    ds.RescaleIntercept = f"{intercept:.0f}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    if style.pad_tag and style.signed:
        ds.PixelPaddingValue = style.pad - intercept
    return ds


def _slice_dataset(
    base: Dataset,
    study: PhantomStudy,
    k: int,
    inst: int,
    sop_uid: str,
    pos: tuple[float, float, float],
    style: _Style,
) -> Dataset:
    ds = Dataset()
    ds.update(base)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    ds.file_meta = meta
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = inst
    ds.ImagePositionPatient = [f"{pos[0]:.4f}", f"{pos[1]:.4f}", f"{pos[2]:.4f}"]
    ds.SliceLocation = f"{pos[2]:.4f}"
    stored = study.hu[k].astype(np.int32) - style.intercept
    if style.signed:
        ds.PixelData = stored.astype("<i2").tobytes()
    else:
        ds.PixelData = stored.astype("<u2").tobytes()
    return ds


def _file_name(style: _Style, k: int, inst: int, n: int, sop_uid: str, rng: np.random.Generator) -> str:
    naming = style.naming
    if naming == "random":
        return f"{int(rng.integers(0, 2**63)):016x}.dcm"
    if naming == "sop":
        return f"CT.{sop_uid}.dcm"
    if naming == "unpadded":
        return f"{inst}.dcm"  # "10.dcm" sorts before "2.dcm"
    return f"IM{n - k:05d}"  # numbered from the vertex down, no extension
