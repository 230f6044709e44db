"""The graph that leaves the lab: the scoring module behind the input layout the edge feeds.

With `uint8_nhwc` the camera's pixels go in as they are and the graph itself transposes and
scales them, so no float conversion runs on the edge's CPU and nothing outside the graph can
scale differently from the lab.
"""

import numpy as np
import torch
from torch import nn

from pipeline.scoring import InspectionModule

INPUT_NAME = "images"
OUTPUT_NAMES = ("image_score", "anomaly_map", "is_defect")


class DeployedGraph(nn.Module):
    """(B, H, W, C) uint8 or (B, C, H, W) float in [0, 1] -> (score, map, is_defect)."""

    def __init__(self, module: InspectionModule, layout: str) -> None:
        super().__init__()
        self.module = module.eval()
        self.layout = layout

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.layout == "uint8_nhwc":
            images = images.permute(0, 3, 1, 2).float() / 255.0
        return self.module(images)

    def example_input(self, batch: int) -> torch.Tensor:
        size, channels = self.module.image_size, self.module.channels
        if self.layout == "uint8_nhwc":
            return torch.zeros(batch, size, size, channels, dtype=torch.uint8)
        return torch.zeros(batch, channels, size, size)


def graph_input(frames: np.ndarray, layout: str) -> np.ndarray:
    """Frames (N, H, W, C) uint8 in the layout the graph takes (scaled as `to_tensor` does)."""
    frames = np.ascontiguousarray(frames)
    if layout == "uint8_nhwc":
        return frames
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
