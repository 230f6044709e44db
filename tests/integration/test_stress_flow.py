"""The stress flow on a trained bundle with real Prefect and MLflow, and the CLI around it."""

from mlflow.tracking import MlflowClient
from prefect.artifacts import Artifact

from data_contracts import StressReport
from flows.drift_flow import artifact_key
from flows.stress_flow import stress_flow
from pipeline.tracking import tracking_uri

SMALL = ["perturbations=[darker, gaussian_blur]", "eps=[2, 8]", "attack_images=4"]


def test_stress_flow_reports_to_mlflow_and_tags_the_version(in_trained_workspace, demo_data):
    outcome, cfg, _ = in_trained_workspace
    result = stress_flow(str(outcome.run_dir / "bundle"), demo_data, settings=SMALL)
    report = result.report
    assert StressReport.model_validate_json(result.json_path.read_text()) == report
    assert len(report.perturbations) == 6 and len(report.attacks) == 5
    # the bundle has a drift reference, so every perturbation says whether drift fired
    assert all(p.drift_fired is not None for p in report.perturbations)
    darkest = next(
        p for p in report.perturbations if (p.perturbation, p.severity) == ("darker", "high")
    )
    assert darkest.drift_fired and darkest.drift_reasons

    client = MlflowClient(tracking_uri())
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["model_version"] == outcome.version
    assert run.data.metrics["clean.auroc"] == report.clean.auroc
    assert "far.darker.high" in run.data.metrics
    assert "attack.pgd10.eps2.robust_auroc" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(result.mlflow_run_id, "stress")}
    assert logged == {"stress/stress_report.html", "stress/stress_report.json"}
    version = client.get_model_version(cfg.tracking.registered_model, outcome.version)
    assert version.tags["stress.sanity"] == ("passed" if report.sanity_passed else "failed")
    artifact = Artifact.get(artifact_key(cfg.tracking.registered_model, "stress"))
    assert artifact is not None and "darker" in artifact.data


def test_cli_runs_and_bad_settings_are_one_line(run_cli, in_trained_workspace, demo_data):
    outcome, _, ws = in_trained_workspace
    bundle = str(outcome.run_dir / "bundle")
    sets = [
        arg for s in ["perturbations=[jpeg]", "eps=[4]", "attack_images=2"] for arg in ("--set", s)
    ]
    done = run_cli("stress", "--model", bundle, "--data", str(demo_data), *sets, home=ws)
    assert done.returncode == 0, done.stderr
    assert "gradient-masking checks:" in done.stdout and "report: " in done.stdout
    bad = run_cli(
        "stress",
        "--model",
        bundle,
        "--data",
        str(demo_data),
        "--set",
        "perturbations=[glare]",
        home=ws,
    )
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 1 and len(errors) == 1 and "glare" in errors[0], bad.stderr
    assert "Traceback" not in bad.stderr
