"""Edge preprocessing: the lab's colour order, resize and graph layouts; contract refusals."""

import numpy as np
import pytest

from data_contracts.bundle import GraphInput
from data_contracts.frame import FrameContract, resize_frame
from deploy.edge.frames import FrameProblem, Preprocessor
from deploy.edge.sources import Frame
from pipeline.export.graph import graph_input


def _input(layout: str, channels: int = 3) -> GraphInput:
    contract = FrameContract(channels=channels, input_height=32, input_width=32)
    return GraphInput(
        layout=layout, channel_order="rgb" if channels == 3 else "gray", contract=contract
    )


@pytest.fixture
def bgr() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)


@pytest.mark.parametrize("layout", ["uint8_nhwc", "float_nchw"])
def test_batch_is_what_the_lab_feeds_the_graph(bgr, layout):
    rgb = bgr[..., ::-1]
    expected = graph_input(resize_frame(np.ascontiguousarray(rgb), 32, 32)[None], layout)

    batch = Preprocessor(_input(layout)).batch(Frame("f", bgr))

    assert batch.dtype == expected.dtype and batch.shape == expected.shape
    assert np.array_equal(batch, expected)


def test_stream_colour_frames_turn_grey_for_a_grey_model(bgr):
    batch = Preprocessor(_input("uint8_nhwc", 1)).batch(Frame("cam:000001", bgr, stream=True))
    assert batch.shape == (1, 32, 32, 1)


def test_still_image_with_the_wrong_channels_is_invalid(bgr):
    with pytest.raises(FrameProblem, match=r"3 channel\(s\), expected 1"):
        Preprocessor(_input("uint8_nhwc", 1)).batch(Frame("a.png", bgr))
    with pytest.raises(FrameProblem, match=r"1 channel\(s\), expected 3"):
        Preprocessor(_input("uint8_nhwc")).batch(Frame("b.png", bgr[..., :1]))


def test_too_small_frame_and_undecodable_frame_are_invalid():
    pre = Preprocessor(_input("uint8_nhwc"))
    with pytest.raises(FrameProblem, match="height 8 outside"):
        pre.batch(Frame("tiny.png", np.zeros((8, 40, 3), np.uint8)))
    with pytest.raises(FrameProblem, match="corrupt"):
        pre.batch(Frame("x.png", None, "x.png: corrupt"))
