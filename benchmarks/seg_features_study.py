"""Does the U-Net feature Gaussian (`seg_mahalanobis`) help a trained DRAEM bundle? For each
run folder, the train flow's own scoring steps (latent fit, map normalisation, fusion weights
chosen on synthetic defects, calibration, evaluation) are run twice on the same weights: with
the run's maps, and with `seg_mahalanobis` added. Training never sees the score maps (early
stopping uses the model's own anomaly map), so this is what training with the map would give.

    python benchmarks/seg_features_study.py RUN_DIR [RUN_DIR ...]

RUN_DIR is a train-flow run folder with its `bundle/`, e.g. one under benchmarks/.workspace/runs
left by `quality.py`. Writes benchmarks/results/seg-features-<date>.json and the table in
benchmarks/README.md.
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.bundle_study import run_study  # noqa: E402
from benchmarks.quality import fmt  # noqa: E402
from flows.train_flow import evaluate, fit_and_calibrate  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.data.mvtec import load_train_splits  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.training import TrainResult  # noqa: E402

BEGIN, END = "<!-- seg-features:begin -->", "<!-- seg-features:end -->"
ADDED = "seg_mahalanobis"


def with_maps(cfg: RunConfig, maps: dict[str, float]) -> RunConfig:
    return cfg.model_copy(update={"score": cfg.score.model_copy(update={"maps": maps})})


def score_with(cfg: RunConfig, result: TrainResult, splits, root: Path) -> dict:
    """The train flow's scoring, calibration and evaluation of fixed weights under `cfg`."""
    calibrated = fit_and_calibrate.fn(cfg, result, splits)
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate.fn(calibrated, root, Path(tmp), cfg).report
    chosen = max(calibrated.fusion_candidates, key=lambda row: row["objective"], default=None)
    return {
        "fusion_weights": calibrated.synthetic.fusion_weights,
        "synthetic_objective": chosen["objective"] if chosen else None,
        "image_auroc": report.image_auroc,
        "pixel_auroc": report.pixel_auroc,
        "pro": report.pro,
        "false_alarm_rate": report.at_threshold.false_alarm_rate,
        "recall": report.at_threshold.recall,
        "synthetic_recall": report.synthetic.recall if report.synthetic else None,
        "per_type_image_auroc": {d.defect: d.image_auroc for d in report.per_defect},
    }


def variants(run_dir: Path) -> dict:
    """The run's maps against the same plus `seg_mahalanobis`, on one bundle's weights."""
    bundle = load_bundle(run_dir / "bundle")
    cfg = bundle.config
    if cfg.model.name != "draem":
        raise ConfigError(f"{run_dir}: model '{cfg.model.name}' has no U-Net features")
    root = Path(cfg.data.path)
    splits = load_train_splits(root, cfg.data, cfg.train.seed)
    result = TrainResult(model=bundle.module.model, device="cpu")
    maps = {name: w for name, w in cfg.score.maps.items() if name != ADDED}
    rows = {
        "run's maps": score_with(with_maps(cfg, maps), result, splits, root),
        f"+ {ADDED}": score_with(with_maps(cfg, {**maps, ADDED: 1.0}), result, splits, root),
    }
    return {"run": run_dir.name, "dataset": root.name, "variants": rows}


def weights(row: dict) -> str:
    return ", ".join(f"{n} {w:.2f}" for n, w in row["fusion_weights"].items() if w > 0)


def table(results: list[dict], when: str, where: str) -> str:
    lines = [
        f"Measured {when} on {where}; fusion weights chosen on synthetic defects of the val split.",
        "",
        "| dataset | run | maps | chosen weights | synthetic objective | image AUROC "
        "| pixel AUROC | PRO | FAR@thr | recall@thr |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, q in r["variants"].items():
            lines.append(
                f"| {r['dataset']} | `{r['run']}` | {name} | {weights(q)} "
                f"| {fmt(q['synthetic_objective'])} | {fmt(q['image_auroc'])} "
                f"| {fmt(q['pixel_auroc'])} | {fmt(q['pro'])} | {fmt(q['false_alarm_rate'])} "
                f"| {fmt(q['recall'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    run_study(__doc__.splitlines()[0], "seg-features", (BEGIN, END), variants, table)


if __name__ == "__main__":
    main()
