"""Dataset validation: each way a dataset breaks is named with its file, all at once."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_contracts import DefectSplit
from pipeline.data.validate import Problem, scan_layout, validate_dataset
from pipeline.errors import DataError

SIZE = 32


def _image(seed: int, channels: int = 1, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _mask(size: int = SIZE, defect: bool = True) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    if defect:
        mask[8:16, 8:16] = 255
    return mask


def _write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def _truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A clean grayscale dataset: 4 train, 2 test good, 2 crack images with masks."""
    root = tmp_path / "bottle"
    for i in range(4):
        _write(root / f"train/good/{i:03d}.png", _image(i))
    for i in range(2):
        _write(root / f"test/good/{i:03d}.png", _image(10 + i))
        _write(root / f"test/crack/{i:03d}.png", _image(20 + i))
        _write(root / f"ground_truth/crack/{i:03d}_mask.png", _mask())
    return root


def _about(problems: list[Problem], path: Path) -> list[str]:
    """The problems listed for one path, after checking each prints with its path."""
    assert all(str(p) == f"{p.path}: {p.problem}" for p in problems)
    return [p.problem for p in problems if p.path == path]


def test_clean_dataset_has_no_problems(root: Path) -> None:
    assert validate_dataset(root) == []
    assert validate_dataset(root, channels=1) == []


def test_problem_prints_path_then_problem() -> None:
    assert str(Problem(Path("a/b.png"), "broken")) == f"{Path('a/b.png')}: broken"


def test_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    assert validate_dataset(root) == [Problem(root, "dataset folder does not exist")]


def test_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "data.zip"
    root.write_bytes(b"PK")
    assert validate_dataset(root) == [Problem(root, "dataset path is not a folder")]


def test_truncated_png(root: Path) -> None:
    bad = _truncate(root / "train/good/001.png")
    problems = validate_dataset(root)
    assert len(problems) == 1
    assert "truncated" in _about(problems, bad)[0]


def test_truncated_jpeg(root: Path) -> None:
    bad = _truncate(_write(root / "test/good/009.jpg", _image(9)), keep=0.9)
    problems = validate_dataset(root)
    assert len(problems) == 1
    assert "truncated" in _about(problems, bad)[0]


def test_garbage_with_png_suffix(root: Path) -> None:
    bad = root / "train/good/004.png"
    bad.write_bytes(b"this is not a png" * 20)
    problems = validate_dataset(root)
    assert _about(problems, bad) == ["not a readable image (corrupt or unknown format)"]
    assert len(problems) == 1


def test_colour_image_among_grayscale(root: Path) -> None:
    colour = _write(root / "test/good/005.png", _image(5, channels=3))
    problems = validate_dataset(root)
    assert _about(problems, colour) == ["has 3 channel(s), expected 1 (like most of train/good)"]
    assert len(problems) == 1


def test_channels_given_flags_every_other_image(root: Path) -> None:
    problems = validate_dataset(root, channels=3)
    assert len(problems) == 8
    assert all(p.problem == "has 1 channel(s), expected 3 (as asked)" for p in problems)


def test_mask_without_image(root: Path) -> None:
    orphan = _write(root / "ground_truth/crack/007_mask.png", _mask())
    problems = validate_dataset(root)
    assert _about(problems, orphan) == ["mask without an image (no matching file in test/crack)"]
    assert len(problems) == 1


def test_masks_of_an_unknown_defect_are_orphans(root: Path) -> None:
    orphan = _write(root / "ground_truth/dent/000_mask.png", _mask())
    problems = validate_dataset(root)
    assert _about(problems, orphan) == ["mask without an image (test/ has no defect folder dent)"]


def test_image_without_mask(root: Path) -> None:
    (root / "ground_truth/crack/001_mask.png").unlink()
    problems = validate_dataset(root)
    assert _about(problems, root / "test/crack/001.png") == [
        "defect image without a mask (expected ground_truth/crack/001_mask.png)"
    ]
    assert len(problems) == 1


def test_mask_size_differs_from_image(root: Path) -> None:
    mask = _write(root / "ground_truth/crack/000_mask.png", _mask(size=16))
    problems = validate_dataset(root)
    assert _about(problems, mask) == ["mask is 16x16, its image 000.png is 32x32"]
    assert len(problems) == 1


def test_truncated_mask(root: Path) -> None:
    mask = _truncate(root / "ground_truth/crack/000_mask.png", keep=0.5)
    problems = validate_dataset(root)
    assert len(problems) == 1
    assert "truncated" in _about(problems, mask)[0]


def test_empty_mask_is_listed(root: Path) -> None:
    mask = _write(root / "ground_truth/crack/001_mask.png", _mask(defect=False))
    assert validate_dataset(root) == [Problem(mask, "mask is empty (no defect pixels)")]


def test_empty_test_split(root: Path) -> None:
    (root / "test/scratch").mkdir()
    for image in (root / "test/good").iterdir():
        image.unlink()
    problems = validate_dataset(root)
    assert _about(problems, root / "test/scratch") == ["split folder has no images"]
    assert _about(problems, root / "test/good") == ["split folder has no images"]
    assert len(problems) == 2


def test_empty_train_split(root: Path) -> None:
    shutil.rmtree(root / "train/good")
    (root / "train/good").mkdir()
    assert validate_dataset(root) == [Problem(root / "train/good", "split folder has no images")]


def test_missing_train_split(root: Path) -> None:
    shutil.rmtree(root / "train")
    problems = validate_dataset(root)
    assert problems == [Problem(root / "train/good", "training split folder is missing")]


def test_non_image_files_are_listed_as_ignored(root: Path) -> None:
    notes = root / "train/good/notes.txt"
    notes.write_text("shot on line 3\n")
    (root / "test/crack/rejects").mkdir()
    stray = _write(root / "train/000.png", _image(0))
    misnamed = _write(root / "ground_truth/crack/000.png", _mask())
    second = _write(root / "ground_truth/crack/001_mask.tif", _mask())
    problems = validate_dataset(root)
    assert _about(problems, notes) == ["not an image file inside a split folder, ignored"]
    assert _about(problems, root / "test/crack/rejects") == [
        "a folder inside a split folder, ignored"
    ]
    assert _about(problems, stray) == ["not in a split folder of train/, ignored"]
    assert _about(problems, misnamed) == ["mask name does not end in _mask, ignored"]
    assert _about(problems, second) == ["a second mask for image 001, ignored"]
    assert len(problems) == 5


def test_several_problems_are_listed_together(root: Path) -> None:
    truncated = _truncate(root / "train/good/000.png")
    colour = _write(root / "train/good/003.png", _image(3, channels=3))
    orphan = _write(root / "ground_truth/crack/005_mask.png", _mask())
    (root / "ground_truth/crack/000_mask.png").unlink()
    (root / "test/scratch").mkdir()
    problems = validate_dataset(root)
    assert {p.path for p in problems} == {
        truncated,
        colour,
        orphan,
        root / "test/crack/000.png",
        root / "test/scratch",
    }
    assert problems == sorted(problems, key=lambda p: (str(p.path), p.problem))


def test_scan_layout_of_clean_dataset(root: Path) -> None:
    (root / "ground_truth/crack/001_mask.png").unlink()
    (root / "train/good/notes.txt").write_text("not an image\n")
    layout = scan_layout(root)
    assert layout.root == str(root)
    assert layout.train_good == [f"train/good/{i:03d}.png" for i in range(4)]
    assert layout.test_good == ["test/good/000.png", "test/good/001.png"]
    assert layout.defects == [
        DefectSplit(
            name="crack",
            images=["test/crack/000.png", "test/crack/001.png"],
            masks=["ground_truth/crack/000_mask.png", None],
        )
    ]
    assert layout.n_test == 4


def test_scan_layout_without_test_folder(root: Path) -> None:
    shutil.rmtree(root / "test")
    layout = scan_layout(root)
    assert (layout.test_good, layout.defects) == ([], [])


@pytest.mark.parametrize(
    ("breakage", "where", "problem"),
    [
        ("no_root", ".", "dataset folder does not exist"),
        ("root_is_file", ".", "dataset path is not a folder"),
        ("no_train", "train/good", "training split folder is missing"),
        ("empty_train", "train/good", "split folder has no images"),
    ],
)
def test_scan_layout_raises_one_clear_line(
    root: Path, breakage: str, where: str, problem: str
) -> None:
    if breakage in ("no_root", "root_is_file"):
        shutil.rmtree(root)
    if breakage == "root_is_file":
        root.write_text("not a folder\n")
    if breakage == "no_train":
        shutil.rmtree(root / "train/good")
    if breakage == "empty_train":
        for image in (root / "train/good").iterdir():
            image.unlink()
        (root / "train/good/readme.txt").write_text("images go here\n")
    with pytest.raises(DataError) as info:
        scan_layout(root)
    assert str(info.value) == f"{root / where}: {problem}"
