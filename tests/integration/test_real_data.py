"""The reader and validator on real inspection data nobody here made (skipped when
`../shared/data` is not beside the checkout, e.g. on a user's machine)."""

from pathlib import Path

import pytest

from pipeline.data.mvtec import load_test_set
from pipeline.data.validate import validate_dataset

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


def test_magnetic_tile_validates_except_its_four_empty_masks():
    problems = validate_dataset(SHARED_DATA / "magnetic_tile")
    assert {p.path.name for p in problems} == {
        "exp3_num_45042_mask.png",
        "exp4_num_124690_mask.png",
        "exp4_num_352527_mask.png",
        "exp4_num_45057_mask.png",
    }
    assert {p.problem for p in problems} == {"mask is empty (no defect pixels)"}


def test_battery_weld_reads_at_model_size():
    root = SHARED_DATA / "battery_weld"
    assert validate_dataset(root) == []
    test = load_test_set(root, 64, 1)
    assert test.images.shape == (109, 64, 64, 1)
    assert test.categories.count("defective") == 93 and not test.skipped
    defect_masks = test.masks[[c == "defective" for c in test.categories]]
    assert all(m.any() for m in defect_masks)
