"""Stress flow: lighting, optics and adversarial perturbations of one model version.

The report (contract JSON and self-contained HTML) goes to the workspace, to MLflow (a run in
the model's experiment, tagged with the model version, whose metrics are the figures per
perturbation, severity and attack) and to Prefect as a markdown artifact. The model version
gets the tag `stress.sanity` so a promotion gate can require a passed stress test.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from data_contracts import StressReport
from flows.drift_flow import artifact_key, load_model
from pipeline import tracking
from pipeline.bundle import LoadedBundle
from pipeline.config import StressConfig, override_section
from pipeline.reports.stress_report import write_stress_html
from pipeline.stress.suite import StressRun, load_test_frames, run_stress
from pipeline.workspace import workspace


@dataclass
class StressOutcome:
    report: StressReport
    json_path: Path
    html_path: Path
    mlflow_run_id: str


@task(cache_policy=NONE)
def stress(bundle: LoadedBundle, data: Path, cfg: StressConfig) -> StressRun:
    logger = get_run_logger()
    test = load_test_frames(data, bundle.module.channels)
    for problem in test.unreadable:
        logger.warning("unreadable test image left out: %s", problem)
    return run_stress(
        bundle.module,
        test,
        cfg,
        model_name=str(bundle.meta["model_name"]),
        model_version=bundle.version,
        dataset=str(data),
        reference=bundle.drift_reference() if bundle.has_drift_reference else None,
        drift_cfg=bundle.config.drift,
        progress=lambda line: logger.info("stress: %s", line),
    )


def stress_metrics(report: StressReport) -> dict[str, float | None]:
    """Flat figures for MLflow: clean, per perturbation and severity, per attack."""
    out: dict[str, float | None] = {
        "clean.false_alarm_rate": report.clean.false_alarm_rate,
        "clean.miss_rate": report.clean.miss_rate,
        "clean.auroc": report.clean.auroc,
        "sanity_passed": float(report.sanity_passed),
    }
    for p in report.perturbations:
        key = f"{p.perturbation}.{p.severity}"
        out[f"far.{key}"] = p.figures.false_alarm_rate
        out[f"miss.{key}"] = p.figures.miss_rate
        out[f"auroc.{key}"] = p.figures.auroc
        out[f"drift.{key}"] = None if p.drift_fired is None else float(p.drift_fired)
    for a in report.attacks:
        key = f"{a.method}{a.steps}.eps{a.eps:g}"
        out[f"attack.{key}.false_alarm_success"] = a.false_alarm_success
        out[f"attack.{key}.hidden_defect_success"] = a.hidden_defect_success
        out[f"attack.{key}.robust_auroc"] = a.robust_auroc
    return out


@task(cache_policy=NONE)
def log_to_mlflow(report: StressReport, bundle: LoadedBundle, out_dir: Path) -> str:
    client = tracking.connect()
    experiment_id = tracking.ensure_experiment(client, bundle.config.tracking.experiment)
    tags = {
        tracking.MONITOR_TAG: "stress",
        "model_name": report.model_name,
        "model_version": report.model_version,
        "sanity": "passed" if report.sanity_passed else "failed",
    }
    run = client.create_run(experiment_id, run_name=out_dir.name, tags=tags)
    run_id = run.info.run_id
    tracking.log_metrics(client, run_id, stress_metrics(report))
    client.log_artifact(run_id, str(out_dir / "stress_report.json"), "stress")
    client.log_artifact(run_id, str(out_dir / "stress_report.html"), "stress")
    client.set_terminated(run_id, status="FINISHED")
    if report.model_version != "unregistered":
        name, version = report.model_name, report.model_version
        client.set_model_version_tag(name, version, "stress.sanity", tags["sanity"])
        client.set_model_version_tag(name, version, "stress.run", run_id)
    return run_id


def markdown_summary(report: StressReport) -> str:
    lines = [
        f"# Stress test of `{report.model_name}` v{report.model_version}",
        f"Clean: FAR {report.clean.false_alarm_rate}, miss rate {report.clean.miss_rate}, "
        f"AUROC {report.clean.auroc}. Sanity checks: "
        f"{'passed' if report.sanity_passed else 'FAILED'}.",
        "",
        "| perturbation | severity | FAR | miss rate | AUROC | drift fired |",
        "|---|---|---|---|---|---|",
    ]
    for p in report.perturbations:
        f = p.figures
        lines.append(
            f"| {p.perturbation} | {p.severity} | {f.false_alarm_rate} | {f.miss_rate} | "
            f"{f.auroc} | {p.drift_fired} |"
        )
    lines += [
        "",
        "| attack | eps | false-alarm success | hidden-defect success | robust AUROC |",
        "|---|---|---|---|---|",
    ]
    for a in report.attacks:
        lines.append(
            f"| {a.method}-{a.steps} | {a.eps:g}/255 | {a.false_alarm_success} | "
            f"{a.hidden_defect_success} | {a.robust_auroc} |"
        )
    return "\n".join(lines)


@flow(name="stress", log_prints=True)
def stress_flow(
    model: str, data: Path, version: str | None = None, settings: list[str] | None = None
) -> StressOutcome:
    """Stress-test `model` (its champion, `version` of it, or a bundle folder) on the labelled
    MVTec-layout test set in `data`; the bundle's `stress` config with `key=value` settings."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    bundle = load_model(model, version)
    cfg = override_section(bundle.config.stress, list(settings or []), "stress settings")
    run = stress(bundle, Path(data), cfg)
    report = run.report
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = workspace() / "stress" / f"stress-{report.model_name}-v{report.model_version}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "stress_report.json"
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    html_path = write_stress_html(report, run.examples, out_dir / "stress_report.html")
    run_id = log_to_mlflow(report, bundle, out_dir)
    create_markdown_artifact(
        markdown=markdown_summary(report),
        key=artifact_key(report.model_name, "stress"),
        description="Stress test of a model version",
    )
    return StressOutcome(report, json_path, html_path, run_id)
