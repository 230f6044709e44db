"""Synthetic anomalies for DRAEM-style training (Zavrtanik et al., ICCV 2021), from good images.

Why: a discriminative network can only learn to segment defects if it sees some, but the line
supplies good parts only. Pasting textures that do not belong to the part inside random Perlin
blobs teaches it to flag whatever is "off the manifold" of good appearance, without ever showing
it a real scratch or stain, so it is not tuned to the few defect types someone thought of.

Recipe per sample, all randomness drawn from `np.random.default_rng([seed, epoch, index])`:
1. With probability `clean_fraction` the image is returned unchanged with an empty mask, so the
   network also learns that good images need no segmentation.
2. A Perlin mask (scales 2**k per axis, random rotation, threshold) shapes the anomaly.
3. A texture source is picked uniformly among: a procedural texture, an external texture (when
   given), the image itself shifted and flipped, plain Perlin noise, (with `shading`) the
   image itself in place under a smooth gain, blended with soft edges and not augmented, or
   (with `cracks`) the image itself darkened or brightened along a thin wandering line, or
   (with `bands`) the image itself under a gain in a band running in from one of its edges.
4. `n_augment` distinct photometric augmentations change the texture's appearance.
5. The texture is blended into the mask with opacity beta (see `AnomalySynthesizer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import AnomalyConfig
from pipeline.data.images import list_images, read_image
from pipeline.data.perlin import perlin_mask, perlin_noise
from pipeline.errors import DataError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

import albumentations as A  # noqa: E402

Texture = Callable[[np.random.Generator, tuple[int, int], int], np.ndarray]
Source = Callable[[np.random.Generator, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the anomaly recipe; the defaults follow the DRAEM paper."""

    clean_fraction: float = 0.5  # share of samples left without an anomaly
    opacity: tuple[float, float] = (0.1, 1.0)  # range of the blend factor beta
    min_exp: int = 0  # Perlin lattice has 2**k cells per axis, k in [min_exp, max_exp]
    max_exp: int = 6
    threshold: float = 0.5  # Perlin noise (about [-1, 1]) above this is anomalous
    n_augment: int = 3  # photometric augmentations applied to the texture source
    shading: bool = False  # also offer the part's own texture under a smooth gain change
    cracks: bool = False  # also offer thin wandering lines, darker or brighter than the part
    bands: bool = False  # also offer a band from one edge, darker or brighter, with a sharp step

    def __post_init__(self) -> None:
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1], got {self.clean_fraction}")
        low, high = self.opacity
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"opacity must satisfy 0 <= low <= high <= 1, got {self.opacity}")
        if not 0 <= self.min_exp <= self.max_exp:
            raise ValueError(f"need 0 <= min_exp <= max_exp, got {self.min_exp}, {self.max_exp}")
        if self.n_augment < 0:
            raise ValueError(f"n_augment must be >= 0, got {self.n_augment}")


# --- photometric augmentations ---------------------------------------------------------------
# Factories, not instances: each sample builds fresh transforms, so concurrent callers never
# share an albumentations random state and results stay independent of call order.
_AUGMENTATIONS: tuple[Callable[[], A.BasicTransform], ...] = (
    lambda: A.RandomBrightnessContrast(brightness_limit=0.4, contrast_limit=0.5, p=1.0),
    lambda: A.RandomGamma(gamma_limit=(50, 200), p=1.0),
    lambda: A.Solarize(threshold_range=(0.3, 0.7), p=1.0),
    lambda: A.Posterize(num_bits=(2, 5), p=1.0),
    lambda: A.Equalize(p=1.0),
    lambda: A.Sharpen(alpha=(0.3, 0.8), p=1.0),
    lambda: A.InvertImg(p=1.0),
    lambda: A.Emboss(alpha=(0.3, 0.8), strength=(0.5, 1.5), p=1.0),
)
_COLOUR_ONLY: tuple[Callable[[], A.BasicTransform], ...] = (
    lambda: A.HueSaturationValue(hue_shift_limit=40, sat_shift_limit=50, val_shift_limit=30, p=1.0),
)


def _augment(texture: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Apply `count` distinct augmentations; the per-sample rng seeds albumentations."""
    pool = _AUGMENTATIONS + (_COLOUR_ONLY if texture.shape[2] == 3 else ())
    chosen = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    pipeline = A.Compose([pool[i]() for i in chosen], seed=int(rng.integers(2**31)))
    return pipeline(image=texture)["image"].reshape(texture.shape)


# --- procedural textures ---------------------------------------------------------------------
def _paint(level: np.ndarray, rng: np.random.Generator, channels: int) -> np.ndarray:
    """Map a [0, 1] field linearly between two random colours: same code for gray and colour."""
    low, high = rng.uniform(0, 255, (2, channels)).astype(np.float32)
    image = low + np.clip(level, 0.0, 1.0)[..., None] * (high - low)
    return image.astype(np.uint8)


def _unit(field: np.ndarray) -> np.ndarray:
    """Stretch a field to [0, 1] so every family uses the full span between its two colours."""
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def _mottled(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Two-octave Perlin noise: stains, corrosion, discolouration."""
    cells = int(2 ** rng.integers(1, 5))
    field = perlin_noise(shape, (cells, cells), rng) + 0.5 * perlin_noise(
        shape, (2 * cells, 2 * cells), rng
    )
    return _paint(_unit(field), rng, channels)


def _grooves(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Wavy parallel stripes: machining marks or scratches at a foreign pitch and angle."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle, period = rng.uniform(0.0, np.pi), rng.uniform(3.0, 14.0)
    warp = rng.uniform(0.0, 3.0) * perlin_noise(shape, (2, 2), rng)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2.0 * np.pi / period) + warp
    return _paint(0.5 + 0.5 * np.sin(phase) ** 3, rng, channels)


def _cellular(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Distance to random seed points (Worley-like): pitting, blotches, granular deposits."""
    seeds = np.full(shape, 255, np.uint8)
    count = int(rng.integers(6, 60))
    seeds[rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)] = 0
    distance = _unit(cv2.distanceTransform(seeds, cv2.DIST_L2, 3))
    return _paint(distance if rng.random() < 0.5 else 1.0 - distance, rng, channels)


def _grain(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Blurred, possibly anisotropic noise: rough or brushed surface at a foreign grain."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma_x, sigma_y = rng.uniform(0.3, 3.0, 2)
    return _paint(_unit(cv2.GaussianBlur(noise, (0, 0), sigma_x, sigmaY=sigma_y)), rng, channels)


_PROCEDURAL: tuple[Texture, ...] = (_mottled, _grooves, _cellular, _grain)


# --- texture sources -------------------------------------------------------------------------
def _procedural(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    family = _PROCEDURAL[int(rng.integers(len(_PROCEDURAL)))]
    return family(rng, image.shape[:2], image.shape[2])


def _self_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The part's own texture, displaced: realistic colours in the wrong place (like CutPaste)."""
    height, width = image.shape[:2]
    shifted = np.roll(image, (int(rng.integers(height)), int(rng.integers(width))), axis=(0, 1))
    flip = int(rng.integers(3))  # 0: none, 1: vertical, 2: horizontal
    return np.ascontiguousarray(np.flip(shifted, axis=flip - 1) if flip else shifted)


def _perlin_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Gray Perlin noise: smooth shading changes with no colour cue."""
    cells = int(2 ** rng.integers(0, 6))
    level = (perlin_noise(image.shape[:2], (cells, cells), rng) + 1.0) * 127.5
    level = np.clip(level, 0, 255).astype(np.uint8)
    return np.repeat(level[..., None], image.shape[2], axis=2)


SHADE_GAINS = ((0.5, 0.8), (1.2, 1.6))  # darker or brighter, never close to 1
SHADE_RIPPLE = 0.1  # the gain varies by this much across the region
SHADE_MAX_EXP = 3  # shading covers broad regions: at most 2**3 Perlin cells per axis


def _under_gain(image: np.ndarray, gain: float | np.ndarray) -> np.ndarray:
    """The image multiplied by a gain (a number or an HxW field), rounded back to uint8."""
    if isinstance(gain, np.ndarray):
        gain = gain[..., None]
    return np.clip(np.rint(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def _regained(
    rng: np.random.Generator, image: np.ndarray, gains: tuple[tuple[float, float], ...], exp: int
) -> np.ndarray:
    """The part itself under a gain drawn from one of `gains`, rippling by SHADE_RIPPLE over at
    most 2**(exp - 1) Perlin cells per axis: a level change that keeps the texture."""
    low, high = gains[int(rng.integers(2))]
    cells = int(2 ** rng.integers(0, exp))
    ripple = 1.0 + SHADE_RIPPLE * perlin_noise(image.shape[:2], (cells, cells), rng)
    return _under_gain(image, rng.uniform(low, high) * ripple)


def _shaded(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The part itself, darker or brighter under a gently varying gain: uneven lighting,
    discolouration or a coating of different thickness. Every other source changes the texture;
    this one keeps it and moves only the level, which is how such defects look."""
    return _regained(rng, image, SHADE_GAINS, 3)


CRACK_GAINS = ((0.2, 0.6), (1.4, 1.8))  # mostly darker: a crack is a shadowed gap
CRACK_DARK_SHARE = 0.8
CRACK_LENGTH = (0.15, 0.6)  # of the image's longer side
CRACK_TURN = 0.35  # spread of the direction change per segment, radians


def _cracked(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The part itself, much darker (or, less often, brighter): pasted along a crack's line."""
    low, high = CRACK_GAINS[int(rng.random() >= CRACK_DARK_SHARE)]
    return _under_gain(image, rng.uniform(low, high))


BAND_GAINS = ((0.6, 0.85), (1.15, 1.5))  # a step in level: milder than shading's blobs


def _banded(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The part itself, darker or brighter under a gently varying gain: a stepped surface."""
    return _regained(rng, image, BAND_GAINS, 2)


def _crack_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A thin line that wanders from a random point inside the image, sometimes with a branch.
    Why: Perlin blobs are compact, and a network trained only on blobs misses cracks and
    scratches a pixel or two wide, common defects of machined and sintered parts."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    thickness = max(1, round(float(rng.uniform(0.5, 2.0)) * max(shape) / 128))
    start = rng.uniform((0, 0), (width, height))
    for _ in range(1 + int(rng.random() < 0.3)):  # the trunk, then perhaps one branch
        segments = int(rng.integers(4, 13))
        step = rng.uniform(*CRACK_LENGTH) * max(shape) / segments
        angle = rng.uniform(0, 2 * np.pi)
        turns = angle + np.cumsum(rng.normal(0, CRACK_TURN, segments))
        moves = step * np.stack([np.cos(turns), np.sin(turns)], axis=1)
        points = np.vstack([start, start + np.cumsum(moves, axis=0)])
        cv2.polylines(mask, [np.rint(points).astype(np.int32)], False, 1, thickness)
        start = points[int(rng.integers(1, len(points)))]
    return mask.astype(np.float32)


BAND_DEPTH = (0.08, 0.5)  # of the image across the band
BAND_WOBBLE = 0.015  # the step line strays this far (of the image) from a straight line
BAND_TILT = 0.15  # at most this slope against the edge it runs along


def _band_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A band from one image edge to a nearly straight line across the whole part.
    Why: a ground or coated surface that steps in level (uneven grinding, a misplaced coating
    edge) is flagged over the whole stepped region, which reaches the part's border; Perlin blobs
    are islands inside the image and never look like that."""
    height, width = shape
    side = int(rng.integers(4))  # 0 top, 1 bottom, 2 left, 3 right
    across, along = (height, width) if side < 2 else (width, height)
    position = np.arange(along, dtype=np.float32) - along / 2
    cycles = rng.uniform(0.5, 2.0, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    wobble = sum(
        np.sin(2 * np.pi * c * position / along + p) for c, p in zip(cycles, phases, strict=True)
    )
    line = (
        rng.uniform(*BAND_DEPTH) * across
        + rng.uniform(-BAND_TILT, BAND_TILT) * position
        + 0.5 * BAND_WOBBLE * across * wobble
    )
    depth = np.arange(across, dtype=np.float32)[:, None]
    mask = (depth < np.clip(line, 1, across - 1)[None, :]).astype(np.float32)  # across x along
    if side % 2:
        mask = mask[::-1]
    return np.ascontiguousarray(mask if side < 2 else mask.T)


def _soft_edged(mask: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, HxWx1 weight): the weight is 0 outside and on the edge and rises to 1 deep inside;
    the mask shrinks to where the weight is above 0, so every labelled pixel is visibly changed.
    A sliver too thin to rise keeps its hard edge."""
    inside = (4.0 * cv2.GaussianBlur(mask, (0, 0), sigma) - 3.0) * mask
    if not (inside > 0).any():
        return mask, mask[..., None]
    return (inside > 0).astype(np.float32), np.clip(inside, 0.0, 1.0)[..., None]


def _fit(texture: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """External texture resized to the image and converted to its channel count."""
    if texture.shape[:2] != (height, width):
        texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_AREA)
    if texture.ndim == 2:
        texture = texture[..., None]
    if texture.shape[2] == channels:
        return texture
    if channels == 1:
        return cv2.cvtColor(texture, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)


def _check_image(image: np.ndarray, what: str) -> None:
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"{what} must be a uint8 HxW or HxWxC array, got {image.dtype} {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ValueError(f"{what} must have 1 or 3 channels, got {image.shape[2]}")


class AnomalySynthesizer:
    """Turns a good image into (augmented image, mask, has_anomaly).

    Blend, with m the Perlin mask in {0, 1} and beta ~ U(opacity):
        out = round((1 - beta * m) * image + beta * m * texture)
    so pixels outside the mask are exactly the input. The returned mask is m itself: inside it a
    pixel may keep its value where beta * |texture - image| rounds to 0 (faint or matching
    texture); it stays 1 there, because the model should learn the blob, not a speckled copy.
    The shading source replaces beta * m with a weight that rises smoothly from 0 on the mask's
    edge to 1 inside it (and is 0 outside; m shrinks to where it is above 0), so a level change
    has no sharp border to give it away.

    Not a source of randomness of its own: the same (seed, epoch, index) gives identical bytes in
    any call order, process or thread, and a new epoch gives a new anomaly for the same image.
    """

    def __init__(
        self, cfg: SyntheticConfig, textures: Sequence[np.ndarray] | None = None, seed: int = 0
    ) -> None:
        for i, texture in enumerate(textures or ()):
            _check_image(texture, f"textures[{i}]")
        self.cfg = cfg
        self.seed = int(seed)
        self.textures = tuple(textures or ())

    def __call__(
        self, image: np.ndarray, index: int, epoch: int = 0
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        _check_image(image, "image")
        if image.ndim != 3:
            raise ValueError(f"image must be HxWxC, got shape {image.shape}")
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        height, width = image.shape[:2]
        cfg = self.cfg
        if rng.random() < cfg.clean_fraction:
            return image.copy(), np.zeros((height, width), np.float32), False
        mask = perlin_mask(
            (height, width),
            rng,
            min_exp=cfg.min_exp,
            max_exp=cfg.max_exp,
            threshold=cfg.threshold,
        ).astype(np.float32)
        source = self._source(rng)
        texture = source(rng, image)
        if source is _shaded:  # broad regions, soft edges, no augmentation to hide the change
            # its own coarse mask is drawn here, after the source, so that configs without
            # shading draw exactly the random numbers, and so the anomalies, they drew before
            coarse = min(cfg.max_exp, SHADE_MAX_EXP)
            mask = perlin_mask(
                (height, width), rng, min_exp=min(cfg.min_exp, coarse), max_exp=coarse
            ).astype(np.float32)
            mask, weight = _soft_edged(mask, float(rng.uniform(0.005, 0.02)) * max(height, width))
        elif source is _cracked:  # a line, not a blob; strong enough to be seen at its width
            mask = _crack_mask(rng, (height, width))
            weight = (float(rng.uniform(max(cfg.opacity[0], 0.5), 1.0)) * mask)[..., None]
        elif source is _banded:  # the part's own level change, with the step as its edge
            mask = _band_mask(rng, (height, width))
            weight = mask[..., None]
        else:
            texture = _augment(texture, rng, cfg.n_augment)
            weight = (float(rng.uniform(*cfg.opacity)) * mask)[..., None]
        blended = image + weight * (texture.astype(np.float32) - image)
        return np.rint(blended).astype(np.uint8), mask, True

    def _source(self, rng: np.random.Generator) -> Source:
        """Pick a texture source uniformly among those available."""
        sources: list[Source] = [_procedural, _self_texture, _perlin_texture]
        if self.cfg.shading:
            sources.append(_shaded)
        if self.cfg.cracks:
            sources.append(_cracked)
        if self.cfg.bands:
            sources.append(_banded)
        if self.textures:
            sources.append(self._external)
        return sources[int(rng.integers(len(sources)))]

    def _external(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        texture = self.textures[int(rng.integers(len(self.textures)))]
        return _fit(texture, *image.shape)


def synthesize_batch(
    synth: AnomalySynthesizer, images: np.ndarray, indices: np.ndarray, epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthesize a batch: (N,H,W,C) uint8 images, (N,H,W) float32 masks, (N,) bool flags."""
    if len(images) != len(indices):
        raise ValueError(f"{len(images)} images but {len(indices)} indices")
    results = [synth(image, int(i), epoch) for image, i in zip(images, indices, strict=True)]
    augmented, masks, flags = zip(*results, strict=True)
    return np.stack(augmented), np.stack(masks), np.array(flags, dtype=bool)


def build_synthesizer(
    cfg: AnomalyConfig, seed: int, clean_fraction: float | None = None
) -> AnomalySynthesizer:
    """The synthesizer a run config describes; texture files are read (and checked) here, so a
    bad texture folder fails before training starts."""
    textures: list[np.ndarray] = []
    if cfg.textures is not None:
        folder = Path(cfg.textures)
        paths = list_images(folder) if folder.is_dir() else []
        if not paths:
            raise DataError(f"{folder}: train.anomalies.textures has no images")
        textures = [read_image(path) for path in paths]  # converted to `channels` when pasted
    recipe = SyntheticConfig(
        clean_fraction=cfg.clean_fraction if clean_fraction is None else clean_fraction,
        opacity=(cfg.opacity_min, cfg.opacity_max),
        max_exp=cfg.max_exp,
        shading=cfg.shading,
        cracks=cfg.cracks,
        bands=cfg.bands,
    )
    return AnomalySynthesizer(recipe, textures, seed=seed)
