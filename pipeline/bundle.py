"""The model bundle: what leaves the lab, and the only thing the edge trusts.

A folder with the scoring module's weights (tensors only, loaded with weights_only=True, so
loading never runs code), the run config, and `bundle.json`: model name and version, the
input contract, threshold and budget, calibration summary, training-data fingerprint,
package versions, git commit, and the sha256 of every other file; and the drift reference
profile (`drift_reference.json`). A bundle whose files do not match their hashes is refused.
"""

import json
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from data_contracts import CalibrationSummary, DriftReference, FrameContract
from data_contracts.bundle import BUNDLE_JSON, hash_problems, sha256_file
from pipeline.config import RunConfig
from pipeline.errors import BundleError
from pipeline.models import build_model
from pipeline.scoring import InspectionModule

WEIGHTS = "weights.pt"
CONFIG = "config.json"
DRIFT_REFERENCE = "drift_reference.json"
FORMAT = 1


def package_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "opencv-python-headless", "albumentations", "mlflow", "prefect"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the code that trained the model, when run from a checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def write_bundle(
    out_dir: Path,
    module: InspectionModule,
    cfg: RunConfig,
    calibration: CalibrationSummary,
    *,
    data_fingerprint: str,
    model_version: str | None = None,
    drift_reference: DriftReference | None = None,
) -> Path:
    """Write weights, config, the drift reference and bundle.json (with hashes) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if drift_reference is not None:
        (out_dir / DRIFT_REFERENCE).write_text(drift_reference.model_dump_json() + "\n")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, out_dir / WEIGHTS)
    (out_dir / CONFIG).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    contract = FrameContract(
        channels=module.channels, input_height=module.image_size, input_width=module.image_size
    )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model_name": cfg.tracking.registered_model,
        "model_family": cfg.model.name,
        "model_version": model_version,
        "created": datetime.now(UTC).isoformat(),
        "input": {
            "contract": contract.model_dump(mode="json"),
            "tensor": "float32 NCHW, values in [0, 1], RGB or grayscale",
        },
        "outputs": ["image_score", "anomaly_map", "is_defect"],
        "threshold": calibration.threshold,
        "alpha": calibration.alpha,
        "calibration": calibration.model_dump(mode="json"),
        "maps": module.map_names,
        "data_fingerprint": data_fingerprint,
        "packages": package_versions(),
        "git_commit": git_commit(),
    }
    meta["files"] = {
        p.name: sha256_file(p)
        for p in sorted(out_dir.iterdir())
        if p.is_file() and p.name != BUNDLE_JSON
    }
    (out_dir / BUNDLE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def set_bundle_version(bundle_dir: Path, version: str) -> None:
    """Record the registry version once it is known (bundle.json is not among the hashed files)."""
    meta = read_bundle_meta(bundle_dir)
    meta["model_version"] = version
    (bundle_dir / BUNDLE_JSON).write_text(json.dumps(meta, indent=2) + "\n")


def read_bundle_meta(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / BUNDLE_JSON
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: not a model bundle (no {BUNDLE_JSON})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """bundle.json if every listed file exists and matches its sha256; BundleError otherwise."""
    bundle_dir = Path(bundle_dir)
    meta = read_bundle_meta(bundle_dir)
    files = meta.get("files")
    problems = hash_problems(bundle_dir, files if isinstance(files, dict) else {})
    if problems:
        raise BundleError(problems[0])
    return meta


@dataclass
class LoadedBundle:
    module: InspectionModule
    config: RunConfig
    meta: dict[str, Any]

    bundle_dir: Path

    @property
    def version(self) -> str:
        return str(self.meta.get("model_version") or "unregistered")

    @property
    def has_drift_reference(self) -> bool:
        return DRIFT_REFERENCE in self.meta.get("files", {})

    def drift_reference(self) -> DriftReference:
        """The reference profile saved at training time (hash already verified on load)."""
        path = self.bundle_dir / DRIFT_REFERENCE
        if not self.has_drift_reference or not path.is_file():
            raise BundleError(
                f"{self.bundle_dir}: bundle has no {DRIFT_REFERENCE} (trained before drift "
                "monitoring existed); retrain the model to get one"
            )
        try:
            return DriftReference.model_validate_json(path.read_text())
        except ValueError as exc:
            raise BundleError(f"{path}: not a valid drift reference ({exc})") from exc


def load_bundle(bundle_dir: Path, device: str = "cpu") -> LoadedBundle:
    """Verify hashes, rebuild the module from config, load weights without unpickling code."""
    meta = verify_bundle(bundle_dir)
    cfg = RunConfig.model_validate(json.loads((Path(bundle_dir) / CONFIG).read_text()))
    channels = meta["input"]["contract"]["channels"]
    model = build_model(cfg.model, cfg.data.image_size, channels)
    module = InspectionModule(model, cfg.score, cfg.data.image_size, channels)
    try:
        state = torch.load(Path(bundle_dir) / WEIGHTS, map_location=device, weights_only=True)
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise BundleError(
            f"{Path(bundle_dir) / WEIGHTS}: weights do not fit the config ({exc})"
        ) from exc
    return LoadedBundle(module.to(device).eval(), cfg, meta, Path(bundle_dir))
