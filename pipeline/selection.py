"""Model selection without the test set: synthetic defects on held-out good images.

The line gives good parts only, and the real test set must stay untouched until the final
report, or every figure in it is optimistic. So the labelled validation set is made: each
held-out good image appears once as it is and once (or more, for small sets) with a synthetic
anomaly and its exact mask. It drives early stopping of the families that segment, the choice
of fusion weights, and the synthetic recall reported next to the real test figures.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from data_contracts import SyntheticCheck
from pipeline.config import AnomalyConfig
from pipeline.data.synthetic import build_synthesizer, synthesize_batch
from pipeline.metrics import image_auroc, pixel_auroc
from pipeline.scoring import InspectionModule, raw_maps_of, score_images

MIN_ANOMALOUS = 64  # small validation splits are reused with fresh anomalies up to this many
FUSION_STEPS = (0.0, 0.5, 1.0)  # candidate weight of each map, before normalising


@dataclass
class SyntheticSet:
    """Images (N, S, S, C) uint8, masks (N, S, S) bool, labels (N,) bool."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray


def synthetic_validation_set(good: np.ndarray, cfg: AnomalyConfig, seed: int) -> SyntheticSet:
    """Every good image clean, plus anomalous copies of them (a seed disjoint from training's)."""
    synth = build_synthesizer(cfg, seed=seed + 104_729, clean_fraction=0.0)
    copies = max(1, math.ceil(MIN_ANOMALOUS / max(len(good), 1)))
    index = np.arange(len(good))
    made = [synthesize_batch(synth, good, index, epoch=copy) for copy in range(copies)]
    images = np.concatenate([good] + [m[0] for m in made])
    masks = np.concatenate([np.zeros(good.shape[:3], bool)] + [m[1] > 0.5 for m in made])
    labels = masks.reshape(len(masks), -1).any(axis=1)  # a blob can miss the image entirely
    return SyntheticSet(images, masks, labels)


def detection_quality(sset: SyntheticSet, scores: np.ndarray, maps: np.ndarray) -> dict:
    """Image and pixel AUROC on the synthetic set, and their mean as the selection objective."""
    img = image_auroc(sset.labels, scores) or 0.5
    pix = pixel_auroc(sset.masks, maps) or 0.5
    return {"image_auroc": img, "pixel_auroc": pix, "objective": (img + pix) / 2}


def _candidates(k: int) -> list[tuple[float, ...]]:
    """Weight vectors over k maps on a small grid, normalised, without repeats or all-zero."""
    seen: dict[tuple[float, ...], None] = {}
    for combo in itertools.product(FUSION_STEPS, repeat=k):
        total = sum(combo)
        if total > 0:
            seen.setdefault(tuple(round(w / total, 6) for w in combo), None)
    return list(seen)


@torch.no_grad()
def choose_fusion_weights(
    module: InspectionModule, sset: SyntheticSet, batch_size: int = 32
) -> list[dict]:
    """Try each weight combination of the module's (already normalised) maps on the synthetic
    set, keep the best in `module.weights`; returns every candidate with its quality."""
    raw = raw_maps_of(module, sset.images, batch_size).to(module.threshold.device)
    rows = []
    for weights in _candidates(len(module.map_names)):
        module.weights.copy_(torch.tensor(weights))
        fused = module.fused_map(raw)
        scores = module.pool_score(fused).cpu().numpy()
        quality = detection_quality(sset, scores, fused[:, 0].cpu().numpy())
        rows.append({"weights": dict(zip(module.map_names, weights, strict=True)), **quality})
    best = max(rows, key=lambda row: row["objective"])  # first of equals: the grid's order
    module.weights.copy_(torch.tensor([best["weights"][n] for n in module.map_names]))
    return rows


@torch.no_grad()
def synthetic_check(
    module: InspectionModule, sset: SyntheticSet, batch_size: int = 32
) -> SyntheticCheck:
    """The calibrated module on the synthetic set: AUROCs and recall at its threshold."""
    score, fused = score_images(module, sset.images, batch_size)
    quality = detection_quality(sset, score, fused)
    threshold = float(module.threshold)
    return SyntheticCheck(
        n_images=len(sset.labels),
        n_anomalous=int(sset.labels.sum()),
        image_auroc=quality["image_auroc"],
        pixel_auroc=quality["pixel_auroc"],
        recall=float((score[sset.labels] >= threshold).mean()) if sset.labels.any() else None,
        fusion_weights={n: float(w) for n, w in zip(module.map_names, module.weights, strict=True)},
    )
