"""The export flow and `aeinspect export` on a registered model, with real Prefect and MLflow."""

from mlflow.tracking import MlflowClient
from prefect.artifacts import Artifact

from data_contracts.bundle import load_edge_bundle
from flows.drift_flow import artifact_key
from flows.export_flow import EDGE_ARTIFACTS, export_flow
from pipeline.tracking import tracking_uri


def test_export_flow_logs_the_bundle_and_tags_the_version(in_trained_workspace, tmp_path):
    outcome, cfg, _ = in_trained_workspace
    name = cfg.tracking.registered_model
    result = export_flow(name, version=outcome.version, out=tmp_path / "edge")
    manifest = load_edge_bundle(tmp_path / "edge")
    assert manifest == result.manifest
    assert manifest.model_version == outcome.version and manifest.source_run == outcome.run_id
    assert manifest.drift_reference == "drift_reference.json"
    assert "demo" in manifest.parity.source or "data" in manifest.parity.source

    client = MlflowClient(tracking_uri())
    logged = {a.path for a in client.list_artifacts(outcome.run_id, EDGE_ARTIFACTS)}
    assert f"{EDGE_ARTIFACTS}/model.onnx" in logged and f"{EDGE_ARTIFACTS}/bundle.json" in logged
    tags = client.get_model_version(name, outcome.version).tags
    assert tags["export.parity"] == "passed"
    assert tags["export.onnx_sha256"] == manifest.files["model.onnx"]
    artifact = Artifact.get(artifact_key(name, "export"))
    assert artifact is not None and "passed" in artifact.data


def test_cli_exports_and_refuses_bad_input_in_one_line(run_cli, in_trained_workspace, tmp_path):
    outcome, cfg, ws = in_trained_workspace
    bundle = str(outcome.run_dir / "bundle")
    done = run_cli(
        "export", "--model", bundle, "--out", str(tmp_path / "e"), "--layout", "float_nchw", home=ws
    )
    assert done.returncode == 0, done.stderr
    assert "parity: onnxruntime-cpu vs torch-cpu" in done.stdout and "passed" in done.stdout
    assert load_edge_bundle(tmp_path / "e").input.layout == "float_nchw"

    again = run_cli("export", "--model", bundle, "--out", str(tmp_path / "e"), home=ws)
    bad_layout = run_cli("export", "--model", bundle, "--layout", "nhwc_float", home=ws)
    for bad, words in [(again, "already exists"), (bad_layout, "input_layout")]:
        errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
        assert bad.returncode == 1 and len(errors) == 1 and words in errors[0], bad.stderr
        assert "Traceback" not in bad.stderr
    assert load_edge_bundle(tmp_path / "e").input.layout == "float_nchw"
