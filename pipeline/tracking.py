"""MLflow tracking and registry with an embedded default.

Without `MLFLOW_TRACKING_URI`, runs go to SQLite in the workspace and artifacts to
`<workspace>/artifacts/<experiment>`; one registered model per (line, camera) with the aliases
`challenger` (every new version) and `champion` (promoted).
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import TrackingError
from pipeline.workspace import workspace

CHALLENGER = "challenger"
CHAMPION = "champion"
MONITOR_TAG = "aeinspect.kind"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def connect() -> MlflowClient:
    """A client for our tracking URI, checked to answer (one clear error if not). MLflow's
    global URI is left alone: setting it also sets MLFLOW_TRACKING_URI for the process."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        _check_reachable(uri)
    client = MlflowClient(uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {uri} is not usable: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # connection errors come as several unrelated types
        raise TrackingError(f"MLflow at {uri} cannot be reached: {exc}") from exc
    return client


def _check_reachable(uri: str) -> None:
    """Fail in seconds on a server that does not answer at all; MLflow's own client would
    retry with backoff for minutes first."""
    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=10)
    except httpx.TransportError as exc:
        raise TrackingError(f"MLflow at {uri} cannot be reached: {exc}") from exc


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """Experiment id; a new local experiment keeps its artifacts inside the workspace."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if _is_local(tracking_uri()):
        location = (workspace() / "artifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # another process (a concurrent retrain, a Dask worker) created it a moment ago
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def start_run(client: MlflowClient, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """Create a run and return its id; all logging goes through the client with this id, so
    tasks on any thread log to the right run without MLflow's global active-run state."""
    experiment_id = ensure_experiment(client, experiment)
    return client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float | None], step: int = 0
) -> None:
    """Finite numbers only; None (a metric that does not apply) is left out."""
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items()) if v is not None]
    if items:
        client.log_batch(run_id, metrics=items)


def log_history(client: MlflowClient, run_id: str, history: list[dict[str, float]]) -> None:
    """Per-epoch losses as metric series (step = epoch)."""
    for row in history:
        log_metrics(
            client, run_id, {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"])
        )


def register_bundle(
    client: MlflowClient, name: str, run_id: str, artifact_path: str, tags: dict[str, str]
) -> str:
    """New registry version pointing at the logged bundle, aliased `challenger`."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="aeinspect model bundles")
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def resolve_model_uri(ref: str) -> Path:
    """A bundle folder on disk, or a registry reference `name@alias` / `name/version`,
    downloaded from MLflow into the workspace."""
    path = Path(ref)
    if path.exists():
        return path
    name_part, _, version_part = ref.rpartition("/")
    is_version = bool(name_part) and "/" not in name_part and version_part.isdigit()
    if "@" not in ref and not is_version:
        raise TrackingError(
            f"{ref}: no such bundle folder, and not a registry reference (name@alias or name/N)"
        )
    client = connect()
    name, sep, rest = ref.partition("@") if "@" in ref else ref.partition("/")
    try:
        if sep == "@":
            mv = client.get_model_version_by_alias(name, rest)
        else:
            mv = client.get_model_version(name, rest)
    except MlflowException as exc:
        raise TrackingError(f"{ref}: not found in the MLflow registry at {tracking_uri()}") from exc
    dest = workspace() / "models" / name / str(mv.version)
    if not (dest / "bundle.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(dest), tracking_uri=tracking_uri()
        )
        nested = dest / Path(mv.source).name
        if nested.is_dir() and not (dest / "bundle.json").exists():
            for item in nested.iterdir():
                item.rename(dest / item.name)
            nested.rmdir()
    return dest


def monitor_run(client: MlflowClient, experiment: str, model_name: str, version: str) -> str:
    """The long-lived drift-monitor run of one model version (created on first use): each
    checked batch adds one step to its metrics, so MLflow charts drift over time."""
    experiment_id = ensure_experiment(client, experiment)
    query = (
        f"tags.`{MONITOR_TAG}` = 'drift-monitor' and tags.model_name = '{model_name}' "
        f"and tags.model_version = '{version}'"
    )
    found = client.search_runs([experiment_id], query, max_results=1)
    if found:
        return found[0].info.run_id
    tags = {MONITOR_TAG: "drift-monitor", "model_name": model_name, "model_version": version}
    run = client.create_run(experiment_id, run_name=f"drift-{model_name}-v{version}", tags=tags)
    return run.info.run_id


def next_step(client: MlflowClient, run_id: str, metric: str) -> int:
    """One past the last step logged for `metric` (0 for a new series)."""
    history = client.get_metric_history(run_id, metric)
    return max((m.step for m in history), default=-1) + 1
