"""2-D Perlin (gradient) noise and the thresholded, rotated masks DRAEM uses to shape anomalies.

Why Perlin noise: its level sets are smooth, irregular blobs whose size is set by the lattice
scale, so one generator yields anything from a single large stain to many small specks, and none
of them look like the axis-aligned rectangles a network could learn to spot by shape alone.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_MAX_TRIES = 10  # thresholded masks that come out empty are redrawn this many times
_BLOB_FRACTION = 0.08  # radius of the fallback blob, relative to the shorter side


def _fade(t: np.ndarray) -> np.ndarray:
    """Quintic smoothstep 6t^5 - 15t^4 + 10t^3: zero first and second derivatives at 0 and 1."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _axis(length: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice cell index and position inside the cell for each of `length` samples."""
    coord = np.arange(length, dtype=np.float32) * (cells / length)
    cell = np.minimum(coord.astype(np.int64), cells - 1)
    return cell, coord - cell


def perlin_noise(
    shape: tuple[int, int], scale: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Perlin noise of `shape` with `scale` lattice cells per axis, float32 in about [-1, 1].

    Shapes that the scale does not divide are generated on the next larger multiple and cropped,
    so every cell is square in pixels and the lattice never stretches.
    """
    height, width = shape
    cells_y, cells_x = max(1, int(scale[0])), max(1, int(scale[1]))
    full_h = math.ceil(height / cells_y) * cells_y
    full_w = math.ceil(width / cells_x) * cells_x
    angles = rng.uniform(0.0, 2.0 * np.pi, (cells_y + 1, cells_x + 1)).astype(np.float32)
    grads = np.stack([np.sin(angles), np.cos(angles)])  # (2, cells_y + 1, cells_x + 1): (gy, gx)
    iy, fy = _axis(full_h, cells_y)
    ix, fx = _axis(full_w, cells_x)
    iy, fy, ix, fx = iy[:height], fy[:height, None], ix[:width], fx[None, :width]

    def corner(dy: int, dx: int) -> np.ndarray:
        """Dot product of each pixel's offset from corner (dy, dx) with that corner's gradient."""
        g = grads[:, iy + dy][:, :, ix + dx]  # row gather then column gather: contiguous copies
        return g[0] * (fy - dy) + g[1] * (fx - dx)

    wy, wx = _fade(fy), _fade(fx)
    n00, n01, n10, n11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = n00 + wx * (n01 - n00)
    bottom = n10 + wx * (n11 - n10)
    # A 2-D gradient-noise value is bounded by sqrt(2)/2; rescale to about [-1, 1].
    return (math.sqrt(2.0) * (top + wy * (bottom - top))).astype(np.float32)


def _rotate(noise: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre; reflection keeps the corners filled with noise, not a constant."""
    height, width = noise.shape
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return cv2.warpAffine(
        noise, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def _cells(length: int, rng: np.random.Generator, min_exp: int, max_exp: int) -> int:
    """2**k lattice cells, k uniform in [min_exp, max_exp], capped so a cell spans >= 1 px."""
    return min(2 ** int(rng.integers(min_exp, max_exp + 1)), length)


def _blob(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A small random ellipse: the last resort that keeps a requested mask non-empty."""
    height, width = shape
    radius = max(1.0, _BLOB_FRACTION * min(height, width))
    axes = (round(radius * rng.uniform(0.5, 1.5)), round(radius * rng.uniform(0.5, 1.5)))
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    canvas = np.zeros(shape, np.uint8)
    cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    canvas[centre[1], centre[0]] = 1
    return canvas.astype(bool)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    min_exp: int = 0,
    max_exp: int = 6,
    threshold: float = 0.5,
) -> np.ndarray:
    """Non-empty bool mask: rotated Perlin noise above `threshold` at scale 2**k per axis.

    Drawing k independently per axis gives elongated as well as round blobs; the random rotation
    removes the lattice's axis alignment. Empty draws are retried, then replaced by a small blob.
    """
    for _ in range(_MAX_TRIES):
        scale = (_cells(shape[0], rng, min_exp, max_exp), _cells(shape[1], rng, min_exp, max_exp))
        noise = _rotate(perlin_noise(shape, scale, rng), float(rng.uniform(-90.0, 90.0)))
        mask = noise > threshold
        if mask.any():
            return mask
    return _blob(shape, rng)
