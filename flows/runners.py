"""The task runner a flow fans out on, from config: threads (default), local processes, or
Dask, either an existing cluster (`address`) or a local cluster started for the flow run."""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from pipeline.retrain.config import RunnerConfig


def task_runner(cfg: RunnerConfig) -> TaskRunner:
    if cfg.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    if cfg.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    cluster = {"n_workers": cfg.workers or 2, "threads_per_worker": 1, "processes": True}
    return DaskTaskRunner(cluster_kwargs=cluster)


@contextmanager
def api_for_workers(cfg: RunnerConfig) -> Iterator[None]:
    """Worker processes reach Prefect through the API URL the tasks carry. In ephemeral mode
    there is none, and each worker would start a temporary server of its own on the same
    database; point them at this process's temporary server instead."""
    if cfg.kind == "threads" or PREFECT_API_URL.value():
        yield
        return
    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield
