"""Contract for one scored frame: what `aeinspect score` and the edge runtime write per line."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ScoreRecord(BaseModel):
    """The verdict on one frame, with what is needed to audit it later."""

    model_config = ConfigDict(extra="forbid")

    frame_id: str = Field(description="File path or camera frame id.")
    time: datetime = Field(description="When the frame was scored (UTC).")
    score: float
    threshold: float
    verdict: Literal["good", "defect"]
    model_name: str
    model_version: str
    latency_ms: float = Field(ge=0)
    overlay: str | None = Field(None, description="Path of the overlay image, if written.")
