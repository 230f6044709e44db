"""Load an MVTec-layout dataset into memory at the model's input size.

Inspection datasets are small (hundreds to a few thousand images), so everything is decoded
once, resized, and held as uint8 arrays; augmentation happens per batch in training.
Unreadable files are skipped with a warning and counted, never a crash mid-run.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_contracts import DatasetLayout
from pipeline.calibration import min_calibration_images
from pipeline.config import DataConfig
from pipeline.data.images import read_image, read_mask, resize_image, resize_mask
from pipeline.data.validate import scan_layout
from pipeline.errors import DataError, ImageReadError

log = logging.getLogger(__name__)


@dataclass
class LoadedImages:
    """Images (N, S, S, C) uint8 with their paths, and the files that could not be used."""

    images: np.ndarray
    paths: list[str]
    skipped: list[ImageReadError] = field(default_factory=list)


@dataclass
class TrainSplits:
    """Good images split three ways: fit the model, stop early / normalise maps, calibrate."""

    fit: np.ndarray
    val: np.ndarray
    calib: np.ndarray
    channels: int
    skipped: list[ImageReadError]
    fingerprint: str
    val_paths: list[str] = field(default_factory=list)
    calib_paths: list[str] = field(default_factory=list)


@dataclass
class TestSet:
    """Labelled test images with ground-truth masks aligned by index."""

    images: np.ndarray
    masks: np.ndarray
    categories: list[str]
    paths: list[str]
    skipped: list[ImageReadError]


def _warn_skip(err: ImageReadError) -> None:
    log.warning("skipping %s", err)


def detect_channels(paths: list[Path]) -> int:
    """Channel count of the first readable training image (bad files are skipped later)."""
    for path in paths:
        try:
            return read_image(path).shape[2]
        except ImageReadError:
            continue
    raise DataError(f"{paths[0].parent}: none of the {len(paths)} images can be read")


def load_images(paths: list[Path], size: int, channels: int) -> LoadedImages:
    """Decode and resize; a bad file is skipped with a warning, counted in `skipped`."""
    arrays, kept, skipped = [], [], []
    for path in paths:
        try:
            arrays.append(resize_image(read_image(path, channels), size))
            kept.append(str(path))
        except ImageReadError as err:
            _warn_skip(err)
            skipped.append(err)
    stack = np.stack(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return LoadedImages(stack, kept, skipped)


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the names and bytes of the files: identifies the training data of a run."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def split_counts(n: int, cfg: DataConfig) -> tuple[int, int, int]:
    """(fit, val, calib) sizes; each held-out split gets at least one image."""
    n_val = max(1, round(n * cfg.val_fraction))
    n_calib = max(1, round(n * cfg.calib_fraction))
    n_fit = n - n_val - n_calib
    if n_fit < 2:
        raise DataError(f"only {n} usable good training images: too few to train and calibrate")
    return n_fit, n_val, n_calib


def check_trainable(root: Path, cfg: DataConfig, alpha: float) -> DatasetLayout:
    """Fail fast, before any training: the dataset exists, has good images, and enough of them
    to hold out a calibration split that supports the false-alarm budget `alpha`."""
    layout = scan_layout(root)
    n_good = len(layout.train_good)
    _, _, n_calib = split_counts(n_good, cfg)
    needed = min_calibration_images(alpha)
    if n_calib < needed:
        raise DataError(
            f"{root}: {n_good} good training images leave {n_calib} for calibration, but a "
            f"false-alarm budget of {alpha} needs {needed}: raise data.calib_fraction or "
            "calibration.alpha, or add good images"
        )
    return layout


def load_train_splits(root: Path, cfg: DataConfig, seed: int) -> TrainSplits:
    """Read train/good, then split it reproducibly by `seed` into fit / val / calib."""
    layout = scan_layout(root)
    paths = [root / p for p in layout.train_good]
    channels = cfg.channels or detect_channels(paths)
    loaded = load_images(paths, cfg.image_size, channels)
    n_fit, n_val, _ = split_counts(len(loaded.images), cfg)
    order = np.random.default_rng(seed).permutation(len(loaded.images))
    fit, val, calib = np.split(order, [n_fit, n_fit + n_val])
    imgs = loaded.images
    return TrainSplits(
        fit=imgs[fit],
        val=imgs[val],
        calib=imgs[calib],
        channels=channels,
        skipped=loaded.skipped,
        fingerprint=fingerprint(paths),
        val_paths=[loaded.paths[i] for i in val],
        calib_paths=[loaded.paths[i] for i in calib],
    )


def _mask_for(root: Path, mask: str | None, image: Path, size: int) -> np.ndarray:
    if mask is None:
        raise ImageReadError(image, "defect image has no ground-truth mask")
    return resize_mask(read_mask(root / mask), size)


def load_test_set(root: Path, size: int, channels: int) -> TestSet:
    """test/good and every test/<defect> with masks; bad files are skipped and counted."""
    layout: DatasetLayout = scan_layout(root)
    items: list[tuple[str, Path, str | None]] = [("good", root / p, None) for p in layout.test_good]
    for split in layout.defects:
        items += [
            (split.name, root / p, m) for p, m in zip(split.images, split.masks, strict=False)
        ]
    if not items:
        raise DataError(f"{root / 'test'}: no test images (expected test/good and test/<defect>)")
    images, masks, cats, paths, skipped = [], [], [], [], []
    for category, path, mask in items:
        try:
            img = resize_image(read_image(path, channels), size)
            if category == "good":
                m = np.zeros((size, size), bool)
            else:
                m = _mask_for(root, mask, path, size)
        except ImageReadError as err:
            _warn_skip(err)
            skipped.append(err)
            continue
        images.append(img)
        masks.append(m)
        cats.append(category)
        paths.append(str(path))
    return TestSet(np.stack(images), np.stack(masks), cats, paths, skipped)
