"""Contract for a frame that a model accepts: checked before scoring, in the lab and at the edge."""

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FrameContract(BaseModel):
    """What a frame must look like before it is resized and scored."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["uint8", "uint16"] = "uint8"
    channels: Literal[1, 3] = Field(description="1 = grayscale, 3 = colour.")
    min_height: int = Field(16, ge=1)
    min_width: int = Field(16, ge=1)
    max_height: int = Field(8192, ge=1)
    max_width: int = Field(8192, ge=1)
    input_height: int = Field(ge=8, description="Size the model sees after resizing.")
    input_width: int = Field(ge=8)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> "FrameContract":
        if self.min_height > self.max_height or self.min_width > self.max_width:
            raise ValueError("min size must not exceed max size")
        return self

    def problems(self, height: int, width: int, channels: int, dtype: str) -> list[str]:
        """Every way a frame of this shape breaks the contract (empty when it fits)."""
        found = []
        if dtype != self.dtype:
            found.append(f"dtype {dtype}, expected {self.dtype}")
        if channels != self.channels:
            found.append(f"{channels} channel(s), expected {self.channels}")
        if not (self.min_height <= height <= self.max_height):
            found.append(f"height {height} outside {self.min_height}..{self.max_height}")
        if not (self.min_width <= width <= self.max_width):
            found.append(f"width {width} outside {self.min_width}..{self.max_width}")
        return found


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC uint8 to the model's input size, the one way lab and edge both do it: an area
    filter when shrinking (keeps fine defects visible), bilinear when enlarging."""
    import cv2  # here, not at import: the contracts themselves need only pydantic

    h, w = frame.shape[:2]
    interp = cv2.INTER_AREA if (h > height or w > width) else cv2.INTER_LINEAR
    out = cv2.resize(frame, (width, height), interpolation=interp)
    return out[..., None] if out.ndim == 2 else out
