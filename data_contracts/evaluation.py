"""Contract for an evaluation report: the JSON that `aeinspect evaluate` writes and MLflow keeps."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class OperatingPoint(BaseModel):
    """Detection figures at one threshold."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    precision: float | None = Field(description="Null when nothing was flagged.")
    recall: float | None = Field(description="Null when there are no defect images.")
    f1: float | None
    false_alarm_rate: float | None = Field(description="Share of good images flagged.")


class DefectBreakdown(BaseModel):
    """Figures for one defect type against all good test images."""

    model_config = ConfigDict(extra="forbid")

    defect: str
    n_images: int
    image_auroc: float | None
    pixel_auroc: float | None
    pro: float | None
    recall: float | None = Field(description="Recall at the calibrated threshold.")


class CalibrationSummary(BaseModel):
    """The split-conformal threshold and the thresholds for other false-alarm budgets."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(gt=0, lt=1)
    n_calibration: int = Field(ge=1)
    threshold: float
    thresholds: dict[str, float] = Field(description="Budget (as a string) -> threshold.")


class SyntheticCheck(BaseModel):
    """The model on synthetic defects of held-out good images (the selection set, not the test)."""

    model_config = ConfigDict(extra="forbid")

    n_images: int
    n_anomalous: int
    image_auroc: float | None
    pixel_auroc: float | None
    recall: float | None = Field(
        description="Anomalous images flagged at the calibrated threshold."
    )
    fusion_weights: dict[str, float] = Field(description="Map name -> weight in the fused map.")


class EvaluationReport(BaseModel):
    """Image and pixel metrics of one model on one test set, at its calibrated threshold."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    model_version: str | None = None
    dataset: str
    created: datetime
    n_good: int
    n_defect: int
    image_auroc: float | None
    pixel_auroc: float | None
    pro: float | None = Field(description="PRO integrated to FPR 0.3, normalised to 0..1.")
    calibration: CalibrationSummary
    at_threshold: OperatingPoint
    per_defect: list[DefectBreakdown]
    scoring_images_per_s: float | None = None
    synthetic: SyntheticCheck | None = None
