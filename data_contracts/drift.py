"""Contracts for drift monitoring: the reference profile a model carries, and a batch's report.

The reference is plain JSON (lists of numbers), so the edge runtime and tools outside Python
can read it without torch or numpy pickles.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DriftReference(BaseModel):
    """What good parts looked like at training time, measured on held-out good images."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    created: datetime
    image_size: int = Field(
        ge=1, description="Model input size (features, scores); statistics use full frames."
    )
    channels: int = Field(ge=1)
    stat_names: list[str] = Field(description="Per-image statistics, columns of `stats`.")
    stats: list[list[float]] = Field(description="One row per held-out good image.")
    feature_mean: list[float] = Field(description="Mean of the pooled encoder features.")
    feature_components: list[list[float]] = Field(
        description="PCA directions (rows) of the pooled encoder features."
    )
    feature_scale: list[float] = Field(description="Std of each component (whitening).")
    features: list[list[float]] = Field(description="Whitened PCA features per held-out image.")
    scores: list[float] = Field(description="Anomaly scores of the calibration images.")
    threshold: float
    flag_rate: float = Field(
        ge=0, le=1, description="False-alarm budget of the threshold: the expected flag rate."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "DriftReference":
        if not self.stats or not self.features or not self.scores:
            raise ValueError("a drift reference needs statistics, features and scores")
        if any(len(row) != len(self.stat_names) for row in self.stats):
            raise ValueError("every row of stats must have one value per stat name")
        k = len(self.feature_components)
        if len(self.feature_scale) != k or any(len(row) != k for row in self.features):
            raise ValueError("features, components and scales disagree on the PCA size")
        return self


class DriftTest(BaseModel):
    """One two-sample test of the batch against the reference."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="e.g. 'brightness', 'features_mmd', 'scores', 'flag_rate'.")
    kind: Literal["ks", "mmd", "binomial"]
    statistic: float = Field(description="KS D, MMD^2, or the batch's flag rate.")
    p_value: float = Field(ge=0, le=1)
    level: float = Field(description="Bonferroni-adjusted level this p-value is compared with.")
    shifted: bool
    effect_size: float | None = Field(
        description="Standardised mean difference (batch - reference) / reference std for KS; "
        "MMD / median MMD under permutation; flag rate / expected rate for binomial."
    )
    reference_mean: float | None = None
    batch_mean: float | None = None


class UnreadableFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    problem: str


class ShiftedFrame(BaseModel):
    """A batch frame that the domain classifier finds least like the reference."""

    model_config = ConfigDict(extra="forbid")

    path: str
    batch_probability: float = Field(ge=0, le=1, description="Out-of-fold P(batch | frame).")
    score: float


class DomainClassifier(BaseModel):
    """Reference-vs-batch classifier on statistics and features, cross-validated."""

    model_config = ConfigDict(extra="forbid")

    auc: float | None = Field(description="Null when the batch is too small to cross-validate.")
    folds: int
    distinguishable: bool = Field(description="AUC above 0.55.")


class DriftReport(BaseModel):
    """The verdict on one batch of new images: every test, and one decision at `alpha`."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    model_version: str
    batch: str = Field(description="Folder of the batch.")
    created: datetime
    alpha: float = Field(gt=0, lt=1, description="Family-wise level of the decision.")
    drift: bool = Field(description="True when any test rejects at its Bonferroni level.")
    reasons: list[str] = Field(description="The tests that rejected, in words.")
    n_reference: int
    n_batch: int = Field(description="Frames tested (readable ones).")
    unreadable: list[UnreadableFrame]
    flag_rate: float = Field(description="Share of batch frames at or above the threshold.")
    tests: list[DriftTest]
    domain_classifier: DomainClassifier
    shifted_frames: list[ShiftedFrame]
