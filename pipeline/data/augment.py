"""Albumentations pipelines built from config entries by transform class name."""

import os
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from pipeline.config import AugmentConfig  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402


def build_augmentation(specs: list[AugmentConfig], seed: int) -> A.Compose | None:
    """Compose the configured transforms; unknown names or bad parameters are config errors."""
    if not specs:
        return None
    transforms = []
    for spec in specs:
        cls = getattr(A, spec.name, None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise ConfigError(f"train.augment: '{spec.name}' is not an albumentations transform")
        transforms.append(_instantiate(cls, spec))
    return A.Compose(transforms, seed=seed)


def _instantiate(cls: type, spec: AugmentConfig) -> A.BasicTransform:
    """albumentations only warns on unknown arguments; we make that an error naming them."""
    where = f"train.augment: {spec.name}{spec.params}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            transform = cls(**spec.params)
        except (TypeError, ValueError, ValidationError) as exc:
            raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from exc
    for warning in caught:
        if "not valid" in str(warning.message):
            raise ConfigError(f"{where}: {warning.message}")
    return transform


def augment_batch(pipeline: A.Compose | None, images: np.ndarray) -> np.ndarray:
    """Apply the pipeline image by image (albumentations works on single HxWxC arrays)."""
    if pipeline is None:
        return images
    out = [pipeline(image=img)["image"] for img in images]
    return np.stack([o[..., None] if o.ndim == 2 else o for o in out])
