"""Can the image score be mended after training? For trained bundles, the test image and pixel
AUROC of the committed scoring against three post-training variants aimed at the false hot
spots of good parts, each on the same weights:

- `position centre`: subtract each map's per-pixel median over the held-out good images, so
  places where good parts always light up (a rim, a seam) stop raising the score;
- `border N px`: leave the outer N pixels out of the image score (the pixel map is kept);
- `flip mean`: average the raw maps of the image and its three flips (test-time augmentation).

    python benchmarks/scoring_variants.py RUN_DIR [RUN_DIR ...]

RUN_DIR is a train-flow run folder with its `bundle/`, e.g. one under benchmarks/.workspace/runs
left by `quality.py`. Map centres and scales are refitted on the held-out good split (`val`)
for every variant, as `fit_scoring` does. Writes benchmarks/results/scoring-variants-<date>.json
and the table in benchmarks/README.md.
"""

import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bundle_study import run_study  # noqa: E402
from benchmarks.quality import fmt  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.data.mvtec import load_test_set, load_train_splits  # noqa: E402
from pipeline.metrics import image_auroc, pixel_auroc  # noqa: E402
from pipeline.scoring import InspectionModule, fit_map_normalisation, raw_maps_of  # noqa: E402

BEGIN, END = "<!-- scoring-variants:begin -->", "<!-- scoring-variants:end -->"
BORDERS = (4, 8)
FLIPS = ((), (1,), (2,), (1, 2))  # image axes of (N, H, W, C)


def flip_mean_maps(module: InspectionModule, images: np.ndarray) -> torch.Tensor:
    """Raw maps averaged over the image and its flips, each flipped back into place."""
    total = torch.zeros(0)
    for axes in FLIPS:
        flipped = np.ascontiguousarray(np.flip(images, axis=axes)) if axes else images
        raw = raw_maps_of(module, flipped)
        raw = torch.flip(raw, [a + 1 for a in axes]) if axes else raw
        total = raw if total.numel() == 0 else total + raw
    return total / len(FLIPS)


def test_quality(
    module: InspectionModule,
    raw: torch.Tensor,
    labels: np.ndarray,
    masks: np.ndarray,
    categories: np.ndarray,
    pooled: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Image AUROC (overall and per defect type against the good parts) and pixel AUROC."""
    fused = module.fused_map(raw)
    scores = (pooled(fused) if pooled else module.pool_score(fused)).numpy()
    per_type = {}
    for defect in sorted(set(categories) - {"good"}):
        keep = (categories == defect) | ~labels
        per_type[defect] = image_auroc(labels[keep], scores[keep])
    return {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auroc(masks, fused[:, 0].numpy()),
        "per_type_image_auroc": per_type,
    }


def border_peak_share(module: InspectionModule, raw: torch.Tensor, good: np.ndarray) -> float:
    """Share of good images whose fused map peaks within BORDERS[0] px of the frame."""
    fused = module.fused_map(raw[torch.from_numpy(good)])[:, 0]
    h, w = fused.shape[-2:]
    rows, cols = np.unravel_index(fused.flatten(1).argmax(dim=1).numpy(), (h, w))
    b = BORDERS[0]
    near = (rows < b) | (rows >= h - b) | (cols < b) | (cols >= w - b)
    return float(near.mean())


def inner_max(border: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda fused: fused[..., border:-border, border:-border].flatten(1).amax(dim=1)


@torch.no_grad()
def variants(run_dir: Path) -> dict:
    """Every variant's test quality on one bundle."""
    bundle = load_bundle(run_dir / "bundle")
    module, cfg = bundle.module, bundle.config
    root = Path(cfg.data.path)
    splits = load_train_splits(root, cfg.data, cfg.train.seed)
    test = load_test_set(root, cfg.data.image_size, splits.channels)
    categories = np.array(test.categories)
    labels = categories != "good"
    args = (labels, test.masks, categories)
    raw_val, raw_test = raw_maps_of(module, splits.val), raw_maps_of(module, test.images)
    border_share = border_peak_share(module, raw_test, ~labels)
    rows = {"committed": test_quality(module, raw_test, *args)}
    for border in BORDERS:
        rows[f"border {border} px"] = test_quality(module, raw_test, *args, inner_max(border))

    position_center = raw_val.median(dim=0, keepdim=True).values
    fit_map_normalisation(module, raw_val - position_center)
    rows["position centre"] = test_quality(module, raw_test - position_center, *args)

    flip_val = flip_mean_maps(module, splits.val)
    fit_map_normalisation(module, flip_val)
    rows["flip mean"] = test_quality(module, flip_mean_maps(module, test.images), *args)
    return {
        "run": run_dir.name,
        "dataset": root.name,
        "model": cfg.model.name,
        "good_peaks_near_border": border_share,
        "variants": rows,
    }


def table(results: list[dict], when: str, where: str) -> str:
    defects = sorted(
        {d for r in results for d in r["variants"]["committed"]["per_type_image_auroc"]}
    )
    lines = [
        f"Measured {when} on {where}. Image AUROC per defect type is against all good parts.",
        "",
        "| dataset | model | variant | image AUROC | pixel AUROC | " + " | ".join(defects) + " |",
        "|---|---|---|---|---|" + "---|" * len(defects),
    ]
    for r in results:
        for name, q in r["variants"].items():
            per = [fmt(q["per_type_image_auroc"].get(d)) for d in defects]
            lines.append(
                f"| {r['dataset']} | {r['model']} | {name} | {fmt(q['image_auroc'])} "
                f"| {fmt(q['pixel_auroc'])} | " + " | ".join(per) + " |"
            )
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['dataset']} / {r['model']} (`{r['run']}`): the fused map of "
            f"{r['good_peaks_near_border']:.0%} of the good test images peaks within "
            f"{BORDERS[0]} px of the border."
        )
    return "\n".join(lines)


def main() -> None:
    run_study(
        __doc__.splitlines()[0],
        "scoring-variants",
        (BEGIN, END),
        variants,
        table,
    )


if __name__ == "__main__":
    main()
