"""Serve the retrain flow on the schedule of a retraining config (Prefect `serve`).

The process stays in the foreground and runs each scheduled flow run, one at a time (a run
that comes due while another runs waits for it); stopping it leaves the schedule active
(`pause_on_shutdown=False`), so a restarted server picks up where it left off. Works
against the server in PREFECT_API_URL, local or remote.
"""

import os
from pathlib import Path

import httpx

from flows.retrain_flow import retrain_flow
from pipeline.errors import OrchestrationError
from pipeline.retrain.config import load_retrain_config


def check_prefect_server() -> str | None:
    """The API URL when one is set and answers; OrchestrationError when it does not."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    key = os.environ.get("PREFECT_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", headers=headers, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise OrchestrationError(f"Prefect at {url} cannot be reached: {exc}") from exc
    return url


def serve_retrain(config: Path) -> None:
    """Create (or update) the deployment and run its scheduled flow runs until stopped."""
    cfg = load_retrain_config(config)
    if check_prefect_server() is None:
        raise OrchestrationError(
            "scheduling needs a Prefect server: start one with `prefect server start` and "
            "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
        )
    timing = (
        {"cron": cfg.schedule.cron}
        if cfg.schedule.cron
        else {"interval": cfg.schedule.interval_seconds}
    )
    retrain_flow.serve(
        name=cfg.schedule.deployment,
        parameters={"config": str(Path(config).resolve())},
        pause_on_shutdown=False,
        limit=1,  # one run at a time: a late run waits instead of starting beside the last
        **timing,
    )
