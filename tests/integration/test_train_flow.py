"""The train flow with real Prefect (ephemeral) and real MLflow (SQLite in a temp workspace)."""

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from data_contracts import EvaluationReport
from flows.train_flow import train_flow
from pipeline.bundle import load_bundle
from pipeline.errors import DataError
from pipeline.tracking import tracking_uri


@pytest.fixture
def trained(tiny_config, workspace_dir):
    return train_flow(tiny_config)


def test_flow_logs_reports_and_registers_a_challenger(trained, tiny_config, workspace_dir):
    client = MlflowClient(tracking_uri())
    assert tracking_uri().startswith("sqlite:///") and str(workspace_dir) in tracking_uri()
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2"
    assert len(run.data.tags["data_fingerprint"]) == 64 and "git_commit" in run.data.tags
    assert "image_auroc" in run.data.metrics and "pixel_auroc" in run.data.metrics
    history = client.get_metric_history(trained.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    names = {a.path for a in client.list_artifacts(trained.run_id, "reports")}
    assert {"reports/evaluation.json", "reports/evaluation.html"} <= names
    version = client.get_model_version_by_alias(tiny_config.tracking.registered_model, "challenger")
    assert str(version.version) == trained.version
    # the registered source is the bundle, with its version written in, and it verifies
    local = mlflow.artifacts.download_artifacts(version.source, dst_path=str(workspace_dir / "dl"))
    bundle = load_bundle(local)
    assert bundle.version == trained.version
    report = EvaluationReport.model_validate(json.loads(trained.evaluation.json_path.read_text()))
    assert report.calibration.alpha == 0.05
    assert {d.defect for d in report.per_defect} == {"missing", "pit", "scratch", "stain"}


def test_same_seed_gives_the_same_metrics(trained, tiny_config):
    again = train_flow(tiny_config)
    assert again.version == str(int(trained.version) + 1)
    first = trained.evaluation.report
    second = again.evaluation.report
    assert first.image_auroc == second.image_auroc
    assert first.pixel_auroc == second.pixel_auroc
    assert first.calibration.threshold == second.calibration.threshold


def test_too_few_good_images_for_the_budget_fails_before_training(tiny_config, workspace_dir):
    cfg = tiny_config.model_copy(
        update={"calibration": tiny_config.calibration.model_copy(update={"alpha": 0.001})}
    )
    with pytest.raises(DataError, match="needs 999"):
        train_flow(cfg)


def test_draem_trains_through_the_flow_and_reports_synthetic_recall(
    demo_data, workspace_dir, tiny_draem_overrides
):
    from pipeline.config import load_config

    cfg = load_config(
        None,
        [
            f"data.path={demo_data}",
            *tiny_draem_overrides,
            "train.epochs=2",
            "train.batch_size=16",
            "train.crop=16",
            "score.maps={anomaly: 1.0, ssim: 1.0, seg_mahalanobis: 1.0}",
            "calibration.alpha=0.05",
        ],
    )
    outcome = train_flow(cfg)
    report = outcome.evaluation.report
    assert report.synthetic is not None and report.synthetic.n_anomalous >= 64
    assert set(report.synthetic.fusion_weights) == {"ssim", "anomaly", "seg_mahalanobis"}
    assert outcome.train_images_per_s > 0 and 0 <= outcome.data_wait_share <= 1
    client = MlflowClient(tracking_uri())
    run = client.get_run(outcome.run_id)
    assert {"synthetic.recall", "val_synthetic_pixel_auroc"} <= set(run.data.metrics)
    names = {a.path for a in client.list_artifacts(outcome.run_id, "reports")}
    assert "reports/fusion_candidates.json" in names
    bundle = load_bundle(outcome.run_dir / "bundle")
    assert bundle.config.model.name == "draem"
    html = outcome.evaluation.html_path.read_text()
    assert "Synthetic defects (selection set)" in html
