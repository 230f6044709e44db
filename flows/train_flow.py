"""Train flow: validate the data, train, calibrate, evaluate, log to MLflow and register.

Each step is a small task around a `pipeline` function; the flow holds no ML logic. It runs
in Prefect's ephemeral mode by default (state in the workspace) and against a real Prefect
server when `PREFECT_API_URL` is set. Large in-memory values (images, models) pass between
tasks directly, so tasks do not cache or persist results.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from data_contracts import CalibrationSummary, DriftReference, SyntheticCheck
from pipeline import tracking
from pipeline.bundle import (
    DRIFT_REFERENCE,
    git_commit,
    package_versions,
    set_bundle_version,
    write_bundle,
)
from pipeline.calibration import calibrate
from pipeline.config import RunConfig
from pipeline.data.demo import generate_demo_dataset
from pipeline.data.mvtec import TrainSplits, load_train_splits
from pipeline.data.validate import validate_dataset
from pipeline.drift.profile import reference_from_splits
from pipeline.evaluate_model import Evaluation, evaluate_module, headline_metrics
from pipeline.preflight import check_before_training
from pipeline.scoring import InspectionModule, fit_scoring, score_images
from pipeline.selection import choose_fusion_weights, synthetic_check, synthetic_validation_set
from pipeline.training import TrainResult, train_model
from pipeline.workspace import workspace

BUNDLE_ARTIFACT = "bundle"
RUN_CONFIG = "run_config.json"


@dataclass
class TrainOutcome:
    """What a finished training run produced and where to find it."""

    run_id: str
    experiment: str
    registered_model: str
    version: str
    run_dir: Path
    evaluation: Evaluation
    calibration: CalibrationSummary
    train_seconds: float
    train_images_per_s: float | None
    data_wait_share: float | None
    skipped_images: int


def data_root(cfg: RunConfig) -> Path:
    """The configured dataset, or the demo data (generated into the workspace once)."""
    if cfg.data.path is not None:
        return Path(cfg.data.path)
    root = workspace() / "demo-data"
    if not (root / "train" / "good").is_dir():
        generate_demo_dataset(root)
    return root


@task(cache_policy=NONE)
def validate_data(root: Path, cfg: RunConfig) -> list[str]:
    """List every problem; the run goes on (bad files are skipped) unless training is impossible."""
    logger = get_run_logger()
    problems = [str(p) for p in validate_dataset(root, channels=cfg.data.channels)]
    for line in problems:
        logger.warning("data problem: %s", line)
    check_before_training(cfg, root)
    return problems


@task(cache_policy=NONE)
def load_data(root: Path, cfg: RunConfig) -> TrainSplits:
    return load_train_splits(root, cfg.data, cfg.train.seed)


@task(cache_policy=NONE)
def train(cfg: RunConfig, splits: TrainSplits, run_dir: Path, client, run_id: str) -> TrainResult:
    def on_epoch(row: dict[str, float]) -> None:
        metrics = {k: v for k, v in row.items() if k != "epoch"}
        tracking.log_metrics(client, run_id, metrics, step=int(row["epoch"]))

    return train_model(
        cfg,
        splits.fit,
        splits.val,
        splits.channels,
        checkpoint=run_dir / "checkpoint.pt",
        on_epoch=on_epoch,
    )


@dataclass
class Calibrated:
    """The finished scoring module and what was fitted to make it."""

    module: InspectionModule
    calibration: CalibrationSummary
    normalisation: dict
    fusion_candidates: list[dict]
    synthetic: SyntheticCheck
    drift_reference: DriftReference


@task(cache_policy=NONE)
def fit_and_calibrate(cfg: RunConfig, result: TrainResult, splits: TrainSplits) -> Calibrated:
    """Latent Gaussian on the fit split, map normalisation on val, fusion weights on synthetic
    defects of val (when configured), threshold on calib, then the synthetic recall check and
    the drift reference profile of the held-out good images (val and calib)."""
    module = InspectionModule(result.model, cfg.score, cfg.data.image_size, splits.channels)
    module = module.to(result.device)
    norm = fit_scoring(module, splits.fit, splits.val)
    sset = synthetic_validation_set(splits.val, cfg.train.anomalies, cfg.train.seed)
    candidates = choose_fusion_weights(module, sset) if cfg.score.fusion == "synthetic" else []
    scores, _ = score_images(module, splits.calib)
    calibration = calibrate(scores, cfg.calibration.alpha, cfg.calibration.budgets)
    module.threshold.fill_(calibration.threshold)
    check = synthetic_check(module, sset)
    reference = reference_from_splits(
        module, splits, scores, calibration.alpha, cfg.drift.components
    )
    return Calibrated(module.cpu(), calibration, norm, candidates, check, reference)


@task(cache_policy=NONE)
def evaluate(calibrated: Calibrated, root: Path, run_dir: Path, cfg: RunConfig) -> Evaluation:
    return evaluate_module(
        calibrated.module,
        calibrated.calibration,
        root,
        run_dir / "reports",
        model_name=cfg.tracking.registered_model,
        synthetic=calibrated.synthetic,
    )


@task(cache_policy=NONE)
def log_and_register(
    client,
    run_id: str,
    cfg: RunConfig,
    calibrated: Calibrated,
    evaluation: Evaluation,
    splits: TrainSplits,
    result: TrainResult,
    run_dir: Path,
    problems: list[str],
) -> str:
    """Metrics, reports and the bundle to the run; a new registry version aliased challenger."""
    bundle_dir = write_bundle(
        run_dir / BUNDLE_ARTIFACT,
        calibrated.module,
        cfg,
        calibrated.calibration,
        data_fingerprint=splits.fingerprint,
        drift_reference=calibrated.drift_reference,
    )
    metrics = headline_metrics(evaluation.report)
    metrics.update(
        {
            "train_seconds": result.seconds,
            "train_images_per_s": result.mean_of("images_per_s"),
            "data_wait_share": result.mean_of("data_wait_share"),
            "train_bf16_autocast": float(result.bf16_autocast),
            "best_epoch": result.best_epoch,
            "skipped_images": len(splits.skipped) + evaluation.skipped,
            "n_fit": len(splits.fit),
            "n_val": len(splits.val),
            "n_calib": len(splits.calib),
        }
    )
    tracking.log_metrics(client, run_id, metrics)
    client.log_artifact(run_id, str(evaluation.json_path), "reports")
    client.log_artifact(run_id, str(evaluation.html_path), "reports")
    if problems:
        (run_dir / "data_problems.txt").write_text("\n".join(problems) + "\n")
        client.log_artifact(run_id, str(run_dir / "data_problems.txt"), "reports")
    tags = {"data_fingerprint": splits.fingerprint, "model_family": cfg.model.name}
    client.set_tag(run_id, "data_fingerprint", splits.fingerprint)
    client.set_tag(run_id, "git_commit", git_commit() or "unknown")
    client.log_dict(run_id, package_versions(), "reports/packages.json")
    client.log_artifact(run_id, str(bundle_dir / DRIFT_REFERENCE), "drift")
    # register first so the bundle carries its version, then upload the finished bundle
    version = tracking.register_bundle(
        client, cfg.tracking.registered_model, run_id, BUNDLE_ARTIFACT, tags
    )
    set_bundle_version(bundle_dir, version)
    client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
    client.set_tag(run_id, "registered_version", version)
    return version


@flow(name="train", log_prints=True)
def train_flow(cfg: RunConfig, run_dir: Path | None = None) -> TrainOutcome:
    """Validate -> train -> calibrate -> evaluate -> log and register (alias `challenger`).

    Passing the `run_dir` of an interrupted run resumes training from its checkpoint.
    """
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    root = data_root(cfg)
    problems = validate_data(root, cfg)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = run_dir or workspace() / "runs" / f"{cfg.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "checkpoint.pt").exists()
    (run_dir / RUN_CONFIG).write_text(cfg.model_dump_json(indent=2) + "\n")
    client = tracking.connect()
    run_id = tracking.start_run(
        client,
        cfg.tracking.experiment,
        run_dir.name,
        {"dataset": str(root), "run_dir": str(run_dir), "resumed": str(resuming).lower()},
    )
    try:
        tracking.log_params(client, run_id, cfg.flat())
        splits = load_data(root, cfg)
        result = train(cfg, splits, run_dir, client, run_id)
        calibrated = fit_and_calibrate(cfg, result, splits)
        client.log_dict(run_id, calibrated.normalisation, "reports/map_normalisation.json")
        if calibrated.fusion_candidates:
            client.log_dict(run_id, calibrated.fusion_candidates, "reports/fusion_candidates.json")
        evaluation = evaluate(calibrated, root, run_dir, cfg)
        calibration = calibrated.calibration
        version = log_and_register(
            client, run_id, cfg, calibrated, evaluation, splits, result, run_dir, problems
        )
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return TrainOutcome(
        run_id=run_id,
        experiment=cfg.tracking.experiment,
        registered_model=cfg.tracking.registered_model,
        version=version,
        run_dir=run_dir,
        evaluation=evaluation,
        calibration=calibration,
        train_seconds=result.seconds,
        train_images_per_s=result.mean_of("images_per_s"),
        data_wait_share=result.mean_of("data_wait_share"),
        skipped_images=len(splits.skipped) + evaluation.skipped,
    )
