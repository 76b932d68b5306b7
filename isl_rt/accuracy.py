"""The accuracy check of a reduced precision: a candidate backend pair (TensorRT FP16, OpenVINO
BF16 or INT8) against FP32 ONNX Runtime on the CPU, both scoring through the one
:class:`isl_rt.pipeline.Scorer` (so the check judges the flow ``scan`` runs, cranial cavity
included), judged by :mod:`isl_rt.precision.compare`:

- per output, on the first series' slices: ``inpainted`` (the DeDN on identical fan-out
  batches), ``embedding`` (the DRN on the reference's difference images, as the DRN saw them)
  and ``slice_score`` (end to end, each pair on its own x̂, x_dif and embeddings);
- per scan, on a phantom cohort scored by both pairs in memory: every scan score within 1 %,
  AUC within 0.002. Any other scored cohort (two ``scores.csv`` of real patients, say) goes
  through :func:`compare_score_files`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from isl_rt import kernels
from isl_rt.backends.base import DEDN_BATCH
from isl_rt.errors import InputError
from isl_rt.pipeline import ScanParams, Scorer, params_from_bundle
from isl_rt.precision.compare import (
    DEFAULT_TOLERANCES,
    OutputComparison,
    ScanComparison,
    ScanTolerance,
    compare_arrays,
    compare_scan_scores,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.backends import BackendPair
    from isl_rt.bundle import Bundle

#: seed of the phantom cohort checks score (never the demo's, the benchmarks' or the INT8 calibration's)
CHECK_SEED = 8_100_000


@dataclass(frozen=True)
class CheckVolume:
    """One series of a check cohort: its id, label (0 healthy, 1 disorder) and HU slices."""

    uid: str
    label: int
    hu: np.ndarray


def phantom_cohort(series: int, *, slices: int = 0, seed: int = CHECK_SEED) -> list[CheckVolume]:
    """``series`` phantom series (half with a disorder, all 18 types in turn, as ``isl-rt phantom``),
    generated in memory; ``slices`` > 0 keeps that many slices around the lesion's or the middle
    of the head (a shorter check of the same flow), 0 keeps them all."""
    from isl_rt.io.phantom import generate_study, plan_cohort

    if series < 1:
        raise InputError(f"The check cohort needs at least one series, got {series}.")
    cohort = []
    for planned in plan_cohort(series, 0.5, seed):
        study = generate_study(planned.seed, planned.disorder, planned.size_class)
        hu = study.hu
        if slices > 0 and hu.shape[0] > slices:
            per_slice = study.lesion_mask.reshape(hu.shape[0], -1).sum(axis=1)
            centre = int(np.argmax(per_slice)) if per_slice.any() else hu.shape[0] // 2
            first = min(max(0, centre - slices // 2), hu.shape[0] - slices)
            hu = hu[first:first + slices]
        cohort.append(CheckVolume(planned.folder, study.label, np.ascontiguousarray(hu)))
    return cohort


@dataclass
class CheckReport:
    """Everything one accuracy check found; :attr:`passed` is the verdict ``auto`` reads."""

    backend: str
    precision: str
    description: str
    outputs: list[OutputComparison]
    scans: ScanComparison
    cohort: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.outputs) and self.scans.passed

    @property
    def reason(self) -> str:
        failed = [f"{c.name}: {c.reason}" for c in self.outputs if not c.passed]
        if not self.scans.passed:
            failed.append(f"scans: {self.scans.reason}")
        return "; ".join(failed)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "description": self.description,
                "passed": self.passed, "reason": self.reason, "outputs": [c.to_dict() for c in self.outputs],
                "scans": self.scans.to_dict(), "cohort": self.cohort, "seconds": round(self.seconds, 1),
                "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **self.extra}


def compare_outputs(params: ScanParams, candidate: "BackendPair", reference: "BackendPair", hu: np.ndarray, precision: str,
                    *, dedn_batch: int = DEDN_BATCH) -> list[OutputComparison]:
    """Per-output comparison of two active pairs on the slices of ``hu`` (see the module text)."""
    ref = Scorer(params, reference.dedn, reference.drn, dedn_batch=dedn_batch).score(hu)
    cand = Scorer(params, candidate.dedn, candidate.drn, dedn_batch=dedn_batch).score(hu)
    groups = params.partition.groups
    n = max(1, min(ref.x.shape[0], dedn_batch // groups))
    edges = kernels.canny(ref.x[:n], params.canny_low, params.canny_high, sigma=params.canny_sigma)
    batch = kernels.fanout(ref.x[:n], edges, params.partition.group_map(params.size), groups)
    ref_xhat = np.asarray(reference.dedn.infer({params.dedn_input: batch})[params.dedn_output], np.float32)
    cand_xhat = np.asarray(candidate.dedn.infer({params.dedn_input: batch})[params.dedn_output], np.float32)
    embed_ref = np.asarray(reference.drn.infer({params.drn_input: ref.difference})[params.drn_output], np.float32)
    embed_cand = np.asarray(candidate.drn.infer({params.drn_input: ref.difference})[params.drn_output], np.float32)
    pairs = {"inpainted": (cand_xhat, ref_xhat), "embedding": (embed_cand, embed_ref),
             "slice_score": (cand.slice_scores, ref.slice_scores)}
    return [compare_arrays(name, a, b, DEFAULT_TOLERANCES[(name, precision)]) for name, (a, b) in pairs.items()]


def score_cohort(params: ScanParams, pair: "BackendPair", cohort: list[CheckVolume], *, dedn_batch: int = DEDN_BATCH) -> dict[str, float]:
    """Scan score of every series of ``cohort`` with an active pair."""
    scorer = Scorer(params, pair.dedn, pair.drn, dedn_batch=dedn_batch)
    return {v.uid: scorer.score(v.hu).scan_score for v in cohort}


def check_precision(bundle: "Bundle", candidate: "BackendPair", *, series: int = 12, slices: int = 8, seed: int = CHECK_SEED,
                    threads: int = 0, params: ScanParams | None = None, dedn_batch: int = DEDN_BATCH,
                    tolerance: ScanTolerance = ScanTolerance()) -> CheckReport:
    """Check ``candidate`` (not yet active) against ONNX Runtime FP32 on the CPU, per output and
    per scan on a phantom cohort of ``series`` series of ``slices`` slices (0 = whole series)."""
    from isl_rt.backends import open_backends

    started = time.perf_counter()
    params = params_from_bundle(bundle) if params is None else params
    cohort = phantom_cohort(series, slices=slices, seed=seed)
    with candidate, open_backends(bundle, "onnxruntime", threads=threads) as reference:
        outputs = compare_outputs(params, candidate, reference, cohort[0].hu, candidate.precision, dedn_batch=dedn_batch)
        ref_scores = score_cohort(params, reference, cohort, dedn_batch=dedn_batch)
        cand_scores = score_cohort(params, candidate, cohort, dedn_batch=dedn_batch)
    scans = compare_scan_scores(cand_scores, ref_scores, {v.uid: v.label for v in cohort}, tolerance)
    described = {"data": "phantom series (half with a disorder)", "series": series, "slices_per_series": slices or "all",
                 "seed": seed, "partition_groups": params.partition.groups,
                 "reference": "ONNX Runtime FP32, CPU"}
    return CheckReport(candidate.name, candidate.precision, candidate.description, outputs, scans, described,
                       time.perf_counter() - started)


def check_tensorrt(bundle: "Bundle", engine_dir: Path, *, series: int = 12, slices: int = 8) -> CheckReport:
    """:func:`check_precision` of the TensorRT engines in ``engine_dir``, at their tuned DeDN batch."""
    from isl_rt.backends.tensorrt import open_tensorrt_pair
    from isl_rt.backends.tensorrt_engines import load_engine_record

    record = load_engine_record(Path(engine_dir))
    return check_precision(bundle, open_tensorrt_pair(bundle, record), series=series, slices=slices,
                           dedn_batch=record.key.dedn_profile.opt)


def compare_score_files(candidate_csv: Path, reference_csv: Path, labels_csv: Path | None = None,
                        tolerance: ScanTolerance = ScanTolerance()) -> ScanComparison:
    """The scan-level check on any scored cohort: two ``scores.csv`` of the same series (the
    candidate precision's and FP32 ONNX Runtime's), with ``labels.csv`` for the AUC."""
    from isl_rt.evaluate import read_labels, read_score_rows

    def scores(path: Path) -> dict[str, float]:
        return {r["SeriesInstanceUID"]: float(r["scan_score"]) for r in read_score_rows(path) if r.get("status") == "ok"}

    labels = None
    if labels_csv is not None:
        labels = {uid: int(row["label"]) for uid, row in read_labels(labels_csv).items()}
    return compare_scan_scores(scores(candidate_csv), scores(reference_csv), labels, tolerance)
