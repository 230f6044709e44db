"""Contracts for new line data: the manifest a camera station writes per day, and what
ingesting one day did with it.

A day of one camera arrives as `<root>/<line>/<camera>/<YYYY-MM-DD>/` with `manifest.jsonl`
in it, one `LineManifestRow` per line. The station writes the manifest last, so a day with a
manifest is complete. Paths are relative to the day folder; where they may point is checked
by the ingestion, which knows the folders.
"""

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Label = Literal["good", "defect", "unknown"]


class LineManifestRow(BaseModel):
    """One captured image of one part, as the camera station labelled it."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="Image path relative to the day folder.")
    part_id: str = Field(min_length=1, description="Identifier of the inspected part.")
    capture_time: AwareDatetime = Field(description="When the frame was taken, with its zone.")
    label: Label = Field(
        description="good / defect: confirmed by a person or a later station; unknown: not."
    )
    mask: str | None = Field(
        None,
        min_length=1,
        description="Defect rows only: mask path relative to the day folder (0 = good pixel).",
    )

    @model_validator(mode="after")
    def _mask_only_on_defects(self) -> "LineManifestRow":
        if self.mask is not None and self.label != "defect":
            raise ValueError(f"only a defect row may name a mask, this one is {self.label}")
        return self


class LabelCounts(BaseModel):
    """Frames per label."""

    model_config = ConfigDict(extra="forbid")

    good: int = Field(0, ge=0)
    defect: int = Field(0, ge=0)
    unknown: int = Field(0, ge=0)


class QuarantinedFrame(BaseModel):
    """A file of the day folder kept out of every dataset, and why."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Relative to the day folder.")
    reason: str


class RejectedRow(BaseModel):
    """A manifest row that names no usable file: bad schema, duplicate, missing or unsafe path."""

    model_config = ConfigDict(extra="forbid")

    row: int = Field(ge=1, description="Line number in manifest.jsonl.")
    image: str | None = Field(description="The row's image path, when it has one.")
    reason: str


class IngestReport(BaseModel):
    """What one ingestion of one day folder added to the store (nothing, when run again)."""

    model_config = ConfigDict(extra="forbid")

    line: str
    camera: str
    day: date
    manifest_rows: int = Field(ge=0, description="Non-blank lines of manifest.jsonl.")
    channels: int | None = Field(
        description="Channel count frames had to have; null when no frame could be read."
    )
    accepted: LabelCounts = Field(description="Frames newly accepted, per label.")
    quarantined: list[QuarantinedFrame] = Field(description="Files newly quarantined.")
    already_ingested: int = Field(ge=0, description="Files decided by an earlier ingestion.")
    rejected_rows: list[RejectedRow]
    when: AwareDatetime
