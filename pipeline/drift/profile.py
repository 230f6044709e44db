"""The reference profile saved with every model, and the same measurements on a new batch.

Everything is measured on held-out good images, never on the images the model was fitted
on: the encoder's features and the scores of its own training images are tighter than those
of any new part, so a reference built from them would see drift everywhere.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import torch

from data_contracts import DriftReference
from pipeline.data.mvtec import TrainSplits
from pipeline.drift.statistics import file_statistics, stat_names
from pipeline.scoring import InspectionModule, batches, score_images


@dataclass
class Observation:
    """Statistics, whitened features and scores of a set of images, row-aligned."""

    stats: np.ndarray  # (N, n_stats)
    features: np.ndarray  # (N, k)
    scores: np.ndarray  # (N,)


@torch.no_grad()
def pooled_features(
    module: InspectionModule, images: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """Encoder features averaged over positions: (N, C). Position-free, so a small camera
    shift moves them only as much as it changes what is seen."""
    module.eval()
    device = module.threshold.device
    out = [
        module.model(b.to(device))["features"].float().mean(dim=(2, 3)).cpu().numpy()
        for b in batches(images, batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def fit_pca(features: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, principal directions (k, C) and their spreads, by SVD of the centred features."""
    mean = features.mean(axis=0)
    centred = features - mean
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    k = max(1, min(components, len(features) - 1, features.shape[1]))
    scale = singular[:k] / np.sqrt(max(len(features) - 1, 1))
    scale = np.where(scale > 1e-12, scale, 1.0)
    return mean, directions[:k], scale


def project(reference: DriftReference, features: np.ndarray) -> np.ndarray:
    """Whitened PCA coordinates of pooled features in the reference's basis."""
    mean = np.asarray(reference.feature_mean)
    components = np.asarray(reference.feature_components)
    return (features - mean) @ components.T / np.asarray(reference.feature_scale)


def build_reference(
    module: InspectionModule,
    profile_images: np.ndarray,
    profile_stats: np.ndarray,
    calib_scores: np.ndarray,
    flag_rate: float,
    components: int,
) -> DriftReference:
    """Profile of held-out good images (at the model's input size, with their full-resolution
    statistics); the scores are those the threshold was fitted on."""
    feats = pooled_features(module, profile_images)
    mean, directions, scale = fit_pca(feats, components)
    whitened = (feats - mean) @ directions.T / scale
    return DriftReference(
        created=datetime.now(UTC),
        image_size=module.image_size,
        channels=module.channels,
        stat_names=stat_names(module.channels),
        stats=np.asarray(profile_stats, dtype=np.float64).tolist(),
        feature_mean=mean.tolist(),
        feature_components=directions.tolist(),
        feature_scale=scale.tolist(),
        features=whitened.tolist(),
        scores=[float(s) for s in calib_scores],
        threshold=float(module.threshold),
        flag_rate=flag_rate,
    )


def reference_from_splits(
    module: InspectionModule,
    splits: TrainSplits,
    calib_scores: np.ndarray,
    flag_rate: float,
    components: int,
) -> DriftReference:
    """The profile of a training run's held-out good images (val + calib), their statistics
    read again at full resolution from their files."""
    return build_reference(
        module,
        np.concatenate([splits.val, splits.calib]),
        file_statistics(splits.val_paths + splits.calib_paths, splits.channels),
        calib_scores,
        flag_rate,
        components,
    )


def observe(
    module: InspectionModule, reference: DriftReference, images: np.ndarray, stats: np.ndarray
) -> Observation:
    """The reference's measurements on new images (at the model's input size, with their
    full-resolution statistics)."""
    scores, _ = score_images(module, images)
    return Observation(
        stats=np.asarray(stats, dtype=np.float64),
        features=project(reference, pooled_features(module, images)),
        scores=scores.astype(np.float64),
    )


def reference_observation(reference: DriftReference) -> Observation:
    """The reference as arrays (its scores may come from fewer images than its statistics)."""
    return Observation(
        stats=np.asarray(reference.stats, dtype=np.float64),
        features=np.asarray(reference.features, dtype=np.float64),
        scores=np.asarray(reference.scores, dtype=np.float64),
    )
