"""Small synthetic DICOM and image factories for the io tests.

``dicom_factory`` writes 64×64 CT slices whose HU content is known exactly: a body disc of
soft tissue, a bone ring and a marker square whose value encodes the slice index along z, so
a test can check both the HU values and the slice order. File names and InstanceNumbers are
shuffled so that neither says anything about the order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID,
    generate_uid,
)

from isl_rt.io.phantom import simple_head_slice

ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")
DOSE_SR = UID("1.2.840.10008.5.1.4.1.1.88.67")
CSA_NON_IMAGE = UID("1.3.12.2.1107.5.9.1")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def marker_hu(index: int) -> int:
    """The HU written in the marker square of the slice at z index ``index``."""
    return 100 + 20 * index


def phantom_hu(index: int, rows: int = 64, cols: int = 64) -> np.ndarray:
    """An int32 HU slice: air, a soft-tissue disc, a bone ring and the index marker."""
    y, x = np.mgrid[:rows, :cols]
    r = np.hypot(y - rows / 2, x - cols / 2)
    hu = np.full((rows, cols), -1000, dtype=np.int32)
    hu[r < 0.42 * min(rows, cols)] = 1100  # bone ring
    hu[r < 0.36 * min(rows, cols)] = 35  # brain
    hu[2:6, 2:6] = marker_hu(index)
    hu[rows - 3, cols - 3] = -3024  # below the HU floor: must come back as -1024
    return hu


@dataclass
class WrittenSeries:
    series_uid: str
    study_uid: str
    #: Files in the order they were written (shuffled names); ``z`` in the same order.
    files: list[Path]
    z: list[float]
    #: Expected HU after rescale and the -1024 floor, ordered by z (inferior first), int32.
    hu: np.ndarray


class DicomFactory:
    """Writes small CT objects; every method returns what a test needs to check the reader."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.study_uid = generate_uid()

    def _base(self, sop_class: UID, modality: str, series_uid: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = sop_class
        ds.Modality = modality
        ds.StudyInstanceUID = self.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.SeriesDescription = "HEAD 2.5mm"
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "SYN-0001"
        ds.StudyDate = "20240102"
        ds.Manufacturer = "isl-rt tests"
        return ds

    def ct_slice(
        self,
        path: Path,
        hu: np.ndarray,
        *,
        z: float,
        series_uid: str,
        instance: int = 1,
        signed: bool = True,
        slope: float = 1.0,
        intercept: float = -1024.0,
        orientation: tuple[float, ...] = AXIAL,
        pixel_spacing: tuple[float, float] = (0.5, 0.5),
        image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
        padding: int | None = None,
        implicit: bool = False,
        sop_class: UID = CTImageStorage,
        mutate: Callable[[Dataset], None] | None = None,
    ) -> np.ndarray:
        """Write one slice of ``hu`` (int HU) and return the stored values it holds; ``mutate``
        edits the data set last, with pydicom's value validation off (to write invalid values)."""
        dtype = np.int16 if signed else np.uint16
        info = np.iinfo(dtype)
        stored = np.clip(np.rint((hu - intercept) / slope), info.min, info.max).astype(dtype)
        if padding is not None:
            stored[hu <= -3024] = padding
        rows, cols = hu.shape
        ds = self._base(sop_class, "CT", series_uid)
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.ImageType = list(image_type)
        ds.InstanceNumber = instance
        ds.ImageOrientationPatient = list(orientation)
        row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        normal = np.cross(row, col)
        origin = np.array([-16.0, -16.0, 0.0]) + normal * z
        ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
        ds.SliceThickness = 2.5
        ds.KVP = 120
        ds.ConvolutionKernel = "H30s"
        ds.PixelSpacing = list(pixel_spacing)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if padding is not None:
            ds.PixelPaddingValue = padding
        ds.PixelData = stored.tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        with invalid_values_allowed():
            if mutate is not None:
                mutate(ds)
            ds.save_as(path, enforce_file_format=True)
        return stored

    def head_series(
        self,
        folder: Path,
        *,
        n: int = 12,
        size: int = 256,
        pixel_mm: float = 0.8,
        spacing: float = 5.0,
        hu: Callable[[int], np.ndarray] | None = None,
        mutate: Callable[[Dataset], None] | None = None,
    ) -> str:
        """A series a head-CT gate accepts (``simple_head_slice`` slices, 205 mm field of view),
        with ``hu(i)`` replacing slice i's HU and ``mutate`` editing every data set; its UID."""
        uid = generate_uid()
        for i in range(n):
            values = simple_head_slice(size, seed=i) if hu is None else hu(i)
            self.ct_slice(folder / f"IM{i:04d}", values, z=spacing * i, series_uid=uid, instance=i + 1,
                          pixel_spacing=(pixel_mm, pixel_mm), mutate=mutate)
        return uid

    def series(
        self,
        folder: Path,
        *,
        n: int = 6,
        rows: int = 64,
        cols: int = 64,
        z: list[float] | None = None,
        spacing: float = 2.5,
        signed: bool = True,
        slope: float = 1.0,
        intercept: float = -1024.0,
        padding: int | None = None,
        compress: UID | None = None,
        implicit: bool = False,
        orientation: tuple[float, ...] = AXIAL,
        mutate: Callable[[Dataset], None] | None = None,
    ) -> WrittenSeries:
        """Write a series in shuffled file names with scrambled InstanceNumbers."""
        zs = list(z) if z is not None else [-20.0 + spacing * i for i in range(n)]
        uid = generate_uid()
        write_order = self.rng.permutation(len(zs))
        names = self.rng.permutation(len(zs))
        instances = self.rng.permutation(len(zs)) + 1
        rank = {v: i for i, v in enumerate(sorted(set(zs)))}
        files: list[Path] = []
        written_z: list[float] = []
        expected: dict[float, np.ndarray] = {}
        for k, i in enumerate(write_order):
            hu = phantom_hu(rank[zs[i]], rows, cols)
            path = folder / f"IM{names[k]:04d}"
            stored = self.ct_slice(
                path,
                hu,
                z=zs[i],
                series_uid=uid,
                instance=int(instances[k]),
                signed=signed,
                slope=slope,
                intercept=intercept,
                padding=padding,
                implicit=implicit,
                orientation=orientation,
                mutate=mutate,
            )
            if compress is not None:
                ds = pydicom.dcmread(path)
                ds.compress(compress)
                ds.save_as(path, enforce_file_format=True)
            values = stored.astype(np.float64) * slope + intercept
            if padding is not None:
                values[stored == padding] = -1024
            expected.setdefault(zs[i], np.clip(np.rint(values), -1024, 32767).astype(np.int32))
            files.append(path)
            written_z.append(zs[i])
        hu = np.stack([expected[v] for v in sorted(expected)])
        return WrittenSeries(uid, self.study_uid, files, written_z, hu)

    def localizer(self, path: Path) -> None:
        hu = phantom_hu(0)
        self.ct_slice(
            path, hu, z=0.0, series_uid=generate_uid(), orientation=CORONAL,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        )

    def coronal(self, folder: Path, n: int = 3) -> str:
        uid = generate_uid()
        for i in range(n):
            self.ct_slice(folder / f"COR{i}", phantom_hu(i), z=float(i), series_uid=uid, orientation=CORONAL)
        return uid

    def dose_sr(self, path: Path) -> None:
        ds = self._base(DOSE_SR, "SR", generate_uid())
        ds.ContentDate = "20240102"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    def no_pixels(self, path: Path) -> None:
        """A CT image header whose PixelData is missing."""
        self.ct_slice(path, phantom_hu(0), z=0.0, series_uid=generate_uid())
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path, enforce_file_format=True)

    def csa_non_image(self, path: Path) -> None:
        """A Siemens CSA Non-Image object: modality CT, a private SOP class, no pixels."""
        ds = self._base(CSA_NON_IMAGE, "CT", generate_uid())
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    def multiframe(self, path: Path, frames: int = 3) -> None:
        self.ct_slice(path, phantom_hu(0), z=0.0, series_uid=generate_uid(), sop_class=ENHANCED_CT)
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = frames
        ds.PixelData = ds.PixelData * frames
        ds.save_as(path, enforce_file_format=True)

    @staticmethod
    def truncate(path: Path, keep_bytes: int) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:keep_bytes])


@contextmanager
def invalid_values_allowed() -> Iterator[None]:
    """pydicom writes values its validation would refuse (NaN rescale slopes, for example)."""
    from pydicom import config

    before = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.writing_validation_mode = before


@pytest.fixture
def dicom_factory() -> DicomFactory:
    return DicomFactory(seed=0)


@pytest.fixture
def mixed_tree(tmp_path: Path, dicom_factory: DicomFactory) -> dict[str, object]:
    """Two good series, a localizer, a coronal reformat, a text file, a truncated slice, a
    non-image object, a CT image without its pixel data, a multi-frame object and a dose SR."""
    root = tmp_path / "mixed"
    a = dicom_factory.series(root / "study" / "a", n=6, signed=True, intercept=0.0)
    b = dicom_factory.series(root / "study" / "b", n=5, signed=False, intercept=-1024.0)
    # The truncated file is one more slice of series a, above the others.
    truncated = root / "study" / "a" / "ZZ_truncated"
    dicom_factory.ct_slice(truncated, phantom_hu(9), z=100.0, series_uid=a.series_uid)
    dicom_factory.truncate(truncated, truncated.stat().st_size - 2000)
    dicom_factory.localizer(root / "study" / "scout.dcm")
    coronal_uid = dicom_factory.coronal(root / "study" / "coronal", n=3)
    (root / "README.txt").write_text("not a DICOM file\n")
    dicom_factory.csa_non_image(root / "study" / "csa.dcm")
    dicom_factory.no_pixels(root / "study" / "nopix.dcm")
    dicom_factory.multiframe(root / "study" / "enhanced.dcm")
    dicom_factory.dose_sr(root / "study" / "dose.dcm")
    return {
        "root": root,
        "a": a,
        "b": b,
        "truncated": truncated,
        "coronal_uid": coronal_uid,
    }


# ---- kernels: the ONE table of float tolerances against the numpy twins, and a synthetic head
# slice. Usage: ``np.testing.assert_allclose(native, ref, **kernel_tol["window"])``. Integer and
# mask outputs that are exact by construction are compared with ``np.array_equal`` and have no
# row here. Every row says why it is not tighter.

KERNEL_TOLERANCES: dict[str, dict[str, float]] = {
    # ---- window, gaussian_blur, canny --------------------------------------------------------
    # Native window (float32) vs float64 reference: one float32 division per source pixel and a
    # float32 sum of <= taps_y * taps_x weighted terms in [0, 1]; measured <= 1.8e-7 (S from 1
    # to 700 on 512x512 slices, H != W included).
    "window": {"rtol": 0.0, "atol": 1e-6},
    # uint8 window output vs the reference: the float32 sum can land on the other side of a .5
    # than the float64 one when the exact value is within ~1e-6 of a tie; measured on <= 2e-5 of
    # the pixels (shrink/enlarge), 0 for identity and for ties of exact windows such as 40/80.
    # Tests also bound the fraction of differing pixels (window_u8_mismatch).
    "window_u8": {"rtol": 0.0, "atol": 1.0},
    "window_u8_mismatch": {"max_fraction": 1e-3},
    # Native blur vs float64 reference: float32 taps (relative rounding 6e-8 each) and a float32
    # sum of 2*radius+1 terms; measured relative error <= 8.7e-7 up to sigma = 16.
    "gaussian_blur": {"rtol": 2e-6, "atol": 1e-6},
    # Native blur vs cv2.GaussianBlur(BORDER_REFLECT_101) on 0..255 data: cv2 builds its own float
    # taps and sums in another order; measured <= 9.2e-5 absolute (0.5 <= sigma <= 16).
    "gaussian_blur_cv2": {"rtol": 0.0, "atol": 2e-4},
    # Canny on float input vs the float64 reference: the float32 Sobel/magnitude rounding flips a
    # few NMS ties and threshold comparisons of nearly equal magnitudes (measured agreement
    # >= 0.99985 with blur, exact on most slices). uint8 input is compared exactly.
    "canny_float_agreement": {"min_fraction": 0.999},
    # Blurred canny vs skimage.feature.canny (same sigma and thresholds): skimage interpolates the
    # magnitude between neighbours in its non-maximum suppression instead of OpenCV's 4 sectors,
    # and blurs with a zero border; measured edge F1 0.91-0.95 (0.934 even with the same blur).
    "canny_vs_skimage": {"min_f1": 0.9},
    # ---- fanout, compose_diff, heatmap -------------------------------------------------------
    # Native heat vs float64 reference: the channel mean, normalisation and exp enhancement run
    # in float32, and one float32 rounding of b (<= B = 1 + box^2) is multiplied by gamma in the
    # exponent, so the relative error grows as ~5e-8 * gamma*B: measured 2.1e-5 at gamma*B = 410
    # and 4.6e-5 at 1000, the largest the tests use. atol covers values near 0.
    "heatmap": {"rtol": 1e-4, "atol": 1e-7},
    # APDS = mean of heat over the foreground (double sums): inherits the heat error.
    "apds": {"rtol": 1e-4, "atol": 1e-12},
    # CUDA heat vs float64 reference: on top of the native float32 error, the box sum is a direct
    # float32 sum of box*box terms (the CPU uses a double summed-area table), worst case box^2
    # ulp of B before the exponent. Not yet measured on a GPU (none where this was written); set
    # from that bound for gamma*B <= 1000 and box <= 65.
    "heatmap_cuda": {"rtol": 1e-3, "atol": 1e-6},
    "apds_cuda": {"rtol": 1e-3, "atol": 1e-10},
}


@pytest.fixture
def kernel_tol() -> dict[str, dict[str, float]]:
    """rtol/atol (or fractions) per kernel output, for ``np.testing.assert_allclose(..., **row)``."""
    return KERNEL_TOLERANCES


make_head_slice = simple_head_slice


@pytest.fixture
def head_slice() -> Callable[..., np.ndarray]:
    """``head_slice(h, w=None, seed=0, noise_hu=4.0)`` -> int16 [h, w] synthetic head slice in HU."""
    return make_head_slice


def edge_f1(edges: np.ndarray, truth: np.ndarray) -> float:
    """F1 of the edge pixels of ``edges`` against ``truth`` (both nonzero = edge); 1.0 if both empty."""
    a, b = np.asarray(edges) != 0, np.asarray(truth) != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.fixture
def f1_score() -> Callable[[np.ndarray, np.ndarray], float]:
    """``f1_score(edges, truth)``: edge-pixel F1 (see :func:`edge_f1`)."""
    return edge_f1


# ---- a small real bundle for pipeline tests ---------------------------------------------------
@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """A calibrated S=32, K=2 bundle whose networks were trained for a few steps on two healthy
    phantom studies: real ONNX files through the real export, small enough for quick scans."""
    torch = pytest.importorskip("torch")
    from isl_rt.bundle import load_bundle
    from isl_rt.export import export_bundle
    from isl_rt.training.data import PrepParams, prepare
    from isl_rt.training.dedn import DeDNTrainConfig, train_dedn
    from isl_rt.training.drn import DRNTrainConfig, train_drn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckpt = tmp_path_factory.mktemp("small-ckpt")
        slices = prepare("phantom:2:5000", PrepParams(size=32), cache_dir=ckpt / "data")
        train_dedn(slices, ckpt, DeDNTrainConfig(max_epochs=1, batch_size=4, steps_per_epoch=2, feature_steps=2, feature_batch=4, k_max=4))
        train_drn(slices, ckpt, DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=1, batch_size=4, steps_per_epoch=2,
                                               queue_size=8, embedding_dim=8, projection_dim=8))
        out = tmp_path_factory.mktemp("bundles") / "small"
        export_bundle(ckpt, out, healthy_scan_scores=[0.1, 0.2, 0.3, 0.4], slices=slices)
    finally:
        torch.set_num_threads(threads)
    return load_bundle(out)


def brain_window_png(path: Path, seed: int, size: int = 64, *, bits: int = 8, rgb: bool = False) -> np.ndarray:
    """Write a schematic head slice as a pre-windowed PNG (brain window 0..80 HU, bone saturated
    white) and return its values in [0, 1] as the reader sees them."""
    from PIL import Image

    unit = np.clip(simple_head_slice(size, seed=seed).astype(np.float32) / 80.0, 0.0, 1.0)
    top = 65535 if bits == 16 else 255
    stored = np.round(unit * 255).astype(np.uint16) * (257 if bits == 16 else 1)  # 16-bit: the same values ×257
    path.parent.mkdir(parents=True, exist_ok=True)
    if rgb:
        Image.fromarray(np.repeat(stored.astype(np.uint8)[..., None], 3, axis=2)).save(path)
    else:
        Image.fromarray(stored.astype(np.uint16 if bits == 16 else np.uint8)).save(path)
    return stored.astype(np.float32) / top


def write_image_series(folder: Path, n: int, seed: int, size: int = 64) -> list[Path]:
    """``n`` brain-window PNG slices named 1.png .. n.png (natural order, not name order past 9)."""
    paths = [folder / f"{i + 1}.png" for i in range(n)]
    for i, path in enumerate(paths):
        brain_window_png(path, seed * 100 + i, size)
    return paths


@dataclass(frozen=True)
class ImageWriter:
    """The PNG writers above, for tests (conftest is not importable under --import-mode=importlib)."""

    png: Callable[..., np.ndarray] = brain_window_png
    series: Callable[..., list[Path]] = write_image_series


@pytest.fixture
def image_writer() -> ImageWriter:
    """``image_writer.png(path, seed, size=64, bits=8, rgb=False)`` and ``image_writer.series(folder, n, seed)``."""
    return ImageWriter()


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory):
    """An image bundle (pre-windowed gray images, S=32, K=2) trained for a few steps on two folders
    of brain-window PNGs, scoring inside the cranial cavity found on its gray channel (bone
    saturated white: 0.975 of full scale, i.e. pseudo-HU 3900); scan threshold calibrated, no
    slice threshold."""
    torch = pytest.importorskip("torch")
    from isl_rt.bundle import load_bundle
    from isl_rt.export import export_bundle
    from isl_rt.training.data import PrepParams, prepare
    from isl_rt.training.dedn import DeDNTrainConfig, train_dedn
    from isl_rt.training.drn import DRNTrainConfig, train_drn

    data = tmp_path_factory.mktemp("image-train")
    for k in range(2):
        write_image_series(data / f"s{k}", 6, seed=70 + k)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckpt = tmp_path_factory.mktemp("image-ckpt")
        slices = prepare(data, PrepParams(size=32), cache_dir=ckpt / "data")
        train_dedn(slices, ckpt, DeDNTrainConfig(max_epochs=1, batch_size=4, steps_per_epoch=2, feature_steps=2, feature_batch=4, k_max=4))
        train_drn(slices, ckpt, DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=1, batch_size=4, steps_per_epoch=2,
                                               queue_size=8, embedding_dim=8, projection_dim=8,
                                               cavity_window="gray", cavity_bone_hu=3900.0))
        out = tmp_path_factory.mktemp("bundles") / "images"
        export_bundle(ckpt, out, healthy_scan_scores=[0.1, 0.2, 0.3, 0.4], slices=slices)
    finally:
        torch.set_num_threads(threads)
    return load_bundle(out)


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """Three phantom series (one with a disorder) written as DICOM, with labels.csv."""
    from isl_rt.io.phantom import write_cohort

    out = tmp_path_factory.mktemp("cohort") / "cohort"
    write_cohort(out, 3, 0.34, 11)
    return out


#: the SeriesDescription of the healthy series of ``scanned_report``: markup that must stay text
MARKUP_DESCRIPTION = '<script>window.pwned=1</script><img src=x onerror=pwned=2>'


@pytest.fixture(scope="session")
def scanned_report(tmp_path_factory):
    """``isl-rt scan DIR --report`` with the shipped bundle (``--stride 2``, one thread) of two
    12-slice phantom series (a large haemorrhage, centred on the lesion, and a healthy head
    whose SeriesDescription is markup), a text file and a truncated DICOM file.

    Returns a dict: ``dicom`` (the scanned folder), ``scores`` (the CSV), ``report`` (the
    report folder), ``output`` (what the command printed) and ``markup`` (that description)."""
    import dataclasses

    from typer.testing import CliRunner

    from isl_rt.cli import app
    from isl_rt.io.phantom import generate_study, write_study

    def centred(study, keep=12):
        per_slice = study.lesion_mask.sum(axis=(1, 2))
        centre = int(np.argmax(per_slice)) if per_slice.any() else study.n_slices // 2
        first = max(0, min(study.n_slices - keep, centre - keep // 2))
        return dataclasses.replace(study, hu=study.hu[first:first + keep], lesion_mask=study.lesion_mask[first:first + keep])

    root = tmp_path_factory.mktemp("report-scan")
    dicom = root / "dicom"
    write_study(centred(generate_study(4242, "intraparenchymal_haemorrhage", "large")), dicom / "bleed")
    write_study(centred(generate_study(4243, None)), dicom / "plain")
    for path in sorted((dicom / "plain").iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = MARKUP_DESCRIPTION
        ds.save_as(path)
    (dicom / "notes.txt").write_text("not DICOM")
    first = sorted((dicom / "plain").iterdir())[0]
    (dicom / "broken.dcm").write_bytes(first.read_bytes()[:4000])
    scores = root / "out" / "scores.csv"
    report = root / "out" / "report"
    result = CliRunner().invoke(app, ["scan", str(dicom), "--out", str(scores), "--stride", "2", "--threads", "1",
                                      "--report", str(report)])
    assert result.exit_code == 0, result.output
    return {"dicom": dicom, "scores": scores, "report": report, "output": result.output, "markup": MARKUP_DESCRIPTION}


# ---- GPU tests ----------------------------------------------------------------------------------
@pytest.fixture
def cupy():
    """CuPy with a usable CUDA device and isl_rt._cuda; skips cleanly otherwise."""
    from isl_rt import extensions
    from isl_rt.errors import IslError

    module = pytest.importorskip("cupy")
    try:
        devices = extensions.cuda().device_count()
    except IslError as err:
        pytest.skip(str(err))
    if devices < 1:
        pytest.skip("isl_rt._cuda reports no CUDA device")
    return module


@pytest.fixture
def threads_one():
    """Runs the native kernels on one OpenMP thread for the duration of a test."""
    from isl_rt import extensions

    native = extensions.native()
    before = native.build_info()["openmp_max_threads"]
    native.set_num_threads(1)
    yield
    native.set_num_threads(before)


@pytest.fixture
def cp(cupy):
    """The `cupy` fixture under CuPy's usual short name."""
    return cupy


@pytest.fixture
def one_torch_thread():
    """One torch thread: the suite shares two cores, and oversubscription slows small tensors badly."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def load_benchmark():
    """A loader of the scripts in benchmarks/ as modules: ``load_benchmark("accuracy")``."""
    import importlib.util

    root = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load

