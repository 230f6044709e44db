"""Drift monitor calibration and power on magnetic_tile.

    python benchmarks/drift.py [--bundle DIR] [--null-batches 200] [--shift-batches 100]

The model is the magnetic_tile DRAEM bundle trained by `benchmarks/quality.py` (the newest
one in benchmarks/.workspace unless --bundle is given). Its reference profile is built as the
train flow builds it: held-out good training images (val + calib of the same seeded split)
and the calibration scores. Batches are random draws (without replacement within a batch)
from the 238 good *test* images, which the reference never saw:

- no shift, at least 200 batches per window: the false-alarm rate of the decision;
- each shift applied to the full-resolution image before resizing, as a camera would see it,
  100 batches per window: the detection rate.

Each image is measured once per condition (statistics, features, score) and batches are
index draws, so the tests themselves are what runs per batch. Writes
benchmarks/results/drift-<date>.json and the table in benchmarks/README.md.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
os.environ.setdefault("AEINSPECT_HOME", str(HERE / ".workspace"))
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.quality import machine, update_readme  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.data.images import list_images, read_image, resize_image  # noqa: E402
from pipeline.data.mvtec import load_train_splits  # noqa: E402
from pipeline.drift.monitor import check_observation  # noqa: E402
from pipeline.drift.profile import Observation, observe, reference_from_splits  # noqa: E402
from pipeline.drift.statistics import image_statistics  # noqa: E402
from pipeline.scoring import score_images  # noqa: E402

BEGIN, END = "<!-- drift:begin -->", "<!-- drift:end -->"
WINDOWS = (25, 50, 100)
NOISE_SIGMA = 5.0  # grey levels (about 2 % of full scale)


def _lut(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    table = np.clip(np.round(fn(np.arange(256, dtype=np.float64))), 0, 255).astype(np.uint8)
    return lambda img: cv2.LUT(img, table).reshape(img.shape)


def _blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=1.0).reshape(img.shape)


def _noise(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = img.astype(np.float32) + rng.normal(0, NOISE_SIGMA, img.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _camera_shift(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    # whole pixels: a sub-pixel move would also blur (bilinear), which is not what a knock does
    move = np.float32([[1, 0, round(0.05 * w)], [0, 1, round(0.05 * h)]])
    out = cv2.warpAffine(img, move, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


# name -> (description, function of (image, index)); brightness as albumentations defines it
# (RandomBrightnessContrast: a shift of 10 % of the full scale), exposure as a gain
SHIFTS: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "brightness -10%": ("add -0.1 x 255", lambda im, i: _lut(lambda v: v - 25.5)(im)),
    "brightness +10%": ("add +0.1 x 255", lambda im, i: _lut(lambda v: v + 25.5)(im)),
    "exposure x0.9": ("multiply by 0.9", lambda im, i: _lut(lambda v: v * 0.9)(im)),
    "gamma 0.8": ("255 (v/255)^0.8", lambda im, i: _lut(lambda v: 255 * (v / 255) ** 0.8)(im)),
    "gamma 1.25": ("255 (v/255)^1.25", lambda im, i: _lut(lambda v: 255 * (v / 255) ** 1.25)(im)),
    "blur sigma 1": ("Gaussian, sigma 1 px", lambda im, i: _blur(im)),
    "sensor noise": (f"Gaussian, sigma {NOISE_SIGMA:g} grey levels", _noise),
    "camera shift 5%": ("translate 5 % of width and height", lambda im, i: _camera_shift(im)),
}


def newest_bundle() -> Path:
    runs = sorted((HERE / ".workspace" / "runs").glob("bench-magnetic_tile-draem-*/bundle"))
    if not runs:
        raise SystemExit("no magnetic_tile DRAEM bundle: run benchmarks/quality.py first")
    return runs[-1]


def measure(module, reference, originals: list[np.ndarray], size: int, shift=None) -> Observation:
    frames = [img if shift is None else shift(img, i) for i, img in enumerate(originals)]
    stats = image_statistics(frames, reference.channels)
    images = np.stack([resize_image(f, size) for f in frames])
    return observe(module, reference, images, stats)


def rate(reference, obs: Observation, paths, cfg, window: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits, fired = 0, {}
    began = time.perf_counter()
    for _ in range(n):
        idx = rng.choice(len(obs.scores), window, replace=False)
        batch = Observation(obs.stats[idx], obs.features[idx], obs.scores[idx])
        report = check_observation(
            reference,
            batch,
            [paths[i] for i in idx],
            cfg,
            model_name="bench",
            model_version="0",
            batch="bench",
        )
        hits += report.drift
        for test in report.tests:
            fired[test.name] = fired.get(test.name, 0) + test.shifted
    return {
        "window": window,
        "batches": n,
        "rate": hits / n,
        "per_test": {k: v / n for k, v in fired.items()},
        "seconds_per_check": (time.perf_counter() - began) / n,
    }


def table(result: dict, when: str, where: str) -> str:
    heads = " | ".join(f"window {w}" for w in WINDOWS)
    lines = [
        f"Measured {when} on {where}; model `{result['model']}`, reference of "
        f"{result['n_reference']} held-out good images, alpha {result['alpha']}.",
        "",
        f"| condition | definition | {heads} | tests that fire most (window 50) |",
        "|---|---|" + "---|" * len(WINDOWS) + "---|",
    ]
    for row in result["conditions"]:
        rates = " | ".join(f"{r['rate']:.3f} ({r['batches']})" for r in row["windows"])
        w50 = next(r for r in row["windows"] if r["window"] == 50)["per_test"]
        top = sorted(w50.items(), key=lambda kv: -kv[1])[:3]
        fired = ", ".join(f"{k} {v:.2f}" for k, v in top if v > 0) or "none"
        lines.append(f"| {row['condition']} | {row['definition']} | {rates} | {fired} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--null-batches", type=int, default=200)
    parser.add_argument("--shift-batches", type=int, default=100)
    args = parser.parse_args()
    bundle_dir = args.bundle or newest_bundle()
    bundle = load_bundle(bundle_dir)
    cfg, module = bundle.config, bundle.module
    root = SHARED / "magnetic_tile"
    splits = load_train_splits(root, cfg.data, cfg.train.seed)
    calib_scores, _ = score_images(module, splits.calib)
    reference = reference_from_splits(
        module, splits, calib_scores, bundle.meta["alpha"], cfg.drift.components
    )
    files = list_images(root / "test" / "good")
    originals = [read_image(p, splits.channels) for p in files]
    paths = [str(p) for p in files]
    size = cfg.data.image_size
    conditions = [("no shift", "held-out good images as they are", None)]
    conditions += [(name, desc, fn) for name, (desc, fn) in SHIFTS.items()]
    rows = []
    for name, desc, fn in conditions:
        began = time.perf_counter()
        obs = measure(module, reference, originals, size, fn)
        n = args.null_batches if fn is None else args.shift_batches
        windows = [rate(reference, obs, paths, cfg.drift, w, n, seed=w) for w in WINDOWS]
        rows.append({"condition": name, "definition": desc, "windows": windows})
        summary = ", ".join(f"w{r['window']} {r['rate']:.3f}" for r in windows)
        print(f"{name:<18} {summary}  ({time.perf_counter() - began:.0f} s)", flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    result = {
        "date": when,
        "machine": machine(),
        "model": f"{bundle.meta['model_name']} ({bundle.meta['model_family']})",
        "bundle": os.path.relpath(bundle_dir, REPO),
        "alpha": cfg.drift.alpha,
        "n_reference": len(reference.stats),
        "n_pool": len(files),
        "drift_config": cfg.drift.model_dump(),
        "conditions": rows,
    }
    out = HERE / "results" / f"drift-{when}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    update_readme(table(result, when, result["machine"]), BEGIN, END)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
