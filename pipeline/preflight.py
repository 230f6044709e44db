"""Checks that make a training run fail in one line before any work, whoever starts it."""

from pathlib import Path

from data_contracts import DatasetLayout
from pipeline.config import RunConfig
from pipeline.data.augment import build_augmentation
from pipeline.data.mvtec import check_trainable
from pipeline.data.synthetic import build_synthesizer
from pipeline.errors import ConfigError
from pipeline.models import build_model

COMMON_MAPS = ("l2", "ssim", "mahalanobis")


def check_before_training(cfg: RunConfig, root: Path) -> DatasetLayout:
    """Model name and size, score maps the model can give, augmentation specs, texture files,
    and a dataset big enough for the budget."""
    model = build_model(cfg.model, cfg.data.image_size, channels=1)
    for name, weight in cfg.score.maps.items():
        if weight > 0 and name not in COMMON_MAPS + model.extra_maps:
            raise ConfigError(f"score.maps: model '{cfg.model.name}' gives no '{name}' map")
    crop, stride = cfg.train.crop, 2 ** max(cfg.model.depth, cfg.model.disc_depth)
    if crop is not None and crop < cfg.data.image_size and crop % stride:
        raise ConfigError(f"train.crop {crop} must be divisible by {stride}")
    if crop is not None and cfg.model.latent == "vector":
        raise ConfigError("train.crop needs a fully convolutional model (model.latent: spatial)")
    build_augmentation(cfg.train.augment, cfg.train.seed)
    build_synthesizer(cfg.train.anomalies, cfg.train.seed)  # reads and checks any textures
    return check_trainable(root, cfg.data, cfg.calibration.alpha)
