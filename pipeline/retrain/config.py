"""The retraining config (`aeinspect retrain|schedule --config FILE`): which lines and
cameras, how a challenger is trained, the margins of the promotion gate, the schedule and the
task runner. Strict like the run config: a typo in a key is an error naming the key."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config import StrictSection, read_yaml_mapping, validated
from pipeline.line.config import LineConfig


class LineCamera(StrictSection):
    line: str
    camera: str


class GateConfig(StrictSection):
    """A challenger replaces the champion only when it is no worse by these margins, measured
    on the frozen evaluation set, and passes the checks."""

    max_auroc_drop: float = Field(0.0, ge=0, le=1, description="Allowed image-AUROC loss.")
    max_far_increase: float = Field(
        0.0, ge=0, le=1, description="Allowed rise of the false-alarm rate at the threshold."
    )
    require_stress_sanity: bool = True
    require_export_parity: bool = True


class ScheduleConfig(StrictSection):
    """When `aeinspect schedule` runs the retrain flow: a cron line, or an interval."""

    cron: str | None = "0 3 * * *"
    interval_seconds: float | None = Field(None, gt=0)
    deployment: str = "retrain"

    @model_validator(mode="after")
    def _one_schedule(self) -> "ScheduleConfig":
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron and interval_seconds")
        return self


class RunnerConfig(StrictSection):
    """Where the (line, camera) jobs run: threads of the flow's process (default), local
    processes, or Dask: an existing cluster at `address`, else a local cluster."""

    kind: Literal["threads", "processes", "dask"] = "threads"
    workers: int | None = Field(None, ge=1, description="Threads, processes or Dask workers.")
    address: str | None = Field(None, description="Dask scheduler, e.g. tcp://10.0.0.5:8786.")

    @model_validator(mode="after")
    def _address_is_dask(self) -> "RunnerConfig":
        if self.address and self.kind != "dask":
            raise ValueError("address is for kind: dask")
        return self


class RetrainConfig(StrictSection):
    """One retraining set-up; paths may be relative to the config file."""

    data_root: str = Field(description="Root of <line>/<camera>/<YYYY-MM-DD>/ folders.")
    store: str | None = Field(None, description="Ledger, quarantine, pools; default workspace.")
    lines: list[LineCamera] | None = Field(None, description="None: every line/camera found.")
    model_config_file: str | None = Field(None, description="Run config YAML of challengers.")
    model_overrides: list[str] = Field(default_factory=list, description="key=value on it.")
    registry_prefix: str = Field("aeinspect", description="Model name: <prefix>-<line>-<camera>.")
    line_data: LineConfig = Field(default_factory=LineConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    stress_smoke: list[str] = Field(
        default_factory=lambda: [
            "perturbations=[darker, gaussian_blur]",
            "severities=[medium]",
            "eps=[2]",
            "attack_images=4",
        ],
        description="Stress settings of the smoke test every challenger passes.",
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    task_runner: RunnerConfig = Field(default_factory=RunnerConfig)


def load_retrain_config(path: Path) -> RetrainConfig:
    """Read and validate; relative paths in the file are taken from the file's folder."""
    path = Path(path)
    cfg = validated(RetrainConfig, read_yaml_mapping(path), str(path))
    base = path.resolve().parent
    updates = {"data_root": str(base / cfg.data_root)}
    if cfg.store:
        updates["store"] = str(base / cfg.store)
    if cfg.model_config_file:
        updates["model_config_file"] = str(base / cfg.model_config_file)
    return cfg.model_copy(update=updates)
