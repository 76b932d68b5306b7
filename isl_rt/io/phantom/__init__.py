"""Synthetic head-CT phantom cohort: healthy heads and heads with known disorders, as DICOM.

No real CT can be downloaded where isl-rt is developed, so the demo, the tests, the benchmarks
and the training of the models all run on this phantom.  Each study is a full axial stack
(28-36 slices of 5 mm, 512 x 512, 0.40-0.50 mm pixels) from the skull base to the vertex with
anatomy that varies the way real heads do (size, shape, rotation, skull and scalp thickness,
grey/white/CSF densities, gyral pattern, ventricle size with age, sinuses, normal
calcifications) and acquisitions that vary the way scanners do (kernel sharpness, noise,
beam-hardening streaks, padding outside the reconstruction circle, vendor DICOM encodings).

Public API::

    DISORDERS: dict[str, DisorderSpec]      # 18 disorder types, urgency, sizes, typical HU
    generate_study(seed, disorder=None, size_class=None) -> PhantomStudy   # pure, in memory
    write_study(study, folder, *, study_uid=None, series_uid=None) -> SeriesRecord
    write_cohort(out, scans, abnormal_fraction, seed) -> CohortSummary
    simple_head_slice(h, w=None, seed=0, noise_hu=4.0) -> int16 [h, w]   # one schematic slice

The same seed with and without a disorder gives the same head and the same noise, so a study
and its healthy twin differ only by the lesion.  Module layout: ``_anatomy`` (healthy head),
``_disorders`` (registry and lesions), ``_study`` (assembly, blur, noise), ``_dicom``
(writer), ``_cohort`` (cohort folder), ``_geometry`` (grids and shapes).
"""

from isl_rt.io.phantom._cohort import LABEL_COLUMNS, CohortSummary, plan_cohort, write_cohort
from isl_rt.io.phantom._dicom import SeriesRecord, write_study
from isl_rt.io.phantom._disorders import DISORDERS, SIZE_CLASSES, URGENCIES, DisorderSpec
from isl_rt.io.phantom._simple import simple_head_slice
from isl_rt.io.phantom._study import PhantomStudy, generate_study

__all__ = [
    "DISORDERS",
    "LABEL_COLUMNS",
    "SIZE_CLASSES",
    "URGENCIES",
    "CohortSummary",
    "DisorderSpec",
    "PhantomStudy",
    "SeriesRecord",
    "generate_study",
    "plan_cohort",
    "simple_head_slice",
    "write_cohort",
    "write_study",
]
