"""DICOM results of one scored series, built with highdicom: the objects the IHE AI Results
profile names, so any PACS and viewer can store and show what isl-rt found.

- :func:`measurement_report`: a Comprehensive 3D SR holding a TID 1500 measurement report.
  One measurement group for the series (scan score, healthy percentile, the bundle's threshold,
  a qualitative evaluation "abnormal" / "no abnormality" at that threshold, the top slice's score
  and APDS referencing that slice) and one group per slice (slice score and APDS referencing the
  slice; with a bundle's slice threshold, that threshold and the slice's qualitative evaluation
  at it too; a slice the method could not judge, without a cranial cavity, gets no number and the
  finding "not assessed" instead). Observation context: the device observer is isl-rt with this bundle.
- :func:`heat_map`: a Parametric Map of the heat map on the source pixel grid (32-bit float,
  one frame per source slice at its position) with a real-world value mapping; each frame
  references its source slice.

Both carry the algorithm's identity (:class:`Algorithm`): bundle name, isl-rt version and the
sha256 of the bundle's manifest, in the TID 4019 algorithm identification of the SR and in a
Contributing Equipment item (manufacturer, model name, software versions and a Device UID derived
from that hash, so it changes when the bundle changes) on both objects. highdicom gives them new
Study-level-consistent series and instance UIDs, copies the Patient and Study modules of the
source slices and nothing else, and checks the encoding rules as it builds them.

This module needs the ``dicom-node`` extra (highdicom); the runtime imports it only when DICOM
results are asked for.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from isl_rt.errors import InputError, IslError
from isl_rt.outputs import safe_name, write_atomic

try:
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
except ImportError as _missing:  # pragma: no cover - the dicom-node extra is part of the test extra
    raise IslError(
        "DICOM results need highdicom: run pip install 'isl-rt[dicom-node]'."
    ) from _missing

if TYPE_CHECKING:
    from isl_rt.bundle import Bundle
    from isl_rt.pipeline import SeriesResult

#: Manufacturer of the result objects and of their contributing-equipment item.
MANUFACTURER = "isl-rt"
#: The private coding scheme of the concepts DICOM has no code for (a "99" prefix marks a private scheme).
SCHEME = "99ISLRT"
#: Series numbers of the result series (one SR series and one parametric-map series per source series).
SR_SERIES_NUMBER = 9901
MAP_SERIES_NUMBER = 9902
#: File names of the results inside a series' result folder.
REPORT_FILE = "measurement-report-sr.dcm"
MAP_FILE = "heat-map-pm.dcm"

SCAN_SCORE = hd.sr.CodedConcept("scan-score", SCHEME, "ISL scan score")
SLICE_SCORE = hd.sr.CodedConcept("slice-score", SCHEME, "ISL slice score")
TOP_SLICE_SCORE = hd.sr.CodedConcept("top-slice-score", SCHEME, "ISL slice score of the top slice")
APDS = hd.sr.CodedConcept("apds", SCHEME, "Average pixel disorder score")
THRESHOLD = hd.sr.CodedConcept("threshold", SCHEME, "ISL scan score threshold")
SLICE_THRESHOLD = hd.sr.CodedConcept("slice-threshold", SCHEME, "ISL slice score threshold")
HEAT = hd.sr.CodedConcept("heat", SCHEME, "ISL heat map")
#: the finding of a slice the method could not judge (no cranial cavity found): no score, not "normal"
NOT_ASSESSED = hd.sr.CodedConcept("not-assessed", SCHEME, "Not assessed: no cranial cavity found")
ALGORITHM_FAMILY = hd.sr.CodedConcept("isl", SCHEME, "Inverse supervised learning")

# Type 2 Patient and Study attributes highdicom copies from the first source slice; a source
# without them gets them empty, which is what type 2 means.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")


@dataclass(frozen=True)
class Algorithm:
    """Who made a result: the bundle (name and manifest hash) and the isl-rt version."""

    bundle: str
    manifest_sha256: str
    version: str

    @property
    def device_uid(self) -> str:
        """A UID for this isl-rt version running this bundle: the same inputs give the same UID,
        and any change to the bundle's manifest (networks, centre, threshold) gives another."""
        return str(generate_uid(entropy_srcs=["isl-rt device", self.version, self.manifest_sha256]))

    @property
    def software_versions(self) -> list[str]:
        # the bundle name last and at most 63 characters: an odd-length value gets a pad space
        return [self.manifest_sha256, f"isl-rt {self.version}", self.bundle[:63]]

    def contributing_equipment(self) -> hd.ContributingEquipment:
        """The IHE AI Results contributing-equipment item: processing equipment with
        manufacturer, model name (the bundle), software versions and Device UID."""
        item = hd.ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=self.bundle[:64],
            software_versions=self.software_versions,
            contribution_datetime=datetime.datetime.now(),
            contribution_description="Inverse supervised learning: scan score and heat map",
        )
        item.DeviceUID = self.device_uid  # highdicom has no argument for it; the macro has the attribute
        return item

    def new_object(self, series_number: int, what: str) -> dict[str, Any]:
        """What every result object gets: new series and instance UIDs, a series number and
        description, and this algorithm as its equipment (General Equipment and Contributing
        Equipment)."""
        return {
            "series_instance_uid": generate_uid(),
            "series_number": series_number,
            "sop_instance_uid": generate_uid(),
            "instance_number": 1,
            "series_description": f"isl-rt {what} ({self.bundle})"[:64],
            "manufacturer": MANUFACTURER,
            "manufacturer_model_name": self.bundle[:64],
            "software_versions": self.software_versions,  # a list: pydicom refuses a tuple for LO
            "device_serial_number": self.manifest_sha256[:16],
            "contributing_equipment": [self.contributing_equipment()],
        }

    def identification(self) -> hd.sr.AlgorithmIdentification:
        """TID 4019 algorithm identification: the bundle, the isl-rt version, the manifest hash."""
        return hd.sr.AlgorithmIdentification(
            name=self.bundle,
            version=f"isl-rt {self.version}",
            parameters=[f"manifest sha256 {self.manifest_sha256}"],
            family=ALGORITHM_FAMILY,
            manufacturer=MANUFACTURER,
        )


def algorithm_of(bundle: "Bundle") -> Algorithm:
    from isl_rt import __version__
    from isl_rt.bundle import sha256_file

    return Algorithm(bundle.manifest.name, sha256_file(bundle.root / "manifest.json"), __version__)


def read_sources(files: Sequence[Path]) -> list[Dataset]:
    """The headers of a series' slice files (no pixel data), in the given order."""
    sources = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # pydicom raises many types on damaged files
            raise InputError(f"Cannot read {path} again to write its DICOM results: {err}.") from None
        for keyword in _TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
        sources.append(ds)
    return sources


def _number(name: hd.sr.CodedConcept, value: float, unit: object, images: Sequence[Dataset] = ()) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=name,
        value=float(value),
        unit=unit,
        referenced_images=[hd.sr.SourceImageForMeasurement.from_source_image(ds) for ds in images] or None,
    )


def measurement_report(sources: Sequence[Dataset], result: "SeriesResult", algorithm: Algorithm) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 measurement report of one scored series (see the module docstring)."""
    scores = result.scores
    top = scores.top_slice
    if top is None:  # score_item rejects such a series before its results are written
        raise InputError("No slice of this series was scored: there is no result to report.")
    series = [
        _number(SCAN_SCORE, scores.scan_score, codes.UCUM.NoUnits),
        _number(TOP_SLICE_SCORE, scores.slice_scores[top], codes.UCUM.NoUnits, [sources[top]]),
        _number(APDS, scores.apds[top], codes.UCUM.NoUnits, [sources[top]]),
    ]
    evaluations = []
    if result.threshold is not None:
        series.append(_number(THRESHOLD, result.threshold, codes.UCUM.NoUnits))
        flagged = scores.scan_score > result.threshold
        evaluations.append(hd.sr.QualitativeEvaluation(codes.SCT.Finding, codes.SCT.Abnormal if flagged else codes.DCM.NoAbnormality))
    if result.healthy_percentile is not None:
        series.append(_number(codes.DCM.PercentileRankingOfMeasurement, result.healthy_percentile, codes.UCUM.Percent))
    groups = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="series"),
            algorithm_id=algorithm.identification(),
            finding_sites=[hd.sr.FindingSite(codes.SCT.Head)],
            measurements=series,
            qualitative_evaluations=evaluations or None,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in sources],
        )
    ]
    for i, ds in enumerate(sources):
        if scores.reason(i):  # not scored: no number, and a finding that says it was not assessed
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"slice {i}"),
                    algorithm_id=algorithm.identification(),
                    qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.SCT.Finding, NOT_ASSESSED)],
                    source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)],
                )
            )
            continue
        measurements = [_number(SLICE_SCORE, scores.slice_scores[i], codes.UCUM.NoUnits),
                        _number(APDS, scores.apds[i], codes.UCUM.NoUnits)]
        slice_flag = None
        if result.slice_threshold is not None:
            measurements.append(_number(SLICE_THRESHOLD, result.slice_threshold, codes.UCUM.NoUnits))
            abnormal = scores.slice_scores[i] > result.slice_threshold
            slice_flag = [hd.sr.QualitativeEvaluation(codes.SCT.Finding, codes.SCT.Abnormal if abnormal else codes.DCM.NoAbnormality)]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"slice {i}"),
                algorithm_id=algorithm.identification(),
                measurements=measurements,
                qualitative_evaluations=slice_flag,
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)],
            )
        )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid, name=f"isl-rt {algorithm.bundle}"[:64], manufacturer_name=MANUFACTURER,
            model_name=algorithm.bundle[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ComputedTomographyOfHead,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=list(sources),
        content=report,
        is_complete=True,
        coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name="isl-rt concepts", responsible_organization=MANUFACTURER)],
        **algorithm.new_object(SR_SERIES_NUMBER, "scan score"),
    )


def heat_map(sources: Sequence[Dataset], heat: np.ndarray, algorithm: Algorithm) -> hd.pm.ParametricMap:
    """A Parametric Map of ``heat`` (float32 [N, rows, columns], slice i on ``sources[i]``)."""
    heat = np.ascontiguousarray(heat, dtype=np.float32)
    top = float(heat.max()) if heat.size and heat.max() > 0 else 1.0  # the value range and the window
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ISL_HEAT",
        lut_explanation="ISL heat map: enhanced difference image",
        unit=codes.UCUM.NoUnits,
        value_range=(0.0, top),
        slope=1.0,
        intercept=0.0,
        quantity_definition=HEAT,
    )
    pmap = hd.pm.ParametricMap(
        source_images=list(sources),
        pixel_array=heat,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # LINEAR_EXACT: the window spans the map's values exactly, and may be narrower than 1
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=top / 2, window_width=top,
                                                         voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT)],
        content_label="ISL_HEAT",
        content_description=f"isl-rt heat map ({algorithm.bundle})"[:64],
        **algorithm.new_object(MAP_SERIES_NUMBER, "heat map"),
    )
    # General Series: the body part of the source series (highdicom does not copy it); without it
    # Laterality (type 2C) would be required, as for a paired structure.
    pmap.BodyPartExamined = str(sources[0].get("BodyPartExamined") or "HEAD")
    return pmap


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class DicomResultWriter:
    """Writes the SR and the parametric map of each scored series to ``<folder>/<series>/``.

    A result writer for :func:`isl_rt.pipeline.scan_directory`; :meth:`write` returns the files.
    """

    def __init__(self, folder: Path, algorithm: Algorithm) -> None:
        self.folder = Path(folder)
        self.algorithm = algorithm

    def write(self, result: "SeriesResult") -> list[Path]:
        if result.kind != "hu":  # an image series (a bundle that reads both kinds) has no DICOM slices to refer to
            return []
        sources = read_sources(result.files)
        try:
            report = measurement_report(sources, result, self.algorithm)
            pmap = heat_map(sources, result.heat, self.algorithm)
        except ValueError as err:  # highdicom's checks of the sources (geometry, UIDs, value lengths)
            raise InputError(f"The DICOM results of series {result.series_uid} cannot be built from its slices: {str(err).rstrip('.')}.") from None
        out = self.folder / safe_name(result.series_uid)
        written = []
        for name, ds in ((REPORT_FILE, report), (MAP_FILE, pmap)):
            write_atomic(out / name, _encode(ds))
            written.append(out / name)
        return written
