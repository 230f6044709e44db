"""Parity frames: line images read, resized and laid out the way the bundle's graph takes them.

Both runtimes in a parity check get the same array, so the comparison does not hinge on how the
frames were prepared; they are prepared as the edge does (`resize_frame`) so that decisions are
compared on realistic inputs.
"""

from pathlib import Path

import numpy as np

from data_contracts.bundle import GraphInput
from data_contracts.frame import resize_frame
from deploy.tensorrt.errors import FramesError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def image_shape(graph_input: GraphInput) -> tuple[int, int, int]:
    """One image as the graph takes it: (H, W, C) for uint8_nhwc, (C, H, W) for float_nchw."""
    contract = graph_input.contract
    h, w, c = contract.input_height, contract.input_width, contract.channels
    return (h, w, c) if graph_input.layout == "uint8_nhwc" else (c, h, w)


def to_graph_layout(frames: np.ndarray, graph_input: GraphInput) -> np.ndarray:
    """uint8 frames (N, H, W, C) at the input size, in the layout and dtype the graph takes."""
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise FramesError(f"frames must be uint8 (N, H, W, C), got {frames.dtype} {frames.shape}")
    if graph_input.layout == "uint8_nhwc":
        return np.ascontiguousarray(frames)
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def check_graph_batch(batch: np.ndarray, graph_input: GraphInput) -> None:
    """FramesError unless `batch` is what the graph takes: right dtype, layout and size."""
    dtype = np.uint8 if graph_input.layout == "uint8_nhwc" else np.float32
    want = image_shape(graph_input)
    if batch.dtype != dtype or batch.shape[1:] != want or not len(batch):
        raise FramesError(
            f"parity frames are {batch.dtype} {batch.shape}; the bundle's {graph_input.layout} "
            f"input takes {np.dtype(dtype)} (N, {', '.join(map(str, want))})"
        )


def load_frames(folder: Path, graph_input: GraphInput) -> np.ndarray:
    """Every image directly in `folder` (sorted by name) as uint8 (N, H, W, C) at the input size."""
    import cv2  # here: only the parity step reads images

    folder = Path(folder)
    if not folder.is_dir():
        raise FramesError(f"{folder}: not a folder of parity frames")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FramesError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    contract = graph_input.contract
    flag = cv2.IMREAD_GRAYSCALE if contract.channels == 1 else cv2.IMREAD_COLOR
    frames = []
    for path in paths:
        image = cv2.imread(str(path), flag)
        if image is None:
            raise FramesError(f"{path}: not a readable image")
        if contract.channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frames.append(resize_frame(image, contract.input_height, contract.input_width))
    return np.stack(frames)
