"""Deterministic procedural demo data in the MVTec AD folder layout.

Why this exists: the pipeline needs a dataset that anyone can create offline, in seconds, with
known ground truth, so that training, calibration and export can be tried end to end without
access to real production images.

Design
------
* Every image shows the same part from a fixed camera: a turned steel flange (a disc with a
  central bore and chamfered edges) lying on a dark fixture. The face carries fine concentric
  turning grooves, an anisotropic "bow-tie" highlight typical of turned metal, low-frequency
  shading, metal grain and a mild lighting gradient.
* Good images differ only by the nuisance factors of a real line: lighting gain (+-5 %), about
  1.5 px pose jitter (at 128 px), light direction wobble, fresh groove phase, shading, grain and
  sensor noise. They look alike enough for a small autoencoder, but are never identical.
* Each image draws all its randomness from its own generator seeded with (seed, split, index),
  so files are byte-identical across runs and do not depend on generation order.
* All nuisance randomness, sensor noise included, is drawn *before* the defect parameters. A
  defect image is therefore its clean twin plus a local change, and the mask is the support of
  that change dilated by 1 px: pixels outside the mask are exactly those of the clean twin.
* Rendering works in float32 BGR in [0, 1], vectorised with numpy and cv2; grayscale output is
  cv2's BGR-to-gray conversion of the same render. Defect sizes scale with the image size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES: tuple[str, ...] = ("scratch", "pit", "stain", "missing")

_SPLIT_IDS: dict[str, int] = {
    "train/good": 0,
    "test/good": 1,
    **{f"test/{name}": 2 + i for i, name in enumerate(DEFECT_TYPES)},
}
_MIN_SIZE, _MAX_SIZE = 64, 512
_REF_SIZE = 128  # pixel sizes in this module are stated for this image size; they scale

# Part geometry as fractions of the image size.
_R_OUTER, _R_BORE, _CHAMFER = 0.40, 0.15, 0.03
_GROOVES_PER_IMAGE = 40  # turning-groove period = size / this
_STAIN_CELLS = 12  # blotch noise cells across the image: same look at every size
_LIGHT_AZIMUTH = -2.3  # radians; light from the upper left, as on a fixed inspection cell

_STEEL_BGR = np.array([1.0, 0.97, 0.93], np.float32)
_FIXTURE_BGR = np.array([1.0, 0.95, 0.9], np.float32)  # warm dark-gray anodised plate
_FIXTURE_LEVEL = 0.17
_RUST_BGR = np.array([0.30, 0.50, 0.78], np.float32)  # multiplicative brownish tint
_SUBPIXEL_SHIFT = 4  # cv2 drawing with 1/16 px vertex precision


@dataclass(frozen=True)
class DemoSummary:
    """What was written, so callers can log it and check counts without listing folders."""

    root: Path
    counts: dict[str, int]
    seconds: float


@dataclass(frozen=True)
class _Scene:
    """Nuisance factors of one image: everything that varies between good parts."""

    size: int
    cx: float
    cy: float
    gain: float
    light: float
    groove_phase: float
    shading: np.ndarray
    grain: np.ndarray
    noise: np.ndarray

    @property
    def scale(self) -> float:
        """Factor that maps defect sizes given at 128 px to this image size."""
        return self.size / _REF_SIZE

    @property
    def face_band(self) -> tuple[float, float]:
        """Radii between which the flat turned face lies (chamfers excluded)."""
        return (_R_BORE + _CHAMFER) * self.size, (_R_OUTER - _CHAMFER) * self.size


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Unit-variance smooth random field; `cells` sets how many blobs span the image."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _sample_scene(size: int, rng: np.random.Generator) -> _Scene:
    """Draw every nuisance factor first, so defect draws never perturb the clean image."""
    jitter = 1.5 * size / _REF_SIZE
    centre = (size - 1) / 2
    grain = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.7)
    gray_noise = rng.normal(0.0, 0.012, (size, size, 1))
    colour_noise = rng.normal(0.0, 0.004, (size, size, 3))
    return _Scene(
        size=size,
        cx=centre + rng.uniform(-jitter, jitter),
        cy=centre + rng.uniform(-jitter, jitter),
        gain=rng.uniform(0.95, 1.05),
        light=_LIGHT_AZIMUTH + rng.normal(0.0, 0.05),
        groove_phase=rng.uniform(0.0, 2 * math.pi),
        shading=_smooth_noise(rng, size, 4),
        grain=grain / (grain.std() + 1e-6),
        noise=(gray_noise + colour_noise).astype(np.float32),
    )


def _polar(scene: _Scene) -> tuple[np.ndarray, np.ndarray]:
    """Radius and azimuth of every pixel around the (jittered) part centre."""
    yy, xx = np.mgrid[0 : scene.size, 0 : scene.size].astype(np.float32)
    dx, dy = xx - scene.cx, yy - scene.cy
    return np.hypot(dx, dy), np.arctan2(dy, dx)


def _metal_coverage(r: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased fraction of each pixel covered by the intact part."""
    disc = np.clip(_R_OUTER * size - r + 0.5, 0.0, 1.0)
    bore = np.clip(_R_BORE * size - r + 0.5, 0.0, 1.0)
    return disc * (1.0 - bore)


def _metal_tone(scene: _Scene, r: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Gray level of the metal: turned face with grooves plus the two lit/shadowed chamfers."""
    size = scene.size
    facing = np.cos(theta - scene.light)
    period = max(2.5, size / _GROOVES_PER_IMAGE)  # stay above Nyquist at small sizes
    grooves = np.sin(2 * math.pi * r / period + scene.groove_phase)
    bow_tie = 1.0 + 0.16 * np.cos(2 * (theta - scene.light))
    face = 0.56 * bow_tie * (1.0 + 0.05 * scene.shading) + 0.035 * grooves
    inner, outer = scene.face_band
    outer_band = np.clip(r - outer + 0.5, 0.0, 1.0)
    bore_band = np.clip(inner - r + 0.5, 0.0, 1.0)
    outer_chamfer = 0.50 + 0.38 * facing  # faces outwards: bright towards the light
    bore_chamfer = 0.50 - 0.38 * facing  # faces inwards: bright away from the light
    tone = face * (1 - outer_band - bore_band) + outer_chamfer * outer_band
    return tone + bore_chamfer * bore_band + 0.025 * scene.grain  # grain covers all metal


def _render(scene: _Scene, removed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free float BGR image and metal coverage; `removed` cuts material away."""
    size = scene.size
    r, theta = _polar(scene)
    metal = _metal_coverage(r, size)
    if removed is not None:
        metal = metal * (1.0 - removed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along_light = (xx - scene.cx) * math.cos(scene.light) + (yy - scene.cy) * math.sin(scene.light)
    ramp = 1.0 + 0.10 * along_light / size
    through_bore = np.clip(_R_BORE * size - r + 0.5, 0.0, 1.0)  # the fixture is bored too
    fixture = _FIXTURE_LEVEL * (1.0 + 0.08 * scene.shading) * (1.0 - 0.7 * through_bore)
    tone = _metal_tone(scene, r, theta)
    gray = (metal * tone * scene.gain + (1 - metal) * fixture) * ramp
    colour = metal[..., None] * _STEEL_BGR + (1 - metal[..., None]) * _FIXTURE_BGR
    return gray[..., None] * colour, metal


def _point_on_face(scene: _Scene, rng: np.random.Generator, margin: float) -> np.ndarray:
    """Random (x, y) on the flat face, at least `margin` px away from both chamfers."""
    inner, outer = scene.face_band
    radius = rng.uniform(inner + margin, outer - margin)
    angle = rng.uniform(0.0, 2 * math.pi)
    return np.array([scene.cx + radius * math.cos(angle), scene.cy + radius * math.sin(angle)])


def _scratch_path(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Points of a gently curved quadratic Bezier of 15-50 % of the image width."""
    start = _point_on_face(scene, rng, 0.0)
    length = rng.uniform(0.15, 0.5) * scene.size
    heading = rng.uniform(0.0, 2 * math.pi)
    direction = np.array([math.cos(heading), math.sin(heading)])
    normal = np.array([-direction[1], direction[0]])
    end = start + length * direction
    bend = start + 0.5 * length * direction + rng.uniform(-0.2, 0.2) * length * normal
    t = np.linspace(0.0, 1.0, 48)[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end


def _fraction_on_metal(points: np.ndarray, metal: np.ndarray) -> float:
    """Share of path points that land on material (a scratch cannot run over the bore)."""
    idx = np.round(points).astype(int)
    inside = np.all((idx >= 0) & (idx < metal.shape[0]), axis=1)
    on = np.zeros(len(points), bool)
    on[inside] = metal[idx[inside, 1], idx[inside, 0]] > 0.5
    return float(on.mean())


def _scratch_profile(path: np.ndarray, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strength along the scratch: tapered ends and uneven tool pressure, as real scratches."""
    nearest = np.argmin(((pixels[:, None, ::-1] - path[None]) ** 2).sum(axis=-1), axis=1)
    t = np.linspace(0.0, 1.0, len(path))
    pressure = 0.85 + 0.15 * np.sin(2 * math.pi * rng.uniform(1.0, 3.0) * t + rng.uniform(0, 6.3))
    taper = np.clip(np.sin(math.pi * t) * 3.0, 0.5, 1.0)
    return (pressure * taper)[nearest]


def _scratch(scene: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Thin anti-aliased bright or dark curved line, kept mostly on the metal."""
    image, metal = _render(scene)
    path = _scratch_path(scene, rng)
    for _ in range(30):  # re-draw paths that mostly fall into the bore or off the part
        if _fraction_on_metal(path, metal) >= 0.8:
            break
        path = _scratch_path(scene, rng)
    thickness = max(1, round(rng.uniform(0.75, 1.7) * scene.scale))  # cv2 width ~ 2x
    canvas = np.zeros((scene.size, scene.size), np.uint8)
    vertices = np.round(path * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    cv2.polylines(canvas, [vertices], False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    strength = canvas.astype(np.float32) / 255.0 * metal
    strength[strength > 0] *= _scratch_profile(path, np.argwhere(strength > 0), rng)
    alpha = strength[..., None]
    bright = rng.random() < 0.5
    target = np.clip(image * 1.6 + 0.25, 0.0, 1.0) if bright else image * 0.25
    return image * (1 - alpha) + target * alpha, alpha[..., 0] > 0


def _pit(scene: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One to three small dark elliptical holes with a rim highlight on the lit side."""
    image, _ = _render(scene)
    yy, xx = np.mgrid[0 : scene.size, 0 : scene.size].astype(np.float32)
    support = np.zeros((scene.size, scene.size), bool)
    rim_width = max(1.0, 1.3 * scene.scale)
    for _ in range(int(rng.integers(1, 4))):
        major = rng.uniform(2.0, 6.0) * scene.scale
        minor = major * rng.uniform(0.65, 1.0)
        cx, cy = _point_on_face(scene, rng, major + rim_width + 1)
        tilt = rng.uniform(0.0, math.pi)
        u = (xx - cx) * math.cos(tilt) + (yy - cy) * math.sin(tilt)
        v = -(xx - cx) * math.sin(tilt) + (yy - cy) * math.cos(tilt)
        rho = np.hypot(u / major, v / minor)
        dist = (rho - 1.0) * minor  # approximate signed distance to the hole edge, in px
        hole = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
        facing = np.cos(np.arctan2(yy - cy, xx - cx) - scene.light)
        lit_rim = np.clip(1 - np.abs(dist - rim_width / 2) / (rim_width / 2 + 0.5), 0, 1)
        lit_rim = (lit_rim * np.clip(0.3 + 0.7 * facing, 0.0, 1.0))[..., None]
        floor = (0.08 + 0.10 * np.clip(-facing, 0.0, 1.0) * np.minimum(rho, 1.0))[..., None]
        image = image * (1 - hole) + floor * _STEEL_BGR * hole
        image = image + (1.0 - image) * 0.85 * lit_rim * (1 - hole)
        support |= (hole[..., 0] > 0) | (lit_rim[..., 0] > 0)
    return image, support


def _stain(scene: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blotchy semi-transparent brownish residue with a darker drying ring."""
    image, metal = _render(scene)
    radius = rng.uniform(0.07, 0.11) * scene.size
    cx, cy = _point_on_face(scene, rng, 0.3 * radius)
    yy, xx = np.mgrid[0 : scene.size, 0 : scene.size].astype(np.float32)
    blotch = np.clip(_smooth_noise(rng, scene.size, _STAIN_CELLS), -1.0, 1.0)
    field = 1.0 - np.hypot(xx - cx, yy - cy) / radius + 0.45 * blotch  # > 0.55 at the centre
    threshold, soft = 0.25, 0.15
    body = np.clip((field - threshold) / soft, 0.0, 1.0)
    ring = np.exp(-(((field - threshold) / 0.12) ** 2)) * (field > threshold - soft / 3)
    opacity = rng.uniform(0.7, 0.9)
    alpha = (opacity * np.clip(0.75 * body + 0.35 * ring, 0.0, 1.0) * metal)[..., None]
    tinted = image * _RUST_BGR * 0.85
    return image * (1 - alpha) + tinted * alpha, alpha[..., 0] > 0


def _chip_polygon(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Jagged outline of a chip centred on the outer edge or on the bore edge."""
    edge = (_R_BORE if rng.random() < 0.3 else _R_OUTER) * scene.size
    angle = rng.uniform(0.0, 2 * math.pi)
    centre = np.array([scene.cx + edge * math.cos(angle), scene.cy + edge * math.sin(angle)])
    depth = rng.uniform(0.06, 0.10) * scene.size
    stretch = rng.uniform(1.2, 1.8)  # chips run along the edge more than into it
    phi = np.sort(rng.uniform(0.0, 2 * math.pi, 14))
    radii = depth * rng.uniform(0.65, 1.15, phi.size)
    radial = np.array([math.cos(angle), math.sin(angle)])
    tangent = np.array([-radial[1], radial[0]])
    along_radius = (radii * np.cos(phi))[:, None] * radial
    along_edge = (radii * np.sin(phi) * stretch)[:, None] * tangent
    return centre + along_radius + along_edge


def _missing(scene: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chipped-off material showing the dark fixture, with a bright fracture edge."""
    canvas = np.zeros((scene.size, scene.size), np.uint8)
    vertices = np.round(_chip_polygon(scene, rng) * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [vertices], 255, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    removed = canvas.astype(np.float32) / 255.0
    image, metal = _render(scene, removed)
    intact = _metal_coverage(_polar(scene)[0], scene.size)
    distance = cv2.distanceTransform((canvas == 0).astype(np.uint8), cv2.DIST_L2, 3)
    fracture = np.clip(1.0 - distance / (1.5 * scene.scale + 0.5), 0.0, 1.0) * metal
    fracture = (fracture * rng.uniform(0.4, 0.6))[..., None]
    image = image + (1.0 - image) * fracture
    return image, (removed * intact > 0) | (fracture[..., 0] > 0)


_DEFECTS: dict[str, Callable[[_Scene, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": _scratch,
    "pit": _pit,
    "stain": _stain,
    "missing": _missing,
}


def render_sample(
    size: int, key: Sequence[int], defect: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render one uint8 BGR image and its uint8 0/255 mask from a generator `key`.

    Public so tests and augmentation code can get the clean twin of a defect image: the same
    key with `defect=None` gives identical pixels everywhere outside the mask.
    """
    if defect is not None and defect not in _DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; expected one of {DEFECT_TYPES}")
    rng = np.random.default_rng(list(key))
    scene = _sample_scene(size, rng)
    if defect is None:
        image, support = _render(scene)[0], np.zeros((size, size), bool)
    else:
        image, support = _DEFECTS[defect](scene, rng)
    mask = cv2.dilate(support.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    # Defect maths may run in float64; back in float32, untouched pixels round like the twin's.
    pixels = np.clip(image.astype(np.float32) + scene.noise, 0.0, 1.0) * 255.0 + 0.5
    return pixels.astype(np.uint8), mask


def _validate(size: int, channels: int, counts: Sequence[int], seed: int) -> None:
    """Reject settings early, before anything is written."""
    if not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"size must be an integer from {_MIN_SIZE} to {_MAX_SIZE} px, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (BGR colour), got {channels}")
    if min(counts) < 0:
        raise ValueError(f"image counts must be >= 0, got {tuple(counts)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy seeds are non-negative), got {seed}")


def _refuse_existing(out: Path) -> None:
    """Never overwrite a user's data: only a missing or empty folder is accepted."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output folder {out} already exists and is not empty")


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """cv2.imwrite reports failure by return value; turn it into an exception."""
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"could not write {path}")


def _write_folder(
    out: Path, folder: str, defect: str | None, n: int, *, size: int, channels: int, seed: int
) -> None:
    """Write one split folder, plus the ground-truth masks when it holds a defect type."""
    image_dir = out / folder
    image_dir.mkdir(parents=True)
    mask_dir = out / "ground_truth" / defect if defect is not None else None
    if mask_dir is not None:
        mask_dir.mkdir(parents=True)
    for index in range(n):
        bgr, mask = render_sample(size, (seed, _SPLIT_IDS[folder], index), defect)
        pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if channels == 1 else bgr
        _write_png(image_dir / f"{index:03d}.png", pixels)
        if mask_dir is not None:
            _write_png(mask_dir / f"{index:03d}_mask.png", mask)


def _readme(counts: dict[str, int], size: int, channels: int, seed: int) -> str:
    """Human-readable provenance, so a copied folder still says what it is."""
    rows = "\n".join(f"| {folder} | {n} |" for folder, n in counts.items())
    mode = "colour BGR" if channels == 3 else "grayscale"
    return (
        "# Procedural demo dataset (MVTec AD layout)\n\n"
        "Generated by `pipeline.data.demo.generate_demo_dataset`. Each image shows a turned "
        "steel flange (disc with a central bore and chamfered edges) on a dark fixture, seen "
        "from a fixed camera. Good parts vary only in lighting gain, small pose jitter, groove "
        "phase, shading and noise. Defects: scratch (thin bright or dark curved line), pit "
        "(small dark holes with a bright rim), stain (semi-transparent brownish blotch), "
        "missing (chipped-off material at the outer or bore edge). Masks in `ground_truth/` "
        "are 0/255 and cover exactly the changed pixels, dilated by 1 px.\n\n"
        f"- size: {size} x {size} px, {mode} PNG\n"
        f"- seed: {seed} (output is byte-identical for the same settings)\n\n"
        "| folder | images |\n|---|---|\n"
        f"{rows}\n"
    )


def generate_demo_dataset(
    out: Path,
    *,
    size: int = 128,
    channels: int = 3,
    n_train: int = 400,
    n_test_good: int = 60,
    n_per_defect: int = 15,
    seed: int = 0,
) -> DemoSummary:
    """Write a deterministic demo dataset under `out` and return what was written.

    Raises ValueError for a size outside 64..512 px or channels not 1 or 3, and
    FileExistsError if `out` exists and is not an empty folder.
    """
    plan: list[tuple[str, str | None, int]] = [
        ("train/good", None, n_train),
        ("test/good", None, n_test_good),
        *((f"test/{name}", name, n_per_defect) for name in DEFECT_TYPES),
    ]
    _validate(size, channels, [n for _, _, n in plan], seed)
    out = Path(out)
    _refuse_existing(out)
    start = time.perf_counter()
    for folder, defect, n in plan:
        _write_folder(out, folder, defect, n, size=size, channels=channels, seed=seed)
    counts = {folder: n for folder, _, n in plan}
    (out / "README.md").write_text(_readme(counts, size, channels, seed), encoding="utf-8")
    return DemoSummary(root=out, counts=counts, seconds=time.perf_counter() - start)
