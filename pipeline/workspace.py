"""The workspace folder: one place for MLflow's database and artifacts, Prefect's home,
demo data and run folders, so a user can see (and delete) everything we wrote."""

import os
from pathlib import Path


def workspace() -> Path:
    """`$AEINSPECT_HOME`, else `./.aeinspect` in the current directory."""
    return Path(os.environ.get("AEINSPECT_HOME", ".aeinspect")).resolve()


def configure_environment() -> Path:
    """Point Prefect at the workspace and make MLflow, Prefect and albumentations quiet and
    offline-safe, unless the user set these variables. Call before importing prefect."""
    ws = workspace()
    ws.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(ws / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # the ephemeral server needs more than the default 20 s on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    return ws
