"""The drift flow with real Prefect (ephemeral), real MLflow (SQLite) and a trained bundle:
the reference travels with the model, a shifted batch is caught, the reports land in the
model's experiment as a time series, and the CLI answers in one line."""

import json
from pathlib import Path

import cv2
import numpy as np
from mlflow.tracking import MlflowClient
from prefect.artifacts import Artifact

from data_contracts import DriftReport
from flows.drift_flow import artifact_key, drift_flow
from pipeline.tracking import tracking_uri


def _brightened(src: Path, dst: Path, offset: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(int)
        cv2.imwrite(str(dst / path.name), np.clip(img + offset, 0, 255).astype(np.uint8))
    return dst


def test_training_saves_the_reference_with_the_bundle_and_in_mlflow(in_trained_workspace):
    outcome, cfg, _ = in_trained_workspace
    bundle = outcome.run_dir / "bundle"
    meta = json.loads((bundle / "bundle.json").read_text())
    assert "drift_reference.json" in meta["files"]
    reference = json.loads((bundle / "drift_reference.json").read_text())
    n_held_out = outcome.evaluation.report.calibration.n_calibration
    assert len(reference["scores"]) == n_held_out
    assert len(reference["stats"]) > n_held_out  # val + calib
    client = MlflowClient(tracking_uri())
    logged = {a.path for a in client.list_artifacts(outcome.run_id, "drift")}
    assert logged == {"drift/drift_reference.json"}


def test_shifted_batch_is_caught_and_logged_as_a_time_series(
    in_trained_workspace, demo_data, tmp_path
):
    outcome, cfg, _ = in_trained_workspace
    bundle = str(outcome.run_dir / "bundle")
    good = demo_data / "test" / "good"
    calm = drift_flow(bundle, good)
    dark = drift_flow(bundle, _brightened(good, tmp_path / "dark", -70))
    assert not calm.drift
    assert dark.drift and dark.report.reasons
    assert DriftReport.model_validate_json(dark.json_path.read_text()) == dark.report
    html = dark.html_path.read_text()
    assert "DRIFT" in html and "data:image/png;base64," in html

    client = MlflowClient(tracking_uri())
    assert calm.mlflow_run_id == dark.mlflow_run_id  # one monitor run per model version
    run = client.get_run(dark.mlflow_run_id)
    assert (
        run.info.experiment_id
        == client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    )
    assert run.data.tags["model_version"] == outcome.version
    assert run.data.tags["last_decision"] == "drift"
    history = client.get_metric_history(dark.mlflow_run_id, "drift.detected")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.0),
        (1, 1.0),
    ]
    assert len(client.get_metric_history(dark.mlflow_run_id, "drift.p.brightness")) == 2
    folders = [a.path for a in client.list_artifacts(dark.mlflow_run_id, "drift")]
    assert len(folders) == 2
    files = {
        a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(dark.mlflow_run_id, folders[1])
    }
    assert files == {"drift_report.html", "drift_report.json"}
    version = client.get_model_version(cfg.tracking.registered_model, outcome.version)
    assert version.tags["drift.last_decision"] == "drift"

    artifact = Artifact.get(artifact_key(cfg.tracking.registered_model))
    assert artifact is not None and "DRIFT" in artifact.data


def test_champion_is_the_default_model(in_trained_workspace, demo_data):
    outcome, cfg, _ = in_trained_workspace
    name = cfg.tracking.registered_model
    client = MlflowClient(tracking_uri())
    client.set_registered_model_alias(name, "champion", outcome.version)
    result = drift_flow(name, demo_data / "test" / "good")
    assert result.report.model_version == outcome.version


def test_cli_reports_unreadable_frames_and_exits_3_on_drift(
    run_cli, in_trained_workspace, demo_data, tmp_path
):
    outcome, _, ws = in_trained_workspace
    batch = _brightened(demo_data / "test" / "good", tmp_path / "bright", 80)
    (batch / "broken.png").write_bytes(b"\x89PNG broken")
    done = run_cli(
        "drift",
        "--model",
        str(outcome.run_dir / "bundle"),
        "--batch",
        str(batch),
        "--fail-on-drift",
        home=ws,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("DRIFT:")
    assert "1 unreadable frame(s)" in done.stderr and "broken.png" in done.stderr
    assert "report: " in done.stdout


def test_cli_missing_batch_is_one_line(run_cli, in_trained_workspace, tmp_path):
    outcome, _, ws = in_trained_workspace
    done = run_cli(
        "drift",
        "--model",
        str(outcome.run_dir / "bundle"),
        "--batch",
        str(tmp_path / "nowhere"),
        home=ws,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'nowhere'}: no such folder"], done.stderr
