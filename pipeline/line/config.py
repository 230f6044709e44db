"""Settings of line-data handling: what a frame needs to be accepted, which frames may be
trained on, and how the frozen evaluation set is drawn. Strict, like the run config: a typo
in a key is an error."""

from typing import Literal

from pydantic import Field

from pipeline.config import StrictSection


class IngestConfig(StrictSection):
    """Checks a frame of new line data must pass to be accepted."""

    min_size: int = Field(32, ge=2, description="Smallest accepted width and height in px.")
    date_tolerance_days: int = Field(
        0,
        ge=0,
        le=7,
        description="How far the capture date (in the capture_time's own zone) may be from "
        "the day folder; 1 lets a night shift file its frames under the shift's start day.",
    )


class PoolPolicy(StrictSection):
    """Which accepted frames a challenger is trained on. Goods always; defects never."""

    unknown: Literal["never", "below_champion"] = Field(
        "never",
        description="below_champion: an unlabelled frame joins when the champion scores it "
        "at most unknown_max_score x its threshold; never: unlabelled frames stay out.",
    )
    unknown_max_score: float = Field(
        0.5, gt=0, le=1, description="Fraction of the champion's threshold (see `unknown`)."
    )


class FrozenSetConfig(StrictSection):
    """How the evaluation set of a (line, camera) is drawn, once, from labelled frames."""

    good_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of good frames held out for the evaluation set."
    )
    min_good: int = Field(20, ge=1, description="Good frames the set needs before it is made.")
    min_defect: int = Field(5, ge=0, description="Defect frames the set needs (all are taken).")
    seed: int = Field(0, ge=0, description="Decides which good frames are held out.")


class LineConfig(StrictSection):
    """Everything line-data handling needs; one section of a retraining config."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    pool: PoolPolicy = Field(default_factory=PoolPolicy)
    frozen: FrozenSetConfig = Field(default_factory=FrozenSetConfig)
