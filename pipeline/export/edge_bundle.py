"""The edge bundle: ONNX graph, drift reference and a hashed bundle.json, written atomically.

It is assembled in a hidden sibling folder and renamed into place only after the parity check
passed, so a failed or interrupted export leaves no half bundle and never touches an
existing one. Engines are added later, on the target (`python -m deploy.edge build-engine`).
"""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from data_contracts import FrameContract
from data_contracts.bundle import BUNDLE_JSON, EdgeBundle, GraphInput, ParityCheck, sha256_file
from pipeline.bundle import DRIFT_REFERENCE, LoadedBundle
from pipeline.config import ExportConfig
from pipeline.errors import ExportError
from pipeline.export.onnx_export import export_onnx, onnx_opset
from pipeline.export.parity import onnx_parity

ONNX_FILE = "model.onnx"


def _refuse_existing(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir}: already exists and is not empty; choose another --out")


def write_edge_bundle(
    bundle: LoadedBundle,
    out_dir: Path,
    cfg: ExportConfig,
    frames: np.ndarray,
    source: str,
    source_run: str | None = None,
) -> EdgeBundle:
    """Export, check parity on `frames` (N, H, W, C uint8 at input size), write the bundle."""
    out_dir = Path(out_dir)
    _refuse_existing(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _assemble(bundle, staging, cfg, frames, source, source_run)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _assemble(
    bundle: LoadedBundle,
    folder: Path,
    cfg: ExportConfig,
    frames: np.ndarray,
    source: str,
    source_run: str | None,
) -> EdgeBundle:
    onnx_path = export_onnx(bundle.module, folder / ONNX_FILE, cfg)
    parity = onnx_parity(bundle.module, onnx_path, frames, source, cfg)
    if not parity.passed:
        raise ExportError(f"{bundle.bundle_dir}: exported graph does not match: {parity.summary()}")
    reference = None
    if bundle.has_drift_reference:
        shutil.copy2(bundle.bundle_dir / DRIFT_REFERENCE, folder / DRIFT_REFERENCE)
        reference = DRIFT_REFERENCE
    manifest = edge_manifest(bundle, cfg, parity, onnx_opset(onnx_path), reference, source_run)
    manifest.files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / BUNDLE_JSON).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def edge_manifest(
    bundle: LoadedBundle,
    cfg: ExportConfig,
    parity: ParityCheck,
    opset: int,
    reference: str | None,
    source_run: str | None,
) -> EdgeBundle:
    contract = FrameContract.model_validate(bundle.meta["input"]["contract"])
    return EdgeBundle(
        model_name=str(bundle.meta["model_name"]),
        model_family=str(bundle.meta["model_family"]),
        model_version=bundle.version,
        created=datetime.now(UTC),
        onnx=ONNX_FILE,
        opset=opset,
        max_batch=cfg.max_batch,
        input=GraphInput(
            layout=cfg.input_layout,
            channel_order="gray" if contract.channels == 1 else "rgb",
            contract=contract,
        ),
        threshold=float(bundle.module.threshold),
        alpha=float(bundle.meta["alpha"]),
        parity=parity,
        drift_reference=reference,
        source_run=source_run,
        files={},
    )
