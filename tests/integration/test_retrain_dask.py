"""The retrain flow on a real Dask cluster: two lines of generated data, one flow run, one
task per line on separate worker processes, both challengers trained, gated and registered
in the same MLflow (SQLite, written by both workers at once).

The retrain runs on a `LocalCluster` the test starts and hands over as `task_runner.address`
(an existing cluster); the scheduler's task stream says which worker ran which task. The
other Dask option, a local cluster the flow starts itself (`workers: N`, no address), and the
process pool are checked with a trivial flow through the same `flows.runners.task_runner`.

Worker processes reach Prefect through the API URL in the settings the task carries. In
ephemeral mode (no PREFECT_API_URL) that URL is empty and every worker process would start a
temporary Prefect server of its own (on the same PREFECT_HOME database here);
`flows.runners.api_for_workers` gives them this process's server instead, as a real
deployment gives them its Prefect server.
"""

import importlib
import os
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, get_task_stream
from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.cache_policies import NONE

from flows.retrain_flow import retrain_flow
from flows.runners import api_for_workers, task_runner
from pipeline.line import generate_line_data
from pipeline.retrain.config import RunnerConfig
from pipeline.tracking import CHAMPION, tracking_uri

LINES = ("line-a", "line-b")
CAMERA = "cam-0"
# a tiny AE and a short stress smoke test; the stress sanity check (PGD at least as strong as
# FGSM) is not required by the gate, so that promotion of a 2-epoch toy model does not hinge
# on it: this test is about where the work runs, not about the gate
CONFIG = """\
data_root: data
model_overrides: ["data.image_size=32", "model.width=8", "model.depth=2", "model.latent_dim=8",
                  "train.epochs=2", "train.batch_size=16", "calibration.alpha=0.1"]
line_data:
  frozen: {{min_good: 4, min_defect: 2, good_fraction: 0.25}}
gate: {{require_stress_sanity: false}}
stress_smoke: ["perturbations=[darker]", "severities=[medium]", "eps=[2]", "attack_images=2"]
task_runner: {{kind: dask, address: "{address}"}}
"""


@pytest.fixture
def cluster(workspace_dir):
    """Two single-threaded Dask worker processes. They are spawned after `workspace_dir` has
    set AEINSPECT_HOME and inherit it: the workers of an existing cluster must see the same
    workspace (or MLFLOW_TRACKING_URI) as the flow. The client is not made the default: the
    task runner would take a default client's cluster whatever the config says."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local, set_as_default=False) as client,
    ):
        # each worker imports the flow's modules (torch, MLflow, Prefect: many seconds on a
        # busy machine) while the test prepares its data, not when the first task arrives
        warm = [
            client.submit(_import_flow, workers=[worker], pure=False)
            for worker in client.scheduler_info()["workers"]
        ]
        yield local, client, warm


def _import_flow() -> None:
    importlib.import_module("flows.retrain_flow")


def test_two_lines_retrain_in_parallel_on_dask_workers(cluster, workspace_dir, tmp_path):
    local, client, warm = cluster
    for seed, line in enumerate(LINES):
        generate_line_data(
            tmp_path / "data", line=line, camera=CAMERA, days=1, goods=56, defects=4, seed=seed
        )
    config = tmp_path / "retrain.yaml"
    config.write_text(CONFIG.format(address=local.scheduler_address))
    client.gather(warm)  # both workers idle: the scheduler gives each one of the two tasks

    with get_task_stream(client=client) as stream:
        outcomes = retrain_flow(str(config))

    assert [(o.line, o.camera) for o in outcomes] == [(line, CAMERA) for line in LINES]
    registry = MlflowClient(tracking_uri(), registry_uri=tracking_uri())
    for outcome in outcomes:
        assert outcome.skipped is None
        assert outcome.challenger == "1" and outcome.champion_before is None
        assert outcome.decision is not None and outcome.decision.reasons
        assert outcome.promoted, outcome.decision.summary()
        version = registry.get_model_version_by_alias(outcome.model_name, CHAMPION)
        assert str(version.version) == "1"
        assert version.tags["gate.decision"] == "promoted"

    # one Dask task per line, on two different workers, i.e. two processes other than this one
    ran_on = {t["key"]: t["worker"] for t in stream.data if "retrain_line" in str(t["key"])}
    assert len(ran_on) == len(LINES), [t["key"] for t in stream.data]
    assert len(set(ran_on.values())) == len(LINES), ran_on
    pids = client.run(os.getpid)  # worker address -> pid
    assert len({pids[worker] for worker in ran_on.values()} - {os.getpid()}) == len(LINES)


@pytest.mark.parametrize(
    "runner",
    [
        pytest.param(RunnerConfig(kind="dask", workers=2), id="dask-local-cluster"),
        pytest.param(RunnerConfig(kind="processes", workers=2), id="processes"),
    ],
)
def test_runner_from_config_fans_out_to_worker_processes(runner, tmp_path):
    # defined here so that it travels by value: the workers need not import this module
    def pid(started: str) -> int:
        """Waits (a minute at most) until both tasks have started: a process that took both
        one after the other would show up as one pid."""
        Path(started, str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(started)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        return os.getpid()

    pid_task = task(pid, name="pid", cache_policy=NONE)

    @flow(task_runner=task_runner(runner))
    def fan_out() -> list[int]:
        return [future.result() for future in [pid_task.submit(str(tmp_path)) for _ in range(2)]]

    with api_for_workers(runner):
        pids = fan_out()
    assert len(set(pids)) == 2 and os.getpid() not in pids
