"""Split-conformal thresholds from held-out good images only.

Guarantee: let the n calibration scores and a new good part's score be exchangeable (same
line and camera, and no calibration image used to fit anything the score depends on: the
model, the latent Gaussian and the map normalisation are fitted on other images). With
k = ceil((n + 1)(1 - alpha)) and t the k-th smallest calibration score,
P(score_new <= t) >= k / (n + 1) >= 1 - alpha, so a new good part is flagged
(score > t; for continuous scores ties have probability zero) with probability at most
alpha. The bound is marginal over the draw of the calibration set, and it needs
n >= 1/alpha - 1 images, else no calibration score is high enough to keep the promise.
"""

import math

import numpy as np

from data_contracts import CalibrationSummary
from pipeline.errors import DataError


def min_calibration_images(alpha: float) -> int:
    """Smallest n for which the conformal rank k = ceil((n+1)(1-alpha)) is <= n."""
    return math.ceil(1 / alpha - 1 - 1e-9)


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))-th smallest score; refuses budgets n cannot support."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if k > n:
        raise DataError(
            f"a false-alarm budget of {alpha} needs at least {min_calibration_images(alpha)} "
            f"held-out good images, only {n} are available: add good images, raise "
            "data.calib_fraction, or raise calibration.alpha"
        )
    return float(np.sort(scores)[k - 1])


def calibrate(scores: np.ndarray, alpha: float, budgets: list[float]) -> CalibrationSummary:
    """Threshold at `alpha` plus the thresholds for every budget the data can support."""
    threshold = conformal_threshold(scores, alpha)
    table = {}
    for budget in sorted(set(budgets) | {alpha}):
        if len(scores) >= min_calibration_images(budget):
            table[f"{budget:g}"] = conformal_threshold(scores, budget)
    return CalibrationSummary(
        alpha=alpha, n_calibration=len(scores), threshold=threshold, thresholds=table
    )
