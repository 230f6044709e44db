import math

import numpy as np
import pytest

from pipeline.calibration import calibrate, conformal_threshold, min_calibration_images
from pipeline.errors import DataError


def test_threshold_is_the_conformal_order_statistic():
    scores = np.arange(1, 100, dtype=float)  # n = 99
    # k = ceil(100 * 0.99) = 99 -> the largest score
    assert conformal_threshold(scores, 0.01) == 99.0
    # k = ceil(100 * 0.9) = 90
    assert conformal_threshold(scores[::-1].copy(), 0.1) == 90.0


def test_too_few_images_for_the_budget_is_refused():
    assert min_calibration_images(0.01) == 99
    with pytest.raises(DataError, match="needs at least 99"):
        conformal_threshold(np.zeros(98), 0.01)


def test_false_alarm_rate_holds_on_new_good_scores():
    """Marginal guarantee: averaged over calibration draws, P(new > t) <= alpha."""
    rng = np.random.default_rng(0)
    alpha, n = 0.05, 59
    rates = []
    for _ in range(400):
        t = conformal_threshold(rng.standard_normal(n), alpha)
        rates.append(np.mean(rng.standard_normal(2000) > t))
    assert np.mean(rates) <= alpha + 0.005
    assert np.mean(rates) > alpha / 3  # not trivially conservative


def test_calibrate_lists_supported_budgets_only():
    scores = np.random.default_rng(1).random(120)
    summary = calibrate(scores, 0.01, [0.001, 0.05, 0.1])
    assert summary.n_calibration == 120
    assert "0.001" not in summary.thresholds  # needs 999 images
    assert summary.thresholds["0.01"] == summary.threshold
    assert summary.thresholds["0.1"] <= summary.thresholds["0.05"] <= summary.threshold
    assert math.isfinite(summary.threshold)
