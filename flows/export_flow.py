"""Export flow: one model version to an edge bundle, parity-checked on its labelled test set.

The ONNX graph must reproduce the lab module (scores and maps within the configured
tolerances, every decision the same) before the bundle is written. The bundle is logged to
the training run in MLflow under `edge_bundle/`, and the model version gets `export.*` tags
that a promotion gate can require.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from data_contracts.bundle import EdgeBundle
from flows.drift_flow import artifact_key, load_model
from flows.train_flow import data_root
from pipeline import tracking
from pipeline.bundle import LoadedBundle
from pipeline.config import ExportConfig, override_section
from pipeline.data.mvtec import load_test_set
from pipeline.export.edge_bundle import write_edge_bundle
from pipeline.export.parity import evenly_spaced
from pipeline.workspace import workspace

EDGE_ARTIFACTS = "edge_bundle"


@dataclass
class ExportOutcome:
    manifest: EdgeBundle
    bundle_dir: Path
    mlflow_run_id: str | None


@task(cache_policy=NONE)
def parity_frames(bundle: LoadedBundle, data: Path | None, wanted: int) -> tuple[np.ndarray, str]:
    """Evenly spaced test images (good and every defect class) at the model's input size."""
    root = Path(data) if data is not None else data_root(bundle.config)
    test = load_test_set(root, bundle.module.image_size, bundle.module.channels)
    picked = evenly_spaced(len(test.images), wanted)
    return test.images[picked], f"{root} test set, {len(picked)} of {len(test.images)} images"


@task(cache_policy=NONE)
def log_to_mlflow(manifest: EdgeBundle, bundle_dir: Path) -> str | None:
    """Attach the bundle to the run that trained the version; tag the version."""
    run_id = manifest.source_run
    if run_id is None:  # a bundle folder that was never registered
        return None
    client = tracking.connect()
    name, version = manifest.model_name, manifest.model_version
    client.log_artifacts(run_id, str(bundle_dir), EDGE_ARTIFACTS)
    parity = manifest.parity
    tags = {
        "export.parity": "passed" if parity.passed else "failed",
        "export.max_score_diff": f"{parity.max_score_diff:.3g}",
        "export.max_map_diff": f"{parity.max_map_diff:.3g}",
        "export.decision_agreement": f"{parity.decision_agreement:.4f}",
        "export.layout": manifest.input.layout,
        "export.onnx_sha256": manifest.files[manifest.onnx],
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return run_id


def markdown_summary(manifest: EdgeBundle, bundle_dir: Path) -> str:
    p = manifest.parity
    return "\n".join(
        [
            f"# Edge bundle of `{manifest.model_name}` v{manifest.model_version}",
            f"`{bundle_dir}`: ONNX opset {manifest.opset}, input `{manifest.input.name}` "
            f"{manifest.input.layout}, threshold {manifest.threshold:.4g}.",
            "",
            "| parity | images | max score diff | max map diff | decisions agree |",
            "|---|---|---|---|---|",
            f"| {'passed' if p.passed else 'FAILED'} | {p.images} | {p.max_score_diff:.2e} | "
            f"{p.max_map_diff:.2e} | {p.decision_agreement:.2%} |",
        ]
    )


@flow(name="export", log_prints=True)
def export_flow(
    model: str,
    version: str | None = None,
    out: Path | None = None,
    data: Path | None = None,
    settings: list[str] | None = None,
) -> ExportOutcome:
    """Export `model` (its champion, `version` of it, or a bundle folder) to `out` (default:
    the workspace's edge/<name>-v<version>), checking parity on the test set of `data` (default:
    the data it was trained on); `settings` are `key=value` changes to its export config."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logger = get_run_logger()
    bundle = load_model(model, version)
    cfg: ExportConfig = override_section(
        bundle.config.export, list(settings or []), "export settings"
    )
    frames, source = parity_frames(bundle, data, cfg.parity_images)
    name = str(bundle.meta["model_name"])
    target = Path(out) if out is not None else workspace() / "edge" / f"{name}-v{bundle.version}"
    run_id = None
    if bundle.version != "unregistered":
        run_id = tracking.connect().get_model_version(name, bundle.version).run_id
    manifest = write_edge_bundle(bundle, target, cfg, frames, source, run_id)
    logger.info("parity: %s", manifest.parity.summary())
    logged = log_to_mlflow(manifest, target)
    create_markdown_artifact(
        markdown=markdown_summary(manifest, target),
        key=artifact_key(name, "export"),
        description="Edge bundle and its parity check",
    )
    return ExportOutcome(manifest, target, logged)
