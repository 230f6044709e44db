"""Checks that make a training run fail in one line before any work, whoever starts it."""

from pathlib import Path

from data_contracts import DatasetLayout
from pipeline.config import RunConfig
from pipeline.data.augment import build_augmentation
from pipeline.data.mvtec import check_trainable
from pipeline.models import check_model_config


def check_before_training(cfg: RunConfig, root: Path) -> DatasetLayout:
    """Model name and size, augmentation specs, and a dataset big enough for the budget."""
    check_model_config(cfg.model, cfg.data.image_size)
    build_augmentation(cfg.train.augment, cfg.train.seed)
    return check_trainable(root, cfg.data, cfg.calibration.alpha)
