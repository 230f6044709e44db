"""Two-sample tests of a batch against the reference ("Failing Loudly", Rabanser et al. 2019).

Each function returns the statistic, a p-value and an effect size; the Bonferroni levels and
the overall decision are made by the caller, which knows how many tests it runs.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass
class TestResult:
    statistic: float
    p_value: float
    effect_size: float | None


def standardised_difference(reference: np.ndarray, batch: np.ndarray) -> float | None:
    """(mean batch - mean reference) / std reference: how far, in reference spreads."""
    spread = float(np.std(reference))
    if spread <= 0:
        return None
    return float((np.mean(batch) - np.mean(reference)) / spread)


def ks_test(reference: np.ndarray, batch: np.ndarray) -> TestResult:
    """Kolmogorov-Smirnov on one variable; the effect is the standardised mean difference."""
    if np.ptp(np.concatenate([reference, batch])) == 0:  # all equal: nothing can have moved
        return TestResult(0.0, 1.0, 0.0)
    result = stats.ks_2samp(reference, batch)
    return TestResult(
        float(result.statistic), float(result.pvalue), standardised_difference(reference, batch)
    )


def median_bandwidth(x: np.ndarray) -> float:
    """Median pairwise distance of the pooled sample (the usual RBF bandwidth heuristic)."""
    d2 = _squared_distances(x)
    upper = d2[np.triu_indices(len(x), k=1)]
    median = float(np.sqrt(np.median(upper))) if upper.size else 1.0
    return median if median > 0 else 1.0


def _squared_distances(x: np.ndarray) -> np.ndarray:
    sq = (x**2).sum(axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)


def mmd_permutation_test(
    reference: np.ndarray, batch: np.ndarray, permutations: int, seed: int = 0
) -> TestResult:
    """MMD^2 (biased estimate, RBF kernel, median bandwidth) with a permutation p-value.

    With a sign vector s (+1/n on reference rows, -1/m on batch rows), MMD^2 = s' K s, so all
    permutations are one matrix product. The effect is MMD^2 over its median under the null.
    """
    pooled = np.concatenate([reference, batch]).astype(np.float64)
    n, m = len(reference), len(batch)
    sigma = median_bandwidth(pooled)
    kernel = np.exp(-_squared_distances(pooled) / (2 * sigma**2))
    signs = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(signs @ kernel @ signs)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(signs) for _ in range(permutations)])
    null = ((shuffled @ kernel) * shuffled).sum(axis=1)
    p_value = (1 + int((null >= observed).sum())) / (1 + permutations)
    median_null = float(np.median(null))
    effect = observed / median_null if median_null > 0 else None
    return TestResult(observed, p_value, effect)


def flag_rate_test(flags: np.ndarray, expected_rate: float) -> TestResult:
    """One-sided binomial test: are more frames flagged than the threshold's budget allows?"""
    k, n = int(flags.sum()), len(flags)
    result = stats.binomtest(k, n, expected_rate, alternative="greater")
    rate = k / n
    return TestResult(rate, float(result.pvalue), rate / expected_rate)


@dataclass
class ClassifierResult:
    auc: float | None
    batch_probability: np.ndarray  # out-of-fold P(batch) for each batch row
    folds: int


def domain_classifier(
    reference: np.ndarray, batch: np.ndarray, folds: int, seed: int = 0
) -> ClassifierResult:
    """Logistic regression, reference (0) vs batch (1), scored out of fold.

    An AUC near 0.5 means the two are indistinguishable; the batch frames with the highest
    out-of-fold probability are the ones that typify the shift.
    """
    folds = min(folds, len(batch), len(reference))
    if folds < 2:
        return ClassifierResult(None, np.full(len(batch), 0.5), folds)
    x = np.concatenate([reference, batch])
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(batch))])
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, y, cv=splitter, method="predict_proba")[:, 1]
    return ClassifierResult(float(roc_auc_score(y, proba)), proba[len(reference) :], folds)
