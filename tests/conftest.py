"""Test session set-up: real MLflow (SQLite) and Prefect (ephemeral) in one temp workspace.

Environment variables are set at import, before any test imports prefect or mlflow, and the
Prefect home is shared by the whole session (its first flow starts a local server).
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="aeinspect-tests-"))
os.environ["AEINSPECT_HOME"] = str(_SESSION_HOME / "workspace")
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
for key, value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ[key] = value


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small demo dataset (64 px, enough good images to calibrate at alpha 0.05)."""
    from pipeline.data.demo import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "data"
    generate_demo_dataset(root, size=64, n_train=80, n_test_good=12, n_per_defect=4, seed=1)
    return root


TINY_OVERRIDES = [
    "data.image_size=32",
    "model.width=8",
    "model.depth=2",
    "model.latent_dim=8",
    "train.epochs=2",
    "train.batch_size=16",
    "calibration.alpha=0.05",
]


# a DRAEM small enough to train in seconds: two halvings in both networks, 8 channels
TINY_DRAEM_OVERRIDES = [
    "data.image_size=32",
    "model.name=draem",
    "model.width=8",
    "model.depth=2",
    "model.disc_width=8",
    "model.disc_depth=2",
    "score.fusion=synthetic",
]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_draem_overrides() -> list[str]:
    return list(TINY_DRAEM_OVERRIDES)


@pytest.fixture
def tiny_config(demo_data):
    """A config that trains in a few seconds on the tiny demo data."""
    from pipeline.config import load_config

    return load_config(None, [*TINY_OVERRIDES, f"data.path={demo_data}"])


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch) -> Path:
    """A fresh workspace (MLflow database and artifacts) per test that asks for one."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("AEINSPECT_HOME", str(ws))
    return ws


@pytest.fixture
def onnx_outputs(tmp_path):
    """Export a scoring module as deployed (opset 17, dynamic batch) and run it in ONNX Runtime
    on CPU: `onnx_outputs(module, x) -> [score, map, is_defect]`."""
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch

    def run(module, x):
        path = tmp_path / "module.onnx"
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["images"],
            output_names=["score", "map", "is_defect"],
            dynamic_axes={"images": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": x.numpy()})

    return run


@pytest.fixture(scope="session")
def trained_tiny(demo_data, tmp_path_factory):
    """One tiny model trained through the train flow, in a workspace of its own, for the
    tests that need a real bundle (drift, stress): (outcome, config, workspace)."""
    from flows.train_flow import train_flow
    from pipeline.config import load_config

    ws = tmp_path_factory.mktemp("trained-ws")
    old = os.environ.get("AEINSPECT_HOME")
    os.environ["AEINSPECT_HOME"] = str(ws)
    try:
        cfg = load_config(None, [*TINY_OVERRIDES, f"data.path={demo_data}", "name=tiny"])
        outcome = train_flow(cfg)
    finally:
        if old is None:
            os.environ.pop("AEINSPECT_HOME")
        else:
            os.environ["AEINSPECT_HOME"] = old
    return outcome, cfg, ws


@pytest.fixture(scope="session")
def edge_bundle(trained_tiny, demo_data, tmp_path_factory) -> Path:
    """The tiny model exported as an edge bundle (uint8 NHWC input), parity-checked on the
    whole demo test set."""
    from pipeline.bundle import load_bundle
    from pipeline.data.mvtec import load_test_set
    from pipeline.export.edge_bundle import write_edge_bundle

    outcome, cfg, _ = trained_tiny
    bundle = load_bundle(outcome.run_dir / "bundle")
    test = load_test_set(demo_data, bundle.module.image_size, bundle.module.channels)
    out = tmp_path_factory.mktemp("edge") / "bundle"
    write_edge_bundle(bundle, out, cfg.export, test.images, "demo test set", outcome.run_id)
    return out


@pytest.fixture
def in_trained_workspace(trained_tiny, monkeypatch):
    """The trained tiny model, with this test running in its workspace."""
    monkeypatch.setenv("AEINSPECT_HOME", str(trained_tiny[2]))
    return trained_tiny


def scoring_module_on(good):
    """An untrained tiny AE scoring module (32 px, grey) fitted on `good` (60 images): latent
    Gaussian on 0-19, map normalisation on 20-39, threshold at alpha 0.1 on 40-59. Returns
    (config, module, calibration, calibration scores)."""
    import torch

    from pipeline.calibration import calibrate
    from pipeline.config import load_config
    from pipeline.models import build_model
    from pipeline.scoring import InspectionModule, fit_scoring, score_images

    cfg = load_config(None, [*TINY_OVERRIDES[:3], "model.latent_dim=4", "calibration.alpha=0.1"])
    torch.manual_seed(0)
    module = InspectionModule(build_model(cfg.model, 32, 1), cfg.score, 32, 1)
    fit_scoring(module, good[:20], good[20:40])
    scores, _ = score_images(module, good[40:60])
    calibration = calibrate(scores, 0.1, [0.1])
    module.threshold.fill_(calibration.threshold)
    return cfg, module, calibration, scores


@pytest.fixture(scope="session")
def tiny_scoring_module():
    return scoring_module_on


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(*args, home=workspace)`: the CLI as a user runs it, in a subprocess."""

    def run(*args: str, home: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "AEINSPECT_HOME": str(home)}
        env.pop("MLFLOW_TRACKING_URI", None)  # an earlier test may have set it
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=600,
        )

    return run
