"""From a delivered frame to the graph's input: contract check, colour order, the lab's resize.

The lab decodes RGB (or single-channel grey) uint8 and resizes with `resize_frame`; OpenCV
hands out BGR. Converting here, and resizing with that same function, is what keeps the edge's
scores equal to the lab's. Everything else (normalisation, scaling of uint8 input) is inside
the graph.
"""

import cv2
import numpy as np

from data_contracts.bundle import GraphInput
from data_contracts.frame import resize_frame
from deploy.edge.sources import Frame


class FrameProblem(Exception):
    """The frame breaks the bundle's frame contract; the message lists how."""


class Preprocessor:
    """Turns frames into batches of one for one bundle's graph input."""

    def __init__(self, graph_input: GraphInput) -> None:
        self.contract = graph_input.contract
        self.gray = graph_input.channel_order == "gray"
        self.layout = graph_input.layout

    def batch(self, frame: Frame) -> np.ndarray:
        """(1, H, W, C) uint8 or (1, C, H, W) float32 in [0, 1]; FrameProblem if it does not fit.

        Only a stream's BGR frame is turned grey for a grey model: a still image whose channel
        count does not fit is invalid, as it would be in the lab.
        """
        pixels = frame.pixels
        if pixels is None:
            raise FrameProblem(frame.problem or "no pixels")
        if frame.stream and self.gray and pixels.shape[2] == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)[..., None]
        h, w, c = pixels.shape
        problems = self.contract.problems(h, w, c, str(pixels.dtype))
        if problems:
            raise FrameProblem(
                f"{frame.frame_id}: frame breaks the contract: {'; '.join(problems)}"
            )
        if pixels.dtype == np.uint16:  # the graph takes 8 bits; scale as the lab's reader does
            pixels = (pixels.astype(np.float32) / 257.0).astype(np.uint8)
        if c == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        pixels = resize_frame(pixels, self.contract.input_height, self.contract.input_width)
        if self.layout == "uint8_nhwc":
            return np.ascontiguousarray(pixels[None])
        chw = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
        return chw / np.float32(255)
