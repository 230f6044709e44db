"""The demo path end to end, as `make demo` runs it, at tiny size: CLI -> Prefect flow ->
training -> calibration -> evaluation -> MLflow (SQLite) -> registry alias."""

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def test_demo_command_end_to_end(tmp_path, tiny_overrides):
    home = tmp_path / "ws"
    env = {**os.environ, "AEINSPECT_HOME": str(home)}
    env.pop("PREFECT_HOME", None)  # the CLI puts Prefect's state in the workspace
    env.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri in an earlier test sets it
    sets = [arg for o in tiny_overrides for arg in ("--set", o)]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", *sets],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for needle in (
        "image_auroc",
        "pixel_auroc",
        "pro",
        "false_alarm_rate",
        "aeinspect ui",
        "evaluation.html",
        "alias challenger",
    ):
        assert needle in out, needle
    assert (home / "demo-data" / "train" / "good").is_dir()
    assert (home / "prefect").is_dir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("aeinspect-demo", "challenger")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert 0.0 <= run.data.metrics["image_auroc"] <= 1.0
    assert Path(version.source.removeprefix("file://")).joinpath("bundle.json").is_file()
