"""The lighting and optics suite: named perturbations at named severities, deterministic.

Each (perturbation, severity) is one albumentations transform with fixed parameters and
`p=1`; the random parts some transforms keep (where a shadow falls, the noise itself, the
direction of a gradient) come from a seed per (perturbation, severity, frame), so a frame
gets the same perturbation whatever else is in the batch. Frames are perturbed at the
camera's resolution, before they are resized for the model, as the real effect would be.
"""

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.errors import ConfigError  # noqa: E402

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Perturbation:
    """A named effect with one parameter value per severity."""

    name: str
    description: str
    levels: tuple[float, float, float]
    build: Callable[[float], A.BasicTransform]
    colour_only: bool = False
    lighting: bool = True  # photometric (lighting) rather than optics or geometry

    def level(self, severity: str) -> float:
        return self.levels[SEVERITIES.index(severity)]


def _fixed(value: float) -> tuple[float, float]:
    return (value, value)


def _white_balance(red: float, blue: float) -> Callable[..., np.ndarray]:
    """Channel gains of a colour-temperature change (PlanckianJitter cannot be pinned)."""
    gains = np.array([red, 1.0, blue], dtype=np.float32)

    def apply(image: np.ndarray, **_: object) -> np.ndarray:
        return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)

    return apply


SUITE: tuple[Perturbation, ...] = (
    Perturbation(
        "darker",
        "brightness shift, share of full scale",
        (-0.05, -0.1, -0.2),
        lambda v: A.RandomBrightnessContrast(_fixed(v), _fixed(0.0), p=1),
    ),
    Perturbation(
        "brighter",
        "brightness shift, share of full scale",
        (0.05, 0.1, 0.2),
        lambda v: A.RandomBrightnessContrast(_fixed(v), _fixed(0.0), p=1),
    ),
    Perturbation(
        "lower_contrast",
        "contrast change",
        (-0.1, -0.25, -0.4),
        lambda v: A.RandomBrightnessContrast(_fixed(0.0), _fixed(v), p=1),
    ),
    Perturbation(
        "gamma_darker",
        "gamma",
        (1.1, 1.25, 1.5),
        lambda v: A.RandomGamma(gamma_limit=_fixed(100 * v), p=1),
    ),
    Perturbation(
        "gamma_brighter",
        "gamma",
        (0.9, 0.8, 0.67),
        lambda v: A.RandomGamma(gamma_limit=_fixed(100 * v), p=1),
    ),
    Perturbation(
        "cast_shadow",
        "shadow intensity",
        (0.2, 0.4, 0.6),
        lambda v: A.RandomShadow(
            shadow_roi=(0, 0, 1, 1),
            num_shadows_limit=(1, 1),
            shadow_intensity_range=_fixed(v),
            p=1,
        ),
    ),
    Perturbation(
        "illumination_gradient",
        "linear gradient intensity",
        (0.05, 0.1, 0.2),
        lambda v: A.Illumination(mode="linear", intensity_range=_fixed(v), p=1),
    ),
    Perturbation(
        "colour_temperature",
        "warmer white balance: red gain 1+v, blue gain 1-v",
        (0.05, 0.1, 0.2),
        lambda v: A.Lambda(image=_white_balance(1 + v, 1 - v), p=1),
        colour_only=True,
    ),
    Perturbation(
        "gaussian_blur",
        "sigma (px)",
        (0.5, 1.0, 2.0),
        lambda v: A.GaussianBlur(blur_limit=0, sigma_limit=_fixed(v), p=1),
        lighting=False,
    ),
    Perturbation(
        "motion_blur",
        "kernel length (px)",
        (3, 5, 9),
        lambda v: A.MotionBlur(blur_limit=(int(v), int(v)), allow_shifted=False, p=1),
        lighting=False,
    ),
    Perturbation(
        "defocus",
        "disc radius (px)",
        (1, 2, 4),
        lambda v: A.Defocus(radius=(int(v), int(v)), alias_blur=_fixed(0.1), p=1),
        lighting=False,
    ),
    Perturbation(
        "sensor_noise",
        "Gaussian noise std, share of full scale",
        (0.01, 0.03, 0.06),
        lambda v: A.GaussNoise(std_range=_fixed(v), p=1),
        lighting=False,
    ),
    Perturbation(
        "jpeg",
        "JPEG quality",
        (70, 40, 15),
        lambda v: A.ImageCompression(quality_range=(int(v), int(v)), p=1),
        lighting=False,
    ),
    Perturbation(
        "camera_shift",
        "translation, share of width and height",
        (0.02, 0.05, 0.1),
        lambda v: A.Affine(translate_percent=_fixed(v), border_mode=4, p=1),  # reflect-101
        lighting=False,
    ),
    Perturbation(
        "camera_rotation",
        "rotation (degrees)",
        (2, 5, 10),
        lambda v: A.Affine(rotate=_fixed(v), border_mode=4, p=1),
        lighting=False,
    ),
)


def suite_for(channels: int, names: list[str] | None = None) -> list[Perturbation]:
    """The perturbations that apply to this camera (colour temperature needs colour)."""
    chosen = [p for p in SUITE if channels == 3 or not p.colour_only]
    if names is None:
        return chosen
    known = {p.name for p in chosen}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"stress.perturbations: unknown {unknown}; known: {sorted(known)}")
    return [p for p in chosen if p.name in names]


def _seed(name: str, severity: str, index: int, seed: int) -> int:
    return zlib.crc32(f"{name}/{severity}/{index}/{seed}".encode())


def perturb(
    frames: list[np.ndarray], perturbation: Perturbation, severity: str, seed: int = 0
) -> list[np.ndarray]:
    """Each HxWxC uint8 frame with the perturbation applied at the severity."""
    out = []
    for i, frame in enumerate(frames):
        transform = A.Compose(
            [perturbation.build(perturbation.level(severity))],
            seed=_seed(perturbation.name, severity, i, seed),
        )
        image = frame[..., 0] if frame.shape[2] == 1 else frame
        result = transform(image=image)["image"]
        out.append(result.reshape(frame.shape) if result.ndim == 2 else result)
    return out
