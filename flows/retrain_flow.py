"""Retrain flow: new line data in, a challenger trained, measured and promoted only on merit.

Per (line, camera), as one task (so many lines run in parallel on the configured task
runner): ingest the new days (bad frames quarantined with reasons), check them for drift
against the champion's reference, train a challenger on the training pool, evaluate it and
the champion on the same frozen evaluation set, smoke-test it under stress, export it with
the parity check, then the gate. Every decision and its reasons are tags on the challenger's
model version; the run in the line's experiment holds the ingestion reports.

A killed retrain resumes: the pool folder and the run folder are named after the pool's
content, so the next run finds the checkpoint and continues it. A lock per (line, camera)
keeps a second retrain of the same line from running at the same time.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from data_contracts import CalibrationSummary, IngestReport
from data_contracts.bundle import BUNDLE_JSON, load_edge_bundle
from flows.drift_flow import artifact_key, drift_flow
from flows.export_flow import export_flow
from flows.runners import api_for_workers, task_runner
from flows.stress_flow import stress_flow
from flows.train_flow import train_flow
from pipeline import tracking
from pipeline.bundle import LoadedBundle, load_bundle
from pipeline.config import RunConfig, load_config
from pipeline.data.images import read_image, resize_image
from pipeline.errors import ExportError
from pipeline.evaluate_model import evaluate_module
from pipeline.line import (
    Scorer,
    StorePaths,
    freeze_evaluation_set,
    ingest_new_days,
    materialise_pool,
    select_training_pool,
)
from pipeline.line.layout import camera_dir, source_path
from pipeline.line.ledger import latest, read_entries
from pipeline.retrain.config import LineCamera, RetrainConfig, load_retrain_config
from pipeline.retrain.gate import Figures, GateDecision, decide
from pipeline.retrain.registry import alias_version, model_lock, promote
from pipeline.scoring import score_images
from pipeline.workspace import workspace

REGISTERED = "registered_version"  # marker in a run folder: training finished, this version


@dataclass
class LineOutcome:
    """What one (line, camera) retrain did; `skipped` says why no challenger was judged."""

    line: str
    camera: str
    model_name: str
    ingested: list[IngestReport] = field(default_factory=list)
    drift: str | None = None
    challenger: str | None = None
    champion_before: str | None = None
    decision: GateDecision | None = None
    promoted: bool = False
    skipped: str | None = None


def model_name(cfg: RetrainConfig, target: LineCamera) -> str:
    return f"{cfg.registry_prefix}-{target.line}-{target.camera}"


def discover_targets(cfg: RetrainConfig) -> list[LineCamera]:
    """The configured lines, or every <line>/<camera> folder under the data root."""
    if cfg.lines is not None:
        return cfg.lines
    root = Path(cfg.data_root)
    return [
        LineCamera(line=line.name, camera=cam.name)
        for line in sorted(p for p in root.iterdir() if p.is_dir())
        for cam in sorted(p for p in line.iterdir() if p.is_dir())
    ]


def challenger_config(cfg: RetrainConfig, name: str) -> RunConfig:
    path = Path(cfg.model_config_file) if cfg.model_config_file else None
    extra = [f"name={name}", f"tracking.experiment={name}", f"tracking.registered_model={name}"]
    return load_config(path, [*cfg.model_overrides, *extra])


def champion_bundle(name: str) -> LoadedBundle | None:
    if alias_version(tracking.connect(), name, tracking.CHAMPION) is None:
        return None
    return load_bundle(tracking.resolve_model_uri(f"{name}@{tracking.CHAMPION}"))


def champion_scorer(champion: LoadedBundle) -> Scorer:
    """Scores of the champion for unlabelled frames (the pool policy's `below_champion`)."""

    def score(paths: list[Path]) -> np.ndarray:
        module = champion.module
        images = [resize_image(read_image(p, module.channels), module.image_size) for p in paths]
        return score_images(module, np.stack(images))[0] if images else np.zeros(0)

    return score


def pool_tag(cfg: RunConfig, frames: list[str], frozen: str) -> str:
    """Names the pool by what it holds and what will be trained on it."""
    digest = hashlib.sha256()
    for part in (*sorted(frames), frozen, cfg.model_dump_json()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def new_day_folder(cfg: RetrainConfig, target: LineCamera, days: list[date], store: Path) -> Path:
    """Links to the newly accepted good and unknown frames: the batch the drift check tests."""
    paths = StorePaths.of(store, target.line, target.camera)
    folder = paths.root / "drift" / "-".join(d.isoformat() for d in days)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in latest(read_entries(paths.ledger)).values():
        if entry.day in days and entry.verdict == "accepted" and entry.label != "defect":
            link = folder / entry.name
            if not link.exists():
                source = source_path(
                    Path(cfg.data_root), target.line, target.camera, entry.day, entry.image
                )
                link.symlink_to(source)
    return folder


def figures_on(bundle: LoadedBundle, version: str, pool_dir: Path, out: Path) -> Figures:
    calibration = CalibrationSummary.model_validate(bundle.meta["calibration"])
    report = evaluate_module(
        bundle.module,
        calibration,
        pool_dir,
        out,
        model_name=str(bundle.meta["model_name"]),
        model_version=version,
    ).report
    return Figures(version, report.image_auroc, report.at_threshold.false_alarm_rate)


def train_challenger(run_cfg: RunConfig, pool_dir: Path, run_dir: Path) -> str:
    """Train (or resume, or reuse a finished run of the same pool) and return the version."""
    marker = run_dir / REGISTERED
    if marker.exists():
        return marker.read_text().strip()
    data = run_cfg.data.model_copy(update={"path": str(pool_dir)})
    outcome = train_flow(run_cfg.model_copy(update={"data": data}), run_dir=run_dir)
    marker.write_text(outcome.version + "\n")
    return outcome.version


def tag_decision(name: str, version: str, outcome: LineOutcome, frozen: str, pool: str) -> None:
    client = tracking.connect()
    decision = outcome.decision
    assert decision is not None
    tags = {
        "gate.decision": "promoted" if outcome.promoted else "rejected",
        "gate.reasons": " | ".join(decision.reasons),
        "gate.champion_before": outcome.champion_before or "none",
        "gate.frozen_set": frozen,
        "retrain.pool": pool,
        "retrain.drift": outcome.drift or "not checked",
        "retrain.quarantined": str(sum(len(r.quarantined) for r in outcome.ingested)),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value[:5000])


def log_ingestion(name: str, outcome: LineOutcome) -> None:
    """A run in the line's experiment with the ingestion reports and counts."""
    client = tracking.connect()
    experiment = tracking.ensure_experiment(client, name)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {tracking.MONITOR_TAG: "retrain", "line": outcome.line, "camera": outcome.camera}
    run_id = client.create_run(experiment, run_name=f"retrain-{stamp}", tags=tags).info.run_id
    metrics = {
        "ingest.days": len(outcome.ingested),
        "ingest.accepted": sum(
            r.accepted.good + r.accepted.defect + r.accepted.unknown for r in outcome.ingested
        ),
        "ingest.quarantined": sum(len(r.quarantined) for r in outcome.ingested),
        "ingest.rejected_rows": sum(len(r.rejected_rows) for r in outcome.ingested),
    }
    tracking.log_metrics(client, run_id, metrics)
    for report in outcome.ingested:
        client.log_dict(
            run_id, report.model_dump(mode="json"), f"ingest/{report.day.isoformat()}.json"
        )
    client.set_terminated(run_id, status="FINISHED")


@task(cache_policy=NONE)
def retrain_line(cfg: RetrainConfig, target: LineCamera) -> LineOutcome:
    """The whole loop for one (line, camera); see the module docstring."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logger = get_run_logger()
    name = model_name(cfg, target)
    outcome = LineOutcome(target.line, target.camera, name)
    store = Path(cfg.store) if cfg.store else workspace() / "lines"
    if not camera_dir(Path(cfg.data_root), target.line, target.camera).is_dir():
        outcome.skipped = f"no folder {target.line}/{target.camera} under {cfg.data_root}"
        return outcome
    with model_lock(workspace() / "locks", f"retrain-{name}", wait=False) as held:
        if not held:
            outcome.skipped = "another retrain of this line and camera is running"
            logger.warning("%s: %s", name, outcome.skipped)
            return outcome
        return _retrain_locked(cfg, target, outcome, store, logger)


def _retrain_locked(cfg, target, outcome: LineOutcome, store: Path, logger) -> LineOutcome:
    name = outcome.model_name
    run_cfg = challenger_config(cfg, name)
    champion = champion_bundle(name)
    outcome.champion_before = champion.version if champion else None
    channels = champion.module.channels if champion else run_cfg.data.channels
    outcome.ingested = ingest_new_days(
        Path(cfg.data_root),
        target.line,
        target.camera,
        store,
        channels,
        config=cfg.line_data.ingest,
    )
    for report in outcome.ingested:
        for bad in report.quarantined:
            logger.warning("%s %s: quarantined %s: %s", name, report.day, bad.path, bad.reason)
    log_ingestion(name, outcome)
    new_days = [r.day for r in outcome.ingested]
    if champion is not None and champion.has_drift_reference and new_days:
        batch = new_day_folder(cfg, target, new_days, store)
        if len(list(batch.iterdir())) >= champion.config.drift.min_batch:
            checked = drift_flow(name, batch, version=champion.version)
            outcome.drift = "drift" if checked.drift else "no drift"
    frozen = freeze_evaluation_set(store, target.line, target.camera, cfg.line_data.frozen)
    if frozen is None:
        outcome.skipped = (
            "frozen evaluation set not ready (needs "
            f"{cfg.line_data.frozen.min_good} held-out good and "
            f"{cfg.line_data.frozen.min_defect} defect frames)"
        )
        return outcome
    pool = select_training_pool(
        Path(cfg.data_root),
        store,
        target.line,
        target.camera,
        policy=cfg.line_data.pool,
        frozen_config=cfg.line_data.frozen,
        scorer=champion_scorer(champion) if champion else None,
        threshold=float(champion.module.threshold) if champion else None,
    )
    tag = pool_tag(run_cfg, [f.sha256 for f in pool.frames], frozen.fingerprint)
    judged = _judged_on(name, tag)
    if judged is not None:
        outcome.skipped = f"no new training data since v{judged[0]} ({judged[1]})"
        return outcome
    pool_dir = StorePaths.of(store, target.line, target.camera).pool(tag)
    if not (pool_dir / "pool.json").exists():
        materialise_pool(pool, pool_dir, data_root=Path(cfg.data_root), store_root=store)
    run_dir = workspace() / "runs" / f"retrain-{target.line}-{target.camera}-{tag}"
    version = train_challenger(run_cfg, pool_dir, run_dir)
    outcome.challenger = version
    challenger = load_bundle(tracking.resolve_model_uri(f"{name}/{version}"))
    reports = run_dir / "gate"
    new = figures_on(challenger, version, pool_dir, reports / "challenger")
    old = None
    if champion is not None:
        old = figures_on(champion, champion.version, pool_dir, reports / "champion")
    stress = stress_flow(name, pool_dir, version=version, settings=cfg.stress_smoke)
    outcome.decision = decide(
        new,
        old,
        stress_sanity=stress.report.sanity_passed,
        export_parity=export_parity(name, version, run_dir / "edge", pool_dir, logger),
        cfg=cfg.gate,
    )
    if outcome.decision.promote:
        promoted, what = promote(
            tracking.connect(), name, version, outcome.champion_before, workspace() / "locks"
        )
        outcome.promoted = promoted
        outcome.decision.reasons.append(what)
        outcome.decision.promote = promoted
    tag_decision(name, version, outcome, frozen.fingerprint, tag)
    logger.info("%s v%s: %s", name, version, outcome.decision.summary())
    return outcome


def _judged_on(name: str, tag: str) -> tuple[str, str] | None:
    """(version, gate decision) of a challenger already judged on this very pool."""
    versions = tracking.connect().search_model_versions(
        f"name = '{name}' and tags.`retrain.pool` = '{tag}'"
    )
    for version in versions:
        if "gate.decision" in version.tags:
            return str(version.version), version.tags["gate.decision"]
    return None


def export_parity(name: str, version: str, edge_dir: Path, pool_dir: Path, logger) -> bool:
    """Export once per challenger (a resumed retrain reuses the bundle); a graph that does not
    reproduce the lab fails the gate instead of the flow."""
    if (edge_dir / BUNDLE_JSON).exists():
        return load_edge_bundle(edge_dir).parity.passed
    try:
        return export_flow(
            name, version=version, out=edge_dir, data=pool_dir
        ).manifest.parity.passed
    except ExportError as err:
        logger.warning("%s v%s: export refused: %s", name, version, err)
        return False


def markdown_summary(outcomes: list[LineOutcome]) -> str:
    lines = [
        "# Retrain",
        "",
        "| model | new days | quarantined | drift | challenger | decision |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        decision = o.skipped or (o.decision.summary() if o.decision else "")
        lines.append(
            f"| {o.model_name} | {len(o.ingested)} | "
            f"{sum(len(r.quarantined) for r in o.ingested)} | {o.drift or '-'} | "
            f"{o.challenger or '-'} | {decision} |"
        )
    return "\n".join(lines)


@flow(name="retrain-lines", log_prints=True)
def retrain_lines(cfg: RetrainConfig, targets: list[LineCamera]) -> list[LineOutcome]:
    """One task per (line, camera), on the task runner this subflow was given."""
    futures = [retrain_line.submit(cfg, target) for target in targets]
    return [future.result() for future in futures]


@flow(name="retrain", log_prints=True)
def retrain_flow(config: str) -> list[LineOutcome]:
    """Retrain every (line, camera) of the retraining config file `config`, fanned out on the
    task runner it names (threads, processes or Dask)."""
    cfg = load_retrain_config(Path(config))
    tracking.connect()  # an unreachable MLflow fails here, before anything is ingested
    targets = discover_targets(cfg)
    runner = task_runner(cfg.task_runner)
    with api_for_workers(cfg.task_runner):
        outcomes = retrain_lines.with_options(task_runner=runner)(cfg, targets)
    create_markdown_artifact(
        markdown=markdown_summary(outcomes),
        key=artifact_key(cfg.registry_prefix, "retrain"),
        description="Retrain: ingestion, drift, gate decisions",
    )
    return outcomes
