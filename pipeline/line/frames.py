"""Look at one frame (and its mask) once: full decode, size, mask agreement.

Only a full decode finds a truncated file, so every frame is decoded; the pixels are not
kept. The caller hashes first, to skip frames it has already decided, and makes the checks
that need other frames (channel count, duplicates).
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from data_contracts.bundle import sha256_file
from pipeline.data.images import read_image, read_mask
from pipeline.errors import ImageReadError


@dataclass(frozen=True)
class FrameFacts:
    """What one look at a frame found; `problem` is None when the frame itself is usable."""

    problem: str | None = None
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    mask_sha256: str | None = None


def _mask_problem(mask: Path, height: int, width: int) -> str | None:
    try:
        pixels = read_mask(mask)
    except ImageReadError as exc:
        return f"mask {mask.name}: {exc.problem}"
    if pixels.shape != (height, width):
        return (
            f"mask {mask.name} is {pixels.shape[1]}x{pixels.shape[0]}, the image {width}x{height}"
        )
    if not pixels.any():
        return f"mask {mask.name} is empty (no defect pixels)"
    return None


def inspect_frame(image: Path, mask: Path | None, min_size: int) -> FrameFacts:
    """Decode `image`, check its size, and that its mask is readable, as large as the image
    and not empty."""
    try:
        pixels = read_image(image)
    except ImageReadError as exc:
        return FrameFacts(exc.problem)
    height, width, channels = pixels.shape
    problem = None
    if min(height, width) < min_size:
        problem = f"image is {width}x{height} px, smaller than {min_size} px"
    elif mask is not None:
        problem = _mask_problem(mask, height, width)
    mask_sha = sha256_file(mask) if mask is not None and problem is None else None
    return FrameFacts(problem, channels, height, width, mask_sha)


def inspect_frames(frames: list[tuple[Path, Path | None]], min_size: int) -> list[FrameFacts]:
    """`inspect_frame` for many frames in threads (PIL releases the GIL while decoding)."""
    with ThreadPoolExecutor() as pool:
        return list(pool.map(lambda f: inspect_frame(f[0], f[1], min_size), frames))
