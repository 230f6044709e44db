"""Contract for one scored frame: what `aeinspect score` and the edge runtime write per line."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScoreRecord(BaseModel):
    """The verdict on one frame, with what is needed to audit it later.

    A frame that breaks the frame contract still gets a record (verdict `invalid`, no score,
    the problem named), so every frame that reached the runtime is accounted for.
    """

    model_config = ConfigDict(extra="forbid")

    frame_id: str = Field(description="File path or camera frame id.")
    time: datetime = Field(description="When the frame was scored (UTC).")
    score: float | None = Field(description="None only for invalid frames.")
    threshold: float
    verdict: Literal["good", "defect", "invalid"]
    model_name: str
    model_version: str
    latency_ms: float = Field(ge=0, description="Frame in hand to verdict, preprocessing included.")
    inference_ms: float | None = Field(None, ge=0, description="Time inside the model runtime.")
    backend: str | None = Field(None, description="Runtime that scored it, e.g. onnxruntime-cpu.")
    problem: str | None = Field(None, description="Why an invalid frame was not scored.")
    overlay: str | None = Field(None, description="Path of the overlay image, if written.")

    @model_validator(mode="after")
    def _score_unless_invalid(self) -> "ScoreRecord":
        if (self.verdict == "invalid") != (self.score is None):
            raise ValueError("score is None exactly when the verdict is invalid")
        if self.verdict == "invalid" and not self.problem:
            raise ValueError("an invalid frame must name its problem")
        return self
