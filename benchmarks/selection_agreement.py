"""Does the synthetic selection set choose what real defects would? For trained bundles, the
image and pixel AUROC of each smoothing sigma and image-score pooling, measured on the synthetic
selection set (all that model selection may see) and on the real test set (what it must not).

    python benchmarks/selection_agreement.py RUN_DIR [RUN_DIR ...]

RUN_DIR is a train-flow run folder with its `bundle/`, e.g. one under benchmarks/.workspace/runs
left by `quality.py`. The data is the bundle's `data.path`. Nothing is retrained: the raw maps
of both sets are computed once and each setting is applied by the bundle's own module. Writes
benchmarks/results/selection-agreement-<date>.json and the table in benchmarks/README.md.
"""

import itertools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bundle_study import run_study  # noqa: E402
from benchmarks.quality import fmt  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.data.mvtec import load_test_set, load_train_splits  # noqa: E402
from pipeline.scoring import InspectionModule, raw_maps_of, smoothing_kernel  # noqa: E402
from pipeline.selection import (  # noqa: E402
    SyntheticSet,
    detection_quality,
    synthetic_validation_set,
)

BEGIN, END = "<!-- selection-agreement:begin -->", "<!-- selection-agreement:end -->"
SIGMAS = (0.0, 1.0, 2.0, 4.0, 8.0)
POOLINGS = (("max", 1), ("topk_mean", 16), ("topk_mean", 256))


def quality(
    module: InspectionModule, raw: torch.Tensor, labels: np.ndarray, masks: np.ndarray
) -> dict[str, float]:
    """Image and pixel AUROC of the module's current scoring settings on precomputed raw maps."""
    fused = module.fused_map(raw)
    scores = module.pool_score(fused).numpy()
    return detection_quality(SyntheticSet(np.empty(0), masks, labels), scores, fused[:, 0].numpy())


@torch.no_grad()
def grid(run_dir: Path) -> dict:
    """Every (sigma, pooling) on both sets, with the committed setting's place among them."""
    bundle = load_bundle(run_dir / "bundle")
    module, cfg = bundle.module, bundle.config
    root = Path(cfg.data.path)
    splits = load_train_splits(root, cfg.data, cfg.train.seed)
    sset = synthetic_validation_set(splits.val, cfg.train.anomalies, cfg.train.seed)
    test = load_test_set(root, cfg.data.image_size, splits.channels)
    test_labels = np.array([c != "good" for c in test.categories])
    raw_synthetic = raw_maps_of(module, sset.images)
    raw_test = raw_maps_of(module, test.images)
    rows = []
    for sigma, (pooling, topk) in itertools.product(SIGMAS, POOLINGS):
        module.smooth_kernel = smoothing_kernel(sigma)
        module.image_score, module.topk = pooling, topk
        synthetic = quality(module, raw_synthetic, sset.labels, sset.masks)
        real = quality(module, raw_test, test_labels, test.masks)
        rows.append(
            {
                "sigma": sigma,
                "pooling": "max" if pooling == "max" else f"top{topk}",
                "committed": sigma == cfg.score.smooth_sigma
                and pooling == cfg.score.image_score
                and (pooling == "max" or topk == cfg.score.topk),
                "synthetic": synthetic,
                "test": real,
            }
        )
    chosen = max(rows, key=lambda r: r["synthetic"]["objective"])
    best = max(rows, key=lambda r: r["test"]["objective"])
    synthetic_rank = np.argsort(np.argsort([r["synthetic"]["objective"] for r in rows]))
    test_rank = np.argsort(np.argsort([r["test"]["objective"] for r in rows]))
    return {
        "run": run_dir.name,
        "dataset": root.name,
        "model": cfg.model.name,
        "fusion_weights": dict(zip(module.map_names, module.weights.tolist(), strict=True)),
        "rank_correlation": float(np.corrcoef(synthetic_rank, test_rank)[0, 1]),
        "committed": next((r for r in rows if r["committed"]), None),
        "synthetic_choice": chosen,
        "test_best": best,
        "grid": rows,
    }


def setting(row: dict | None) -> str:
    return "n/a" if row is None else f"sigma {row['sigma']:g}, {row['pooling']}"


def table(results: list[dict], when: str, where: str) -> str:
    lines = [
        f"Measured {when} on {where}.",
        "",
        "| dataset | model | setting | which | synthetic image / pixel AUROC "
        "| test image / pixel AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for which in ("committed", "synthetic_choice", "test_best"):
            row = r[which]
            if row is None:
                continue
            s, t = row["synthetic"], row["test"]
            lines.append(
                f"| {r['dataset']} | {r['model']} | {setting(row)} | {which.replace('_', ' ')} "
                f"| {fmt(s['image_auroc'])} / {fmt(s['pixel_auroc'])} "
                f"| {fmt(t['image_auroc'])} / {fmt(t['pixel_auroc'])} |"
            )
    lines += ["", "Rank correlation of the synthetic and the test objective over all settings:"]
    lines += [f"- {r['dataset']} / {r['model']}: {r['rank_correlation']:.2f}" for r in results]
    return "\n".join(lines)


def main() -> None:
    run_study(
        __doc__.splitlines()[0],
        "selection-agreement",
        (BEGIN, END),
        grid,
        table,
        printed=lambda r: {k: v for k, v in r.items() if k != "grid"},
    )


if __name__ == "__main__":
    main()
