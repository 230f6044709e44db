"""Per-image statistics that move when the camera's world moves.

Lighting ageing shifts brightness and clipping, a dirty or defocused lens lowers sharpness,
more sensor gain raises noise, a new coating or white balance changes contrast and
saturation. They need no model, so they also catch shifts that a model happens to be blind
to. They are taken on the frame as the camera delivered it (long side capped for speed), not
on the model's smaller input: resizing averages away exactly the noise and blur to be seen.
"""

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.images import read_image

GREY_STATS = (
    "brightness",
    "brightness_std",
    "contrast",
    "sharpness",
    "noise",
    "clipped_dark",
    "clipped_bright",
)
COLOUR_STATS = ("saturation",)
DARK, BRIGHT = 2, 253  # grey levels at or beyond which a pixel counts as clipped
MAX_SIDE = 1024  # longer frames are shrunk to this before measuring
# Immerkaer (1996): this kernel cancels image structure up to second order, leaving noise
NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def stat_names(channels: int) -> list[str]:
    """Saturation is only defined for colour cameras."""
    return list(GREY_STATS) + (list(COLOUR_STATS) if channels == 3 else [])


def _capped(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return image
    scale = MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 else out


def noise_sigma(grey: np.ndarray) -> float:
    """Immerkaer's noise estimate: mean |Laplacian-difference response| scaled to a sigma."""
    h, w = grey.shape
    if h < 3 or w < 3:
        return 0.0
    response = cv2.filter2D(grey.astype(np.float32), cv2.CV_32F, NOISE_KERNEL)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


def frame_statistics(image: np.ndarray) -> list[float]:
    """The statistics of one HxWxC uint8 frame, in the order of `stat_names`."""
    image = _capped(image)
    grey = image[..., 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float32) / 255.0
    lo, hi = np.percentile(g, [1, 99])
    values = [
        float(g.mean()),
        float(g.std()),
        float((hi - lo) / (hi + lo + 1e-6)),  # Michelson contrast, robust to a few hot pixels
        float(cv2.Laplacian(g, cv2.CV_32F, ksize=3).var()),
        noise_sigma(g),
        float((grey <= DARK).mean()),
        float((grey >= BRIGHT).mean()),
    ]
    if image.shape[2] == 3:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        values.append(float(hsv[..., 1].mean()) / 255.0)
    return values


def image_statistics(images: Iterable[np.ndarray], channels: int) -> np.ndarray:
    """Frames of any size (HxWxC uint8) -> (N, len(stat_names(channels))) float64."""
    rows = [frame_statistics(img) for img in images]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(stat_names(channels)))


def file_statistics(paths: Iterable[str | Path], channels: int) -> np.ndarray:
    """Statistics of image files read at full resolution (the reference's held-out images)."""
    return image_statistics((read_image(Path(p), channels) for p in paths), channels)
