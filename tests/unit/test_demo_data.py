"""Procedural demo data: MVTec layout, determinism, exact masks and refusal to overwrite."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.data.demo import DEFECT_TYPES, generate_demo_dataset, render_sample

SMALL = {"size": 64, "n_train": 6, "n_test_good": 3, "n_per_defect": 2}


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"unreadable {path}"
    return image


def _tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "data"
    generate_demo_dataset(root, **SMALL)
    return root


def test_layout_and_counts(tmp_path: Path) -> None:
    summary = generate_demo_dataset(tmp_path / "data", **SMALL)
    root = summary.root
    expected = {"train/good": 6, "test/good": 3} | {f"test/{d}": 2 for d in DEFECT_TYPES}
    assert summary.counts == expected
    assert summary.seconds >= 0
    for folder, n in expected.items():
        names = sorted(p.name for p in (root / folder).iterdir())
        assert names == [f"{i:03d}.png" for i in range(n)]
    for defect in DEFECT_TYPES:
        masks = sorted(p.name for p in (root / "ground_truth" / defect).iterdir())
        assert masks == ["000_mask.png", "001_mask.png"]
    assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(DEFECT_TYPES)
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "seed: 0" in readme and "test/scratch" in readme


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path, demo: Path) -> None:
    again = tmp_path / "again"
    generate_demo_dataset(again, **SMALL)
    assert _tree(again) == _tree(demo)
    other = tmp_path / "other"
    generate_demo_dataset(other, **SMALL, seed=1)
    images = [name for name in _tree(demo) if name.endswith(".png")]
    assert all(_tree(other)[name] != _tree(demo)[name] for name in images if "_mask" not in name)


def test_images_do_not_depend_on_how_many_others_are_generated(tmp_path: Path, demo: Path) -> None:
    fewer = tmp_path / "fewer"
    generate_demo_dataset(fewer, size=64, n_train=2, n_test_good=1, n_per_defect=1)
    for name, payload in _tree(fewer).items():
        if name.endswith(".png"):
            assert payload == (demo / name).read_bytes(), name


def test_good_images_are_alike_but_not_identical(demo: Path) -> None:
    good = [_read(p).astype(np.float32) for p in sorted((demo / "train/good").glob("*.png"))]
    diffs = [np.abs(a - b).mean() for a, b in zip(good, good[1:], strict=False)]
    assert all(0 < d < 20 for d in diffs), diffs


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_masks_are_binary_full_size_and_not_empty(demo: Path, defect: str) -> None:
    for image_path in sorted((demo / "test" / defect).glob("*.png")):
        mask = _read(demo / "ground_truth" / defect / f"{image_path.stem}_mask.png")
        assert mask.dtype == np.uint8 and mask.ndim == 2
        assert mask.shape == _read(image_path).shape[:2]
        assert set(np.unique(mask)) == {0, 255}
        assert 0.001 < (mask > 0).mean() < 0.2


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_defect_changes_pixels_inside_its_mask(demo: Path, defect: str) -> None:
    # A different good part also differs everywhere (grooves, noise, jitter), hence the margin.
    good = _read(demo / "test/good/000.png").astype(np.float32)
    for image_path in sorted((demo / "test" / defect).glob("*.png")):
        image = _read(image_path).astype(np.float32)
        inside = _read(demo / "ground_truth" / defect / f"{image_path.stem}_mask.png") > 0
        change = np.abs(image - good).mean(axis=-1)
        assert change[inside].mean() > 1.3 * change[~inside].mean()


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_mask_covers_exactly_the_changed_pixels(defect: str) -> None:
    for index in range(3):
        image, mask = render_sample(64, (7, 3, index), defect)
        clean, clean_mask = render_sample(64, (7, 3, index), None)
        changed = (image != clean).any(axis=-1)
        assert not clean_mask.any()
        assert not (changed & (mask == 0)).any(), "pixels changed outside the mask"
        near_change = cv2.dilate(changed.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert not ((mask > 0) & ~near_change).any(), "mask reaches > 2 px past the change"


@pytest.mark.parametrize(("channels", "shape"), [(1, (64, 64)), (3, (64, 64, 3))])
def test_channel_count(tmp_path: Path, channels: int, shape: tuple[int, ...]) -> None:
    root = tmp_path / "data"
    counts = {"n_train": 1, "n_test_good": 1, "n_per_defect": 1}
    generate_demo_dataset(root, size=64, channels=channels, **counts)
    for path in root.rglob("*.png"):
        expected = (64, 64) if path.name.endswith("_mask.png") else shape
        assert _read(path).shape == expected, path


def test_colour_images_are_not_gray(demo: Path) -> None:
    image = _read(demo / "test/stain/000.png").astype(np.int16)
    assert np.abs(image[..., 2] - image[..., 0]).max() > 20


def test_refuses_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        generate_demo_dataset(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_accepts_existing_empty_folder(tmp_path: Path) -> None:
    summary = generate_demo_dataset(tmp_path, size=64, n_train=1, n_test_good=0, n_per_defect=0)
    assert summary.counts["train/good"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 63}, "size"),
        ({"size": 513}, "size"),
        ({"size": 128.0}, "size"),
        ({"channels": 2}, "channels"),
        ({"n_train": -1}, "counts"),
        ({"seed": -1}, "seed"),
    ],
)
def test_rejects_bad_settings(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo_dataset(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()
