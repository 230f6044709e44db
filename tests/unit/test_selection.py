"""The synthetic selection set: labelled, balanced, deterministic, disjoint from training's."""

import numpy as np

from pipeline.config import AnomalyConfig
from pipeline.selection import (
    MIN_ANOMALOUS,
    _candidates,
    detection_quality,
    synthetic_validation_set,
)


def _good(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((n, 32, 32, 1)) * 40 + 100).astype(np.uint8)


def test_each_good_image_is_kept_clean_and_small_sets_get_more_anomalous_copies():
    good = _good(10)
    sset = synthetic_validation_set(good, AnomalyConfig(), seed=0)
    assert len(sset.images) == 10 + 10 * int(np.ceil(MIN_ANOMALOUS / 10))
    np.testing.assert_array_equal(sset.images[:10], good)
    assert not sset.labels[:10].any() and sset.labels[10:].mean() > 0.9
    assert sset.masks.dtype == bool
    assert (sset.masks.reshape(len(sset.masks), -1).any(axis=1) == sset.labels).all()


def test_same_seed_same_set_other_seed_other_anomalies():
    good = _good(40)
    a = synthetic_validation_set(good, AnomalyConfig(), seed=0)
    b = synthetic_validation_set(good, AnomalyConfig(), seed=0)
    c = synthetic_validation_set(good, AnomalyConfig(), seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.masks, c.masks)


def test_a_perfect_map_scores_one_and_a_constant_map_one_half():
    sset = synthetic_validation_set(_good(40), AnomalyConfig(), seed=0)
    perfect = sset.masks.astype(np.float32)
    q = detection_quality(sset, perfect.reshape(len(perfect), -1).max(axis=1), perfect)
    assert q["image_auroc"] == 1.0 and q["pixel_auroc"] == 1.0 and q["objective"] == 1.0
    flat = np.zeros_like(perfect)
    q = detection_quality(sset, flat.reshape(len(flat), -1).max(axis=1), flat)
    assert q["objective"] == 0.5


def test_fusion_candidates_are_normalised_and_unique():
    two = _candidates(2)
    assert (0.5, 0.5) in two and (1.0, 0.0) in two and (0.0, 1.0) in two
    assert (0.333333, 0.666667) in two  # from (0.5, 1.0)
    assert len(two) == len(set(two)) == 5
    assert all(abs(sum(c) - 1) < 1e-5 for c in _candidates(3))
