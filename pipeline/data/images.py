"""Reading images and masks from disk with one clear error per bad file.

PIL decodes (it raises on truncated files where OpenCV silently returns grey rows);
OpenCV resizes. Arrays are HxWxC uint8, channels 1 (grayscale) or 3 (RGB).
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from data_contracts.frame import resize_frame
from pipeline.errors import ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (so order is reproducible)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                return np.clip(arr / 257.0, 0, 255).astype(np.uint8)[..., None]
            if mode in ("1", "L", "LA"):
                return np.asarray(im.convert("L"))[..., None]
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise ImageReadError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a readable image (corrupt or unknown format)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"unreadable or truncated image ({exc})") from exc
    except Exception as exc:  # PIL raises assorted errors on broken payloads
        raise ImageReadError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """Read an image as HxWxC uint8; with `channels` set, a different channel count is an error."""
    arr = _decode(Path(path))
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(path, f"image is only {arr.shape[1]}x{arr.shape[0]} pixels")
    if channels is not None and arr.shape[2] != channels:
        raise ImageReadError(path, f"has {arr.shape[2]} channel(s), the model expects {channels}")
    return arr


def read_mask(path: Path) -> np.ndarray:
    """Read a ground-truth mask as HxW bool (anything above 127 is defect)."""
    arr = _decode(Path(path))
    return arr.max(axis=2) > 127


def resize_image(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize HxWxC uint8 to size x size exactly as the edge runtime does."""
    return resize_frame(arr, size, size)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool mask by majority; a defect thinner than a pixel keeps its strongest pixels."""
    cover = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    out = cover >= 0.5
    if mask.any() and not out.any():
        out = cover >= cover.max() * 0.5
    return out
