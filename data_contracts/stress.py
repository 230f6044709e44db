"""Contract for a stress report: how a model version holds up under lighting, optics and
adversarial perturbations, at its deployed threshold."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DetectionFigures(BaseModel):
    """Image-level figures at the deployed threshold on one (perturbed) test set."""

    model_config = ConfigDict(extra="forbid")

    n_good: int
    n_defect: int
    false_alarm_rate: float | None = Field(description="Good images flagged; null without good.")
    miss_rate: float | None = Field(description="Defective images passed; null without defects.")
    auroc: float | None = Field(description="Null unless both classes are present.")


class PerturbationResult(BaseModel):
    """One perturbation at one named severity."""

    model_config = ConfigDict(extra="forbid")

    perturbation: str
    severity: Literal["low", "medium", "high"]
    level: float = Field(description="The parameter value of this severity.")
    description: str = Field(description="What the level means.")
    lighting: bool = Field(description="A lighting change (else optics or camera geometry).")
    figures: DetectionFigures
    mean_score_shift: float = Field(description="Mean of perturbed minus clean image score.")
    drift_fired: bool | None = Field(
        description="Whether the drift monitor flags the perturbed good images as a batch; "
        "null when the model has no drift reference."
    )
    drift_reasons: list[str] = Field(default_factory=list)


class AttackResult(BaseModel):
    """FGSM or PGD at one L-inf budget, in both directions."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["fgsm", "pgd"]
    eps: float = Field(description="L-inf budget in units of 1/255.")
    steps: int
    n_good: int
    n_defect: int
    false_alarm_success: float | None = Field(
        description="Share of good images below the threshold that the attack pushes over it."
    )
    hidden_defect_success: float | None = Field(
        description="Share of flagged defective images that the attack pushes below it."
    )
    mean_shift_good: float = Field(description="Mean score change of attacked good images.")
    mean_shift_defect: float = Field(description="Mean score change of attacked defects.")
    robust_auroc: float | None = Field(
        description="AUROC of attacked good (raised) against attacked defective (lowered)."
    )


class SanityCheck(BaseModel):
    """A gradient-masking check: stronger attacks must not do worse."""

    model_config = ConfigDict(extra="forbid")

    name: str
    passed: bool
    detail: str


class StressReport(BaseModel):
    """Every perturbation and attack of one model version on one labelled test set."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    model_version: str
    dataset: str
    created: datetime
    threshold: float
    image_score: str = Field(description="The deployed image score (what the threshold cuts).")
    attack_score: str = Field(description="The differentiable score the attacks follow.")
    clean: DetectionFigures
    drift_note: str = Field(description="Whether and how the drift monitor was consulted.")
    perturbations: list[PerturbationResult]
    attacks: list[AttackResult]
    sanity: list[SanityCheck]
    sanity_passed: bool
    unreadable: list[str] = Field(description="Test files left out, with the problem.")
    seconds: float
