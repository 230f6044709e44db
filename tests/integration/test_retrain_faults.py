"""Faults of the production loop, through the CLI as a user runs it: unreachable servers give
one clear line and touch nothing, a killed retrain resumes from its checkpoint without a
partial promotion, and two concurrent retrains of one line promote at most one model (one
test, so the retrain is paid once)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.line import generate_line_data

REPO = Path(__file__).resolve().parents[2]
NAME = "aeinspect-line-a-cam-0"
CONFIG = """
data_root: data
model_overrides: ["data.image_size=32", "model.width=8", "model.depth=2", "model.latent_dim=8",
                  "train.epochs={epochs}", "train.patience={epochs}", "train.batch_size=16",
                  "calibration.alpha=0.1"]
line_data:
  frozen: {{min_good: 4, min_defect: 2, good_fraction: 0.25}}
stress_smoke: ["perturbations=[darker]", "severities=[medium]", "eps=[2]", "attack_images=2"]
gate: {{require_stress_sanity: false}}  # these tests are about faults, not a 2-image attack
"""


@pytest.fixture(scope="module")
def line_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("line") / "data"
    generate_line_data(root, days=1, goods=80, defects=4, unknowns=2, seed=0)
    return root


def setup(tmp_path: Path, line_data: Path, epochs: int = 2) -> tuple[Path, Path]:
    """A workspace and a retrain config pointing at the shared line data."""
    (tmp_path / "data").symlink_to(line_data)
    config = tmp_path / "retrain.yaml"
    config.write_text(CONFIG.format(epochs=epochs))
    return tmp_path / "ws", config


def cli(config: Path, home: Path, **env: str) -> subprocess.Popen:
    environ = {**os.environ, "AEINSPECT_HOME": str(home), **env}
    environ.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in env else None
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "retrain", "--config", str(config)],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


def registry(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("MLFLOW_TRACKING_URI", "http://127.0.0.1:9", "MLflow at http://127.0.0.1:9"),
        ("PREFECT_API_URL", "http://127.0.0.1:9/api", "Prefect at http://127.0.0.1:9/api"),
    ],
)
def test_unreachable_server_is_one_line_and_nothing_is_ingested(
    tmp_path, line_data, variable, value, words
):
    home, config = setup(tmp_path, line_data)
    code, _, err = finish(cli(config, home, **{variable: value}))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err
    assert not (home / "lines").exists()


def test_killed_retrain_resumes_and_concurrent_retrains_promote_at_most_one(tmp_path, line_data):
    """Kill a retrain at its first checkpoint (no model registered), then start two retrains
    of the same line at once: one resumes the checkpoint and promotes v1, the other stands
    aside (the line's lock) or finds the pool already judged."""
    home, config = setup(tmp_path, line_data, epochs=20)
    first = cli(config, home)
    deadline = time.monotonic() + 600
    checkpoints: list[Path] = []
    while not checkpoints and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        checkpoints = list((home / "runs").glob("retrain-*/checkpoint.pt"))
    assert checkpoints, f"no checkpoint before exit: {first.communicate()[1][-2000:]}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    client = registry(home)
    assert not client.search_registered_models(), "a killed retrain registered a model"

    results = [finish(p) for p in [cli(config, home) for _ in range(2)]]
    assert [code for code, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    outputs = " ".join(out for _, out, _ in results)
    assert outputs.count("challenger v1: promote") == 1, outputs
    assert (
        "another retrain of this line and camera is running" in outputs
        or "no new training data since v1 (promoted)" in outputs
    ), outputs
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.resumed = 'true'"
    )
    assert len(runs) == 1 and runs[0].data.tags["run_dir"] == str(checkpoints[0].parent)
    versions = client.search_model_versions(f"name='{NAME}'")
    promoted = [v for v in versions if v.tags.get("gate.decision") == "promoted"]
    assert len(versions) == 1 and len(promoted) == 1
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
