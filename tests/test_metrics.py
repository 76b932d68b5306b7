"""Metrics against scikit-learn and hand-computed cases."""

import numpy as np
import pytest

from isl_rt import metrics
from isl_rt.errors import InputError

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes many ties
    assert metrics.auc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_cases():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0  # perfect separation
    assert metrics.auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    # one healthy at 0.2, disorder at 0.1 (below), 0.2 (tie), 0.3 (above): (0 + 0.5 + 1) / 3
    assert metrics.auc([0, 1, 1, 1], [0.2, 0.1, 0.2, 0.3]) == pytest.approx(0.5)


def test_one_class_only_is_a_clear_error():
    with pytest.raises(InputError, match="only healthy"):
        metrics.auc([0, 0, 0], [1, 2, 3])
    with pytest.raises(InputError, match="only disorder"):
        metrics.auc([1, 1], [1, 2])


def test_roc_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = rng.normal(size=60) + y
    curve = metrics.roc(y, s)
    fpr, tpr, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(curve.sensitivity, tpr)
    np.testing.assert_allclose(1 - curve.specificity, fpr)


def test_balanced_threshold_separates_perfectly_and_is_consistent():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    point = metrics.balanced_threshold(y, s)
    assert 0.3 < point.threshold < 0.8
    assert (point.sensitivity, point.specificity) == (1.0, 1.0)
    check = metrics.at_threshold(y, s, point.threshold)
    assert (check.sensitivity, check.specificity) == (1.0, 1.0)


def test_balanced_threshold_maximises_harmonic_mean():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + 1.5 * y
    point = metrics.balanced_threshold(y, s)
    again = metrics.at_threshold(y, s, point.threshold)
    assert again.sensitivity == pytest.approx(point.sensitivity)
    assert again.specificity == pytest.approx(point.specificity)
    for t in np.quantile(s, np.linspace(0.05, 0.95, 19)):
        assert metrics.at_threshold(y, s, t).harmonic_mean <= point.harmonic_mean + 1e-12


def test_bootstrap_interval_contains_the_auc_and_is_repeatable():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    full = metrics.auc(y, s)
    ci = metrics.bootstrap_auc(y, s, resamples=300, seed=1)
    assert ci.low < full < ci.high and ci.resamples == 300
    assert ci == metrics.bootstrap_auc(y, s, resamples=300, seed=1)
    with pytest.raises(InputError, match="fraction"):
        metrics.bootstrap_auc(y, s, fraction=0)
