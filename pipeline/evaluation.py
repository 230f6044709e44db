"""Evaluate a model's outputs on a labelled test set into an EvaluationReport.

The model is run elsewhere; this module only turns aligned predictions and ground truth into
the figures that decide whether a model may ship: ranking quality (image AUROC, pixel AUROC,
PRO) and what the calibrated threshold does in practice (precision, recall, false alarms),
overall and per defect type.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from data_contracts.evaluation import (
    CalibrationSummary,
    DefectBreakdown,
    EvaluationReport,
    SyntheticCheck,
)
from pipeline.metrics import image_auroc, operating_point, pixel_auroc, pro_score

GOOD = "good"


@dataclass
class Predictions:
    """Model outputs on a labelled test set, aligned by index."""

    paths: list[str]  # image paths (for the report)
    categories: list[str]  # "good" or the defect type
    images: np.ndarray  # (N,H,W,C) uint8, the resized inputs (for overlays)
    masks: np.ndarray  # (N,H,W) bool ground truth (all False for good)
    maps: np.ndarray  # (N,H,W) float32 anomaly maps
    scores: np.ndarray  # (N,) float image scores

    def __post_init__(self) -> None:
        """Fail here, naming the field, rather than deep inside a metric on misaligned data."""
        n = len(self.paths)
        sizes = {
            "categories": len(self.categories),
            "images": len(self.images),
            "masks": len(self.masks),
            "maps": len(self.maps),
            "scores": len(self.scores),
        }
        wrong = {name: size for name, size in sizes.items() if size != n}
        if wrong:
            raise ValueError(f"{n} paths but {wrong}: predictions must be aligned by index")
        if self.masks.shape != self.maps.shape or self.images.shape[:3] != self.maps.shape:
            raise ValueError(
                f"images {self.images.shape}, masks {self.masks.shape} and maps "
                f"{self.maps.shape} must share (N,H,W)"
            )

    @property
    def labels(self) -> np.ndarray:
        """1 for a defect image, 0 for a good one."""
        return (np.asarray(self.categories) != GOOD).astype(np.int64)

    @property
    def defect_types(self) -> list[str]:
        """The defect types present, sorted, so reports list them in a stable order."""
        return sorted(set(self.categories) - {GOOD})


def _breakdown(pred: Predictions, defect: str, threshold: float) -> DefectBreakdown:
    """One defect type against all good images: is this kind of defect found, and where?"""
    categories = np.asarray(pred.categories)
    chosen = (categories == defect) | (categories == GOOD)
    of_type = categories == defect
    labels, scores = pred.labels[chosen], pred.scores[chosen]
    masks, maps = pred.masks[chosen], pred.maps[chosen]
    return DefectBreakdown(
        defect=defect,
        n_images=int(of_type.sum()),
        image_auroc=image_auroc(labels, scores),
        pixel_auroc=pixel_auroc(masks, maps),
        pro=pro_score(masks, maps),
        recall=operating_point(pred.labels[of_type], pred.scores[of_type], threshold).recall,
    )


def build_report(
    pred: Predictions,
    calibration: CalibrationSummary,
    *,
    model_name: str,
    dataset: str,
    model_version: str | None = None,
    scoring_images_per_s: float | None = None,
    synthetic: SyntheticCheck | None = None,
) -> EvaluationReport:
    """Overall and per-defect-type metrics, and the operating point at the calibrated threshold."""
    labels = pred.labels
    return EvaluationReport(
        model_name=model_name,
        model_version=model_version,
        dataset=dataset,
        created=datetime.now(timezone.utc),
        n_good=int((labels == 0).sum()),
        n_defect=int(labels.sum()),
        image_auroc=image_auroc(labels, pred.scores),
        pixel_auroc=pixel_auroc(pred.masks, pred.maps),
        pro=pro_score(pred.masks, pred.maps),
        calibration=calibration,
        at_threshold=operating_point(labels, pred.scores, calibration.threshold),
        per_defect=[_breakdown(pred, d, calibration.threshold) for d in pred.defect_types],
        scoring_images_per_s=scoring_images_per_s,
        synthetic=synthetic,
    )
