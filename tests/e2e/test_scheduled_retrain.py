"""Scheduled retraining end to end, as a line runs it: `aeinspect schedule` serves the retrain
flow on a short interval against a real local `prefect server start`. Day 1 of generated line
data trains and promotes v1; day 2 (corrupt frames, a lighting shift) arrives between runs,
its bad frames are quarantined with reasons, challenger v2 is trained and gated, the decision
and its reasons are tags in MLflow, and `aeinspect rollback` brings v1 back."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from flows.drift_flow import artifact_key
from pipeline.line import LineFaults, generate_line_data

pytestmark = pytest.mark.slow

PREFIX = "sched"
LINE, CAMERA = "line-a", "cam-0"
MODEL = f"{PREFIX}-{LINE}-{CAMERA}"
DEPLOYMENT = "retrain-e2e"
DAY1, DAY2 = date(2024, 5, 6), date(2024, 5, 7)
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}
# the retraining config: a tiny AE, a small frozen set, a short stress smoke test, and a gate
# that promotes any challenger whose export keeps parity (wide margins, and the stress smoke
# test's gradient-masking heuristic, noisy on a 2-epoch model, recorded but not required), so
# the outcome, and with it the rollback, is deterministic
CONFIG = f"""\
data_root: line-data
registry_prefix: {PREFIX}
model_overrides: ["data.image_size=32", "model.width=8", "model.depth=2", "model.latent_dim=8",
                  "train.epochs=2", "train.batch_size=16", "calibration.alpha=0.1"]
line_data:
  frozen: {{min_good: 4, min_defect: 2, good_fraction: 0.25}}
gate: {{max_auroc_drop: 1.0, max_far_increase: 1.0, require_stress_sanity: false}}
stress_smoke: ["perturbations=[darker]", "severities=[medium]", "eps=[2]", "attack_images=2"]
schedule: {{cron: null, interval_seconds: 10, deployment: {DEPLOYMENT}}}
"""
FAULT_WORDS = {"truncated": "truncated", "garbage": "not a readable image"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """A subprocess in its own process group (servers and flow runs start children)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL if it is still there after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    proc.wait()


def _wait_for(
    what: str, check: Callable[[], Any], timeout: float, context: Callable[[], str], every=1.0
):
    """Poll `check` until it returns something truthy; fail with `context()` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{context()}"
        time.sleep(every)


@pytest.fixture
def prefect_api(tmp_path) -> Iterator[str]:
    """`prefect server start` on a free port with its own home; yields the API URL."""
    home = tmp_path / "prefect-server"
    home.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        **QUIET,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_UI_ENABLED": "false",
        # one writer less on the server's SQLite, which a busy machine finds "locked": runs
        # that wait for the one before are not marked Late (the runner starts them all the same)
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    proc = _start([*cmd, "--port", str(port)], env, home, log)
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert proc.poll() is None, f"prefect server exited:\n{_tail(log)}"
        try:
            return httpx.get(f"{api}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for("prefect server /api/health", healthy, 240, lambda: _tail(log))
        yield api
    finally:
        _stop(proc)


class Deployment:
    """The served deployment's finished flow runs, read from the Prefect API, each with the
    row of MODEL in its retrain summary (the run's markdown artifact) under "row"."""

    def __init__(self, api: str, serve: subprocess.Popen, serve_log: Path) -> None:
        self.api, self.serve, self.serve_log = api, serve, serve_log
        self.rows: dict[str, dict[str, str]] = {}  # run id -> summary row, read once per run

    def _post(self, path: str, body: dict) -> list[dict]:
        answer = httpx.post(f"{self.api}{path}", json=body, timeout=120)
        answer.raise_for_status()
        return answer.json()

    def completed(self) -> list[dict] | None:
        """Completed runs; None while the server is too busy to answer in time. Fails at once
        when the serving process exited or a run failed or crashed."""
        assert self.serve.poll() is None, f"aeinspect schedule exited\n{self.context()}"
        finished = {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}
        try:
            runs = self._post(
                "/flow_runs/filter",
                {
                    "deployments": {"name": {"any_": [DEPLOYMENT]}},
                    "flow_runs": {"state": finished},
                },
            )
            bad = [r for r in runs if r["state_type"] != "COMPLETED"]
            assert not bad, f"run {bad[0]['name']} {bad[0]['state_type']}\n{self.context()}"
            unread = [r["id"] for r in runs if r["id"] not in self.rows]
            if unread:
                key = artifact_key(PREFIX, "retrain")
                body = {"flow_run_id": {"any_": unread}, "key": {"any_": [key]}}
                for artifact in self._post("/artifacts/filter", {"artifacts": body}):
                    self.rows[artifact["flow_run_id"]] = _summary_row(artifact["data"])
        except httpx.TimeoutException:
            return None
        return [{**r, "row": self.rows.get(r["id"], {})} for r in runs]

    def trained(self, version: str) -> Callable[[], list[dict] | None]:
        """A check for `_wait_for`: the completed runs, once one of them trained `version`."""

        def check() -> list[dict] | None:
            runs = self.completed()
            if runs and any(r["row"].get("challenger") == version for r in runs):
                return runs
            return None

        return check

    def logs(self, run_id: str) -> str:
        found = self._post(
            "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"}
        )
        return "\n".join(f"  {entry['message']}" for entry in found)[-4000:]

    def context(self) -> str:
        """What to read when something went wrong: the serve log and the runs' own logs."""
        parts = [f"--- aeinspect schedule output:\n{_tail(self.serve_log)}"]
        try:
            runs = self._post(
                "/flow_runs/filter", {"deployments": {"name": {"any_": [DEPLOYMENT]}}}
            )
            for run in runs:
                if run["state_type"] not in ("SCHEDULED", "COMPLETED"):
                    parts.append(
                        f"--- run {run['name']} {run['state_name']}:\n{self.logs(run['id'])}"
                    )
        except httpx.HTTPError as exc:
            parts.append(f"(Prefect API not readable: {exc})")
        return "\n".join(parts)


def _summary_row(markdown: str) -> dict[str, str]:
    """The retrain summary table's row of MODEL, by column."""
    table = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0]]
    for cells in table[2:]:
        row = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        if row["model"] == MODEL:
            return row
    return {}


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(MODEL).aliases.items()}


def test_scheduled_retrain_two_days(tmp_path, prefect_api, run_cli):
    ws = tmp_path / "ws"
    data = tmp_path / "line-data"
    generate_line_data(data, days=1, start=DAY1, goods=80, defects=4, unknowns=2, seed=0)
    config = tmp_path / "retrain.yaml"
    config.write_text(CONFIG)
    uri = f"sqlite:///{ws / 'mlflow.db'}"

    env = {
        **os.environ,
        **QUIET,
        "AEINSPECT_HOME": str(ws),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # pick up a due run within 2 s, not 10
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    for key in ("PREFECT_HOME", "MLFLOW_TRACKING_URI"):  # the CLI keeps both in the workspace
        env.pop(key, None)
    serve_log = tmp_path / "schedule.log"
    cmd = [sys.executable, "-m", "flows.cli", "schedule", "--config", str(config)]
    serve = _start(cmd, env, tmp_path, serve_log)
    deployment = Deployment(prefect_api, serve, serve_log)
    try:
        # day 1: a scheduled run trains v1, and with no champion yet the gate promotes it
        what = "a scheduled run that trained v1"
        _wait_for(what, deployment.trained("1"), 600, deployment.context, every=3)
        client = MlflowClient(uri, registry_uri=uri)
        assert _aliases(client)["champion"] == "1", client.get_model_version(MODEL, "1").tags

        # day 2 arrives between runs: two corrupt frames and every frame darker
        day2 = generate_line_data(
            data,
            days=1,
            start=DAY2,
            goods=80,
            defects=4,
            unknowns=2,
            seed=1,
            dark_day=0,
            faults=[LineFaults(day=0, truncated=1, garbage=1)],
        )
        what = "a later scheduled run that trained v2"
        completed = _wait_for(what, deployment.trained("2"), 600, deployment.context, every=3)
    finally:
        _stop(serve)  # before the rollback: a later run must not judge v2 again

    # two or more runs of the schedule completed, each created by Prefect's scheduler
    assert len(completed) >= 2
    assert all(r["auto_scheduled"] for r in completed)
    row = next(r["row"] for r in completed if r["row"].get("challenger") == "2")
    assert (row["new days"], row["quarantined"], row["drift"]) == ("1", "2", "drift"), row

    # the corrupt frames of day 2, and nothing else, are quarantined, each with its reason
    quarantine = ws / "lines" / LINE / CAMERA / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == [DAY2.isoformat()]
    for kind, word in FAULT_WORDS.items():
        (frame,) = day2.faults[kind]
        link = quarantine / DAY2.isoformat() / frame.replace("/", "__")
        assert link.resolve() == (data / LINE / CAMERA / frame).resolve()
        reason = Path(f"{link}.reason.txt").read_text()
        assert reason.startswith(f"{frame}: ") and word in reason, reason
    assert len(list((quarantine / DAY2.isoformat()).glob("*.reason.txt"))) == 2

    # the gate's decision and reasons are tags of v2 in MLflow, and the aliases follow it
    client = MlflowClient(uri, registry_uri=uri)
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["gate.decision"] == "promoted", tags
    reasons = tags["gate.reasons"].split(" | ")
    assert "export parity passed" in reasons and tags["stress.sanity"] in ("passed", "failed")
    assert any(r.startswith("image AUROC") for r in reasons), reasons
    assert reasons[-1] == "v2 is champion, v1 kept for rollback", reasons
    assert tags["retrain.drift"] == "drift" and tags["retrain.quarantined"] == "2", tags
    assert tags["gate.champion_before"] == "1", tags
    assert client.get_model_version(MODEL, "1").tags["gate.decision"] == "promoted"
    assert _aliases(client) == {"champion": "2", "previous-champion": "1", "challenger": "2"}
    ingest_runs = client.search_runs(
        [client.get_experiment_by_name(MODEL).experiment_id], "tags.`aeinspect.kind` = 'retrain'"
    )
    quarantined = [r.data.metrics["ingest.quarantined"] for r in ingest_runs]
    assert 2 in quarantined and sum(quarantined) == 2, quarantined  # day 2, ingested once

    # rollback through the CLI: v1 is champion again
    done = run_cli("rollback", "--model", MODEL, home=ws)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{MODEL}: champion v2 -> v1 (rolled back)"
    assert _aliases(client) == {"champion": "1", "challenger": "2"}
    assert "rolled_back_at" in client.get_model_version(MODEL, "2").tags
