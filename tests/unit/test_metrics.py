"""Metric functions against known answers and against sklearn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.metrics import (
    image_auroc,
    operating_point,
    pixel_auroc,
    pro_score,
    roc_curve_points,
)


def _random_regions(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Masks with one or two random rectangles in every other image."""
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(0, n, 2):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(2, 8, 2)
            masks[i, y : y + h, x : x + w] = True
    return masks


def _two_regions(low_half: float, normal_high_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Region A (scores 1.0) and region B (left half 1.0, right half `low_half`) in one image;
    a share of the normal pixels score 0.6, the rest 0.0."""
    masks = np.zeros((2, 20, 20), dtype=bool)
    maps = np.zeros((2, 20, 20), dtype=np.float32)
    masks[0, 2:6, 2:6] = True  # region A: 16 px
    maps[0, 2:6, 2:6] = 1.0
    masks[0, 10:14, 10:18] = True  # region B: 32 px
    maps[0, 10:14, 10:14] = 1.0
    maps[0, 10:14, 14:18] = low_half
    normal = np.flatnonzero(~masks.ravel())
    n_high = round(normal_high_share * normal.size)
    maps.reshape(-1)[normal[:n_high]] = 0.6
    return masks, maps


# image AUROC


def test_image_auroc_perfect_inverted_and_tied() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert image_auroc(labels, scores) == 1.0
    assert image_auroc(labels, -scores) == 0.0
    assert image_auroc(labels, np.ones(5)) == 0.5


def test_image_auroc_is_none_with_one_class() -> None:
    assert image_auroc(np.zeros(4), np.arange(4.0)) is None
    assert image_auroc(np.ones(4), np.arange(4.0)) is None


def test_image_auroc_rejects_misaligned_and_nan() -> None:
    with pytest.raises(ValueError):
        image_auroc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError):
        image_auroc(np.array([0, 1]), np.array([0.1, np.nan]))


# pixel AUROC


def test_pixel_auroc_perfect_and_inverted() -> None:
    masks = _random_regions(np.random.default_rng(0), 6, 32)
    maps = masks.astype(np.float32) + 0.5
    assert pixel_auroc(masks, maps) == 1.0
    assert pixel_auroc(masks, -maps) == 0.0
    assert pixel_auroc(masks, np.zeros_like(maps)) == 0.5


@pytest.mark.parametrize("decimals", [None, 1])  # continuous scores, and heavy ties
def test_pixel_auroc_matches_sklearn(decimals: int | None) -> None:
    rng = np.random.default_rng(1)
    masks = _random_regions(rng, 10, 32)
    maps = rng.random(masks.shape) + masks * 0.4
    if decimals is not None:
        maps = maps.round(decimals)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps.astype(np.float32)) == pytest.approx(expected, abs=1e-9)


def test_pixel_auroc_accepts_float64_maps() -> None:
    rng = np.random.default_rng(2)
    masks = _random_regions(rng, 4, 16)
    maps = rng.random(masks.shape) + masks
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-6)


def test_pixel_auroc_is_none_without_both_pixel_classes() -> None:
    maps = np.random.default_rng(3).random((2, 8, 8)).astype(np.float32)
    assert pixel_auroc(np.zeros((2, 8, 8), bool), maps) is None
    assert pixel_auroc(np.ones((2, 8, 8), bool), maps) is None
    assert pixel_auroc(np.zeros((0, 8, 8), bool), np.zeros((0, 8, 8), np.float32)) is None


def test_pixel_metrics_reject_bad_inputs() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc(masks, np.full((2, 8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="must be equal"):
        pro_score(masks, np.zeros((2, 8, 9), np.float32))


# PRO


def test_pro_of_a_perfect_map_is_one_and_of_an_inverted_map_zero() -> None:
    masks = _random_regions(np.random.default_rng(4), 8, 32)
    assert pro_score(masks, masks.astype(np.float32)) == pytest.approx(1.0)
    assert pro_score(masks, (~masks).astype(np.float32)) == pytest.approx(0.0)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.1])
def test_pro_of_a_random_map_is_half_the_fpr_limit(fpr_limit: float) -> None:
    rng = np.random.default_rng(5)
    masks = _random_regions(rng, 40, 64)
    maps = rng.random(masks.shape, dtype=np.float32)
    assert pro_score(masks, maps, fpr_limit=fpr_limit) == pytest.approx(fpr_limit / 2, abs=0.01)


def test_pro_one_region_fully_and_one_half_covered_is_three_quarters() -> None:
    # Thresholds in (0.6, 1] cover A fully and B half at FPR 0; 0.6 adds 40 % of normal
    # pixels (past the limit) and nothing of B: PRO is 0.75 over all of FPR 0..0.3.
    masks, maps = _two_regions(low_half=0.5, normal_high_share=0.4)
    assert pro_score(masks, maps) == pytest.approx(0.75)


def test_pro_counts_regions_not_pixels() -> None:
    masks, maps = _two_regions(low_half=0.5, normal_high_share=0.4)
    maps[0, 10:14, 10:18] = 0.5  # region B (32 px) now entirely below the normal pixels at 0.6
    # Pixel-weighted overlap would be 16/48; per region it is (1 + 0) / 2.
    assert pro_score(masks, maps) == pytest.approx(0.5)


def test_pro_steps_between_thresholds() -> None:
    # PRO 0.75 at FPR 0 (threshold 1), still 0.75 at FPR ~0.2 (threshold 0.6), then 1.0 once
    # the threshold reaches B's lower half (0.5) with FPR unchanged.
    masks, maps = _two_regions(low_half=0.5, normal_high_share=0.2)
    fpr = np.mean(maps[~masks] == 0.6)
    assert pro_score(masks, maps) == pytest.approx((fpr * 0.75 + (0.3 - fpr) * 1.0) / 0.3)


def test_pro_interpolates_the_curve_at_the_fpr_limit() -> None:
    # B's lower half ties with all normal pixels at 0: the curve runs straight from (0, 0.75)
    # to (1, 1), so PRO(0.3) = 0.825 and the area is 0.3 * (0.75 + 0.825) / 2.
    masks, maps = _two_regions(low_half=0.0, normal_high_share=0.0)
    assert pro_score(masks, maps) == pytest.approx((0.75 + 0.825) / 2)


def test_pro_regions_are_8_connected() -> None:
    masks = np.zeros((1, 6, 6), bool)
    maps = np.zeros((1, 6, 6), np.float32)
    masks[0, 0, 0:2] = True  # a horizontal pair ...
    masks[0, 1, 2] = True  # ... and a pixel touching it only at a corner: one region
    maps[0, 0, 0:2] = 1.0
    maps[0, 1, 2] = 0.5
    maps[0, 5, 5] = 0.75  # one normal pixel between the two: PRO 2/3 up to FPR 1/33
    # 4-connectivity would give two regions and PRO (1 + 0) / 2 there.
    fpr_step = 1 / 33
    area = fpr_step * (2 / 3) + (0.3 - fpr_step) * 1.0
    assert pro_score(masks, maps) == pytest.approx(area / 0.3)


def test_pro_is_none_without_regions_or_normal_pixels() -> None:
    maps = np.random.default_rng(6).random((2, 8, 8)).astype(np.float32)
    assert pro_score(np.zeros((2, 8, 8), bool), maps) is None
    assert pro_score(np.ones((2, 8, 8), bool), maps) is None


def test_pro_rejects_bad_parameters() -> None:
    masks, maps = _two_regions(low_half=0.5, normal_high_share=0.4)
    with pytest.raises(ValueError):
        pro_score(masks, maps, fpr_limit=0.0)
    with pytest.raises(ValueError):
        pro_score(masks, maps, n_thresholds=1)


# operating point and ROC points


def test_operating_point_counts() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.5, 0.6, 0.5, 0.7, 0.05])
    point = operating_point(labels, scores, 0.5)  # a score equal to the threshold is flagged
    assert point.threshold == 0.5
    assert point.precision == pytest.approx(2 / 4)
    assert point.recall == pytest.approx(2 / 3)
    assert point.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert point.false_alarm_rate == pytest.approx(2 / 4)


def test_operating_point_with_nothing_flagged() -> None:
    point = operating_point(np.array([0, 1]), np.array([0.1, 0.2]), 1.0)
    assert point.precision is None
    assert point.recall == 0.0
    assert point.f1 == 0.0
    assert point.false_alarm_rate == 0.0


def test_operating_point_without_defects_or_without_good_images() -> None:
    only_good = operating_point(np.array([0, 0]), np.array([0.1, 0.9]), 0.5)
    assert only_good.recall is None and only_good.f1 is None
    assert only_good.precision == 0.0 and only_good.false_alarm_rate == 0.5
    only_defects = operating_point(np.array([1, 1]), np.array([0.1, 0.9]), 0.5)
    assert only_defects.false_alarm_rate is None
    assert only_defects.precision == 1.0 and only_defects.recall == 0.5


def test_roc_curve_points_of_perfect_scores_reach_the_corner() -> None:
    fpr, tpr = roc_curve_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert any(f == 0.0 and t == 1.0 for f, t in zip(fpr, tpr, strict=True))


def test_roc_curve_points_need_both_classes() -> None:
    with pytest.raises(ValueError):
        roc_curve_points(np.zeros(3), np.arange(3.0))
