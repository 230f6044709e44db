"""Drift flow: check a batch of new line images against a model's reference profile.

The model is the registered model's `champion` unless a version (or a bundle folder) is
given. The report goes to the workspace, to MLflow (the model's experiment: one monitor run
per model version whose metrics form a time series across batches, plus the HTML and JSON as
artifacts) and to Prefect as a markdown artifact. The flow returns the decision.
"""

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from data_contracts import DriftReport
from pipeline import tracking
from pipeline.bundle import LoadedBundle, load_bundle
from pipeline.config import DriftConfig
from pipeline.drift.monitor import DriftCheck, check_batch, load_batch
from pipeline.reports.drift_report import write_drift_html
from pipeline.workspace import workspace


@dataclass
class DriftOutcome:
    """The decision with where its report went."""

    report: DriftReport
    json_path: Path
    html_path: Path
    mlflow_run_id: str

    @property
    def drift(self) -> bool:
        return self.report.drift


def model_reference(model: str, version: str | None) -> str:
    """A bundle folder as is; a registered name gets `/version`, or `@champion` by default."""
    if Path(model).exists() or "@" in model or "/" in model:
        return model
    return f"{model}/{version}" if version else f"{model}@{tracking.CHAMPION}"


@task(cache_policy=NONE)
def load_model(model: str, version: str | None) -> LoadedBundle:
    return load_bundle(tracking.resolve_model_uri(model_reference(model, version)))


@task(cache_policy=NONE)
def check(bundle: LoadedBundle, batch_dir: Path, cfg: DriftConfig) -> DriftCheck:
    logger = get_run_logger()
    reference = bundle.drift_reference()
    batch = load_batch(batch_dir, reference.image_size, reference.channels, cfg.min_batch)
    for frame in batch.unreadable:
        logger.warning("unreadable frame left out: %s: %s", frame.path, frame.problem)
    return check_batch(
        bundle.module,
        reference,
        batch,
        cfg,
        model_name=str(bundle.meta["model_name"]),
        model_version=bundle.version,
    )


@task(cache_policy=NONE)
def write_reports(result: DriftCheck, bundle: LoadedBundle, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "drift_report.json"
    json_path.write_text(json.dumps(result.report.model_dump(mode="json"), indent=2) + "\n")
    html_path = write_drift_html(
        result.report,
        bundle.drift_reference(),
        result.observation,
        result.batch.images,
        result.batch.paths,
        out_dir / "drift_report.html",
    )
    return json_path, html_path


def drift_metrics(report: DriftReport) -> dict[str, float | None]:
    """One row of the time series: the decision, sizes, and each test's p-value and effect."""
    metrics: dict[str, float | None] = {
        "drift.detected": float(report.drift),
        "drift.n_batch": report.n_batch,
        "drift.unreadable": len(report.unreadable),
        "drift.flag_rate": report.flag_rate,
        "drift.domain_auc": report.domain_classifier.auc,
    }
    for test in report.tests:
        metrics[f"drift.p.{test.name}"] = test.p_value
        metrics[f"drift.effect.{test.name}"] = test.effect_size
    return metrics


@task(cache_policy=NONE)
def log_to_mlflow(
    report: DriftReport, bundle: LoadedBundle, json_path: Path, html_path: Path
) -> str:
    client = tracking.connect()
    run_id = tracking.monitor_run(
        client, bundle.config.tracking.experiment, report.model_name, report.model_version
    )
    step = tracking.next_step(client, run_id, "drift.detected")
    tracking.log_metrics(client, run_id, drift_metrics(report), step=step)
    folder = f"drift/{step:04d}-{json_path.parent.name}"
    client.log_artifact(run_id, str(html_path), folder)
    client.log_artifact(run_id, str(json_path), folder)
    client.set_tag(run_id, "last_batch", report.batch)
    client.set_tag(run_id, "last_decision", "drift" if report.drift else "no drift")
    if report.model_version != "unregistered":
        client.set_model_version_tag(
            report.model_name,
            report.model_version,
            "drift.last_decision",
            "drift" if report.drift else "no drift",
        )
    return run_id


def markdown_summary(report: DriftReport, html_path: Path) -> str:
    verdict = "**DRIFT**" if report.drift else "no drift"
    lines = [
        f"# Drift check: {verdict}",
        f"Model `{report.model_name}` version {report.model_version}, batch `{report.batch}`: "
        f"{report.n_batch} frames tested, {len(report.unreadable)} unreadable, "
        f"alpha {report.alpha}.",
        "",
        "| test | statistic | p-value | level | shifted | effect |",
        "|---|---|---|---|---|---|",
    ]
    for t in report.tests:
        effect = "n/a" if t.effect_size is None else f"{t.effect_size:+.3f}"
        lines.append(
            f"| {t.name} | {t.statistic:.4g} | {t.p_value:.3g} | {t.level:.3g} | "
            f"{'yes' if t.shifted else 'no'} | {effect} |"
        )
    lines += ["", f"Report: `{html_path}`"]
    return "\n".join(lines)


def artifact_key(model_name: str, kind: str = "drift") -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")


@flow(name="drift", log_prints=True)
def drift_flow(
    model: str,
    batch: Path,
    version: str | None = None,
    alpha: float | None = None,
) -> DriftOutcome:
    """Check `batch` (a folder of images) with the champion of `model`, or `version` of it,
    or a bundle folder; returns the decision (`.drift`) with the report and where it went."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    bundle = load_model(model, version)
    cfg = bundle.config.drift
    if alpha is not None:
        cfg = DriftConfig.model_validate({**cfg.model_dump(), "alpha": alpha})
    result = check(bundle, Path(batch), cfg)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = (
        workspace()
        / "drift"
        / f"{result.report.model_name}-{bundle.version}"
        / f"{stamp}-{Path(batch).name}"
    )
    json_path, html_path = write_reports(result, bundle, out_dir)
    run_id = log_to_mlflow(result.report, bundle, json_path, html_path)
    create_markdown_artifact(
        markdown=markdown_summary(result.report, html_path),
        key=artifact_key(result.report.model_name),
        description="Drift check of a batch of line images",
    )
    return DriftOutcome(result.report, json_path, html_path, run_id)
