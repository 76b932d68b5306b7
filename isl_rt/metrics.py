"""Detection metrics on scan scores: AUC with ties, ROC, the balanced operating threshold and
bootstrap confidence intervals by the paper's protocol (1000 resamples of 30% of the scans).

Labels are 1 for a scan with a disorder and 0 for a healthy one; a higher score means more
likely abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isl_rt.errors import InputError


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise InputError(f"{y.size} labels but {s.size} scores.")
    if not np.isin(y, (0, 1)).all():
        raise InputError("Labels must be 0 (healthy) or 1 (disorder).")
    if not np.isfinite(s).all():
        raise InputError("Scores must be finite numbers.")
    if y.min(initial=1) == y.max(initial=0):
        raise InputError(
            "AUC needs both healthy (0) and disorder (1) scans; this set has only "
            f"{'disorder' if y.size and y[0] == 1 else 'healthy'} scans ({y.size})."
        )
    return y, s


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U / (n1·n0)); ties count one half."""
    y, s = _check(labels, scores)
    ranks = _average_ranks(s)
    n1 = int(y.sum())
    n0 = y.size - n1
    u = ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


@dataclass(frozen=True)
class Roc:
    """ROC points for decreasing thresholds: a scan is positive when score >= threshold."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray


def roc(labels: np.ndarray, scores: np.ndarray) -> Roc:
    y, s = _check(labels, scores)
    thresholds = np.unique(s)[::-1]
    positives = s[None, :] >= thresholds[:, None]
    n1 = y.sum()
    n0 = y.size - n1
    sensitivity = (positives & (y == 1)).sum(axis=1) / n1
    specificity = 1.0 - (positives & (y == 0)).sum(axis=1) / n0
    return Roc(
        thresholds=np.r_[np.inf, thresholds],
        sensitivity=np.r_[0.0, sensitivity],
        specificity=np.r_[1.0, specificity],
    )


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    sensitivity: float
    specificity: float

    @property
    def harmonic_mean(self) -> float:
        total = self.sensitivity + self.specificity
        return 0.0 if total == 0 else 2 * self.sensitivity * self.specificity / total


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingPoint:
    """Sensitivity and specificity when scans with score > threshold are flagged (the runtime's rule)."""
    y, s = _check(labels, scores)
    flagged = s > threshold
    return OperatingPoint(
        threshold=float(threshold),
        sensitivity=float(flagged[y == 1].mean()),
        specificity=float((~flagged[y == 0]).mean()),
    )


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> OperatingPoint:
    """The threshold maximising the harmonic mean of sensitivity and specificity (the paper's
    operating point). Returned as a cut for the rule score > threshold: the midpoint between
    the chosen ROC score and the next lower distinct score."""
    curve = roc(labels, scores)
    sens, spec = curve.sensitivity, curve.specificity
    with np.errstate(invalid="ignore", divide="ignore"):
        hm = np.where(sens + spec > 0, 2 * sens * spec / (sens + spec), 0.0)
    best = int(np.argmax(hm))
    cuts = curve.thresholds
    if best == 0:
        threshold = float(cuts[1])  # flag nothing: cut at the highest score
    elif best + 1 < cuts.size:
        threshold = float((cuts[best] + cuts[best + 1]) / 2.0)
    else:
        threshold = float(cuts[best] - max(1e-12, abs(cuts[best]) * 1e-9))
    return OperatingPoint(threshold=threshold, sensitivity=float(sens[best]), specificity=float(spec[best]))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    resamples: int


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    resamples: int = 1000,
    fraction: float = 0.3,
    seed: int = 0,
    confidence: float = 0.95,
    groups: np.ndarray | None = None,
) -> Interval:
    """Percentile interval of the AUC over ``resamples`` draws of ``fraction`` of the scans
    (without replacement within a draw, the paper's protocol). Draws holding one class only
    are skipped and not counted.

    With ``groups`` (one id per item, e.g. the series of each slice) a draw takes ``fraction`` of
    the groups and all their items, so items that are alike because they share a group (the
    slices of one patient) do not narrow the interval as if they were independent."""
    y, s = _check(labels, scores)
    if not 0 < fraction <= 1:
        raise InputError(f"--fraction must be in (0, 1], got {fraction}.")
    if resamples < 1:
        raise InputError(f"--bootstrap must be at least 1, got {resamples}.")
    if groups is None:
        members = None
        units, least = y.size, 2
    else:
        ids = np.asarray(groups).ravel()
        if ids.size != y.size:
            raise InputError(f"{ids.size} group ids but {y.size} scores.")
        _, inverse = np.unique(ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        units, least = len(members), 1
    size = min(units, max(least, int(round(fraction * units))))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        chosen = rng.choice(units, size=size, replace=False)
        pick = chosen if members is None else np.concatenate([members[g] for g in chosen])
        if y[pick].min() == y[pick].max():
            continue
        values.append(auc(y[pick], s[pick]))
    if not values:
        return Interval(float("nan"), float("nan"), 0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), len(values))


# ---- localisation ---------------------------------------------------------------------------------
class PixelAuc:
    """Exact AUROC of float16 heat values (>= 0) of many pixels, accumulated slice by slice.

    Non-negative float16 values order as their bit patterns, so two histograms over the 2¹⁵
    patterns (positives, negatives) hold everything the Mann–Whitney statistic needs, with ties
    counting one half: memory stays constant however many pixels are added.
    """

    def __init__(self) -> None:
        self.positive = np.zeros(1 << 15, dtype=np.int64)
        self.negative = np.zeros(1 << 15, dtype=np.int64)

    @staticmethod
    def _bins(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float16).ravel()
        if v.size and not (np.isfinite(v).all() and v.min() >= 0):
            raise InputError("Heat-map values must be finite and >= 0.")
        return (v.view(np.uint16) & 0x7FFF).astype(np.intp)  # -0.0 -> 0.0

    def add(self, heat: np.ndarray, lesion: np.ndarray) -> None:
        """Add pixels: ``heat`` values and ``lesion`` (bool, same shape) saying which are positive."""
        lesion = np.asarray(lesion, dtype=bool)
        bins = self._bins(heat)
        flat = lesion.ravel()
        self.positive += np.bincount(bins[flat], minlength=1 << 15)
        self.negative += np.bincount(bins[~flat], minlength=1 << 15)

    @property
    def n_positive(self) -> int:
        return int(self.positive.sum())

    @property
    def n_negative(self) -> int:
        return int(self.negative.sum())

    def auc(self) -> float:
        """The AUROC; NaN without positives or without negatives."""
        p, n = self.n_positive, self.n_negative
        if p == 0 or n == 0:
            return float("nan")
        below = np.cumsum(self.negative) - self.negative  # negatives strictly below each bin
        u = float(np.sum(self.positive * (below + 0.5 * self.negative)))
        return u / (float(p) * float(n))


def heat_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heat map's maximum lies inside ``mask`` (numpy's first maximum in row-major
    order); a heat map that is 0 everywhere localises nothing and is a miss."""
    return heat_distance(heat, mask) == 0.0


def heat_distance(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """Pixels from the heat map's maximum (the one :func:`heat_hit` takes) to the nearest pixel of
    ``mask`` (Euclidean, between pixel centres): 0 when it lies inside; None when the heat map is
    0 everywhere (no maximum) or the mask is empty."""
    h = np.asarray(heat, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if h.size == 0 or not h.max() > 0 or not m.any():
        return None
    at = np.array(np.unravel_index(int(np.argmax(h)), h.shape))
    if m[tuple(at)]:
        return 0.0
    return float(np.sqrt(((np.argwhere(m) - at) ** 2).sum(axis=1).min()))
