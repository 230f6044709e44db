from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import DataConfig
from pipeline.data.mvtec import check_trainable, load_test_set, load_train_splits
from pipeline.errors import DataError


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for i in range(30):  # varying sizes, like magnetic_tile
        h, w = 40 + i, 60 - i
        _write(root / "train/good" / f"{i:03d}.png", rng.integers(0, 255, (h, w), np.uint8))
    _write(root / "test/good/000.png", rng.integers(0, 255, (50, 50), np.uint8))
    _write(root / "test/crack/000.png", rng.integers(0, 255, (64, 48), np.uint8))
    mask = np.zeros((64, 48), np.uint8)
    mask[10:30, 5:20] = 200  # anything above 127 is defect
    mask[40:50, 30:40] = 100  # anti-aliasing noise below 127 is not
    _write(root / "ground_truth/crack/000_mask.png", mask)
    _write(root / "test/crack/001.png", rng.integers(0, 255, (64, 48), np.uint8))  # no mask
    return root


def test_train_splits_resize_and_skip_unreadable(dataset, caplog):
    broken = dataset / "train/good/000.png"  # the first file: channels come from another
    broken.write_bytes(broken.read_bytes()[:60])
    cfg = DataConfig(path=str(dataset), image_size=32, val_fraction=0.1, calib_fraction=0.2)
    splits = load_train_splits(dataset, cfg, seed=0)
    assert splits.channels == 1
    assert len(splits.skipped) == 1 and splits.skipped[0].path == broken
    assert "000.png" in caplog.text
    assert len(splits.fit) + len(splits.val) + len(splits.calib) == 29
    assert splits.fit.shape[1:] == (32, 32, 1) and splits.fit.dtype == np.uint8
    again = load_train_splits(dataset, cfg, seed=0)
    np.testing.assert_array_equal(splits.calib, again.calib)
    other = load_train_splits(dataset, cfg, seed=1)
    assert not np.array_equal(splits.calib, other.calib)


def test_colour_is_read_as_three_channels(dataset):
    for path in (dataset / "train/good").iterdir():
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path), cv2.merge([gray, gray // 2, gray // 3]))
    splits = load_train_splits(dataset, DataConfig(image_size=32), seed=0)
    assert splits.channels == 3 and splits.fit.shape[-1] == 3


def test_test_set_binarises_masks_and_skips_a_defect_without_mask(dataset):
    test = load_test_set(dataset, 32, 1)
    assert test.categories == ["good", "crack"]
    assert len(test.skipped) == 1 and "no ground-truth mask" in str(test.skipped[0])
    mask = test.masks[1]
    assert mask.dtype == bool and 0 < mask.mean() < 0.3
    assert not test.masks[0].any()


def test_check_trainable_refuses_a_budget_the_data_cannot_support(dataset):
    cfg = DataConfig(image_size=32, calib_fraction=0.2)
    check_trainable(dataset, cfg, alpha=0.2)
    with pytest.raises(DataError, match="needs 99"):
        check_trainable(dataset, cfg, alpha=0.01)
