"""Add a TensorRT engine to an edge bundle: build on this GPU, check parity, list it with its hash.

The engine is built under a hidden temporary name, checked against ONNX Runtime on CPU, and only
then renamed into place and listed in bundle.json (rewritten atomically). A refused engine
leaves the bundle as it was. Run one build per bundle at a time.

The timing cache stays outside the bundle: it is a build aid of one GPU and TensorRT version,
bundle.json hashes every file beside it, a bundle is copied between machines (where that cache
is useless) and may be mounted read-only; one cache per GPU also speeds up the next model
version's build on that machine. The default is under ~/.cache/aeinspect (see
`default_timing_cache`); pass a path to keep it under the service's state directory.
"""

import logging
import os
import re
from pathlib import Path

import numpy as np

from data_contracts.bundle import (
    BUNDLE_JSON,
    EdgeBundle,
    EngineEntry,
    ParityCheck,
    load_edge_bundle,
    sha256_file,
)
from deploy.tensorrt.availability import require_tensorrt
from deploy.tensorrt.builder import Precision, build_engine
from deploy.tensorrt.device import gpu_identity
from deploy.tensorrt.engine_runner import TensorRTRunner
from deploy.tensorrt.errors import EngineBuildError, ParityRefused
from deploy.tensorrt.files import write_atomically
from deploy.tensorrt.frames import check_graph_batch, image_shape
from deploy.tensorrt.parity import MIN_AGREEMENT, MIN_RANK, OnnxRuntimeCpu, engine_parity

log = logging.getLogger(__name__)


def add_engine_to_bundle(
    bundle_dir: Path,
    precision: Precision = "fp16",
    *,
    parity_images: np.ndarray | None,
    parity_source: str = "parity frames",
    opt_batch: int = 1,
    max_batch: int | None = None,
    timing_cache: Path | None = None,
    workspace_mb: int = 1024,
    score_tolerance: float | None = None,
    map_tolerance: float | None = None,
) -> EngineEntry:
    """Build, check and list an engine for this GPU; the new entry as written to bundle.json.

    `parity_images` are frames in the graph's layout (uint8 NHWC or float NCHW in [0, 1]); the
    engine must agree with ONNX Runtime on CPU on them (decisions >= 99.5 %, Spearman of the
    scores >= 0.999) or ParityRefused is raised. None skips the check and records `parity: null`,
    which the edge runtime can refuse. `opt_batch` defaults to 1, the camera loop's usual batch;
    `max_batch` to the bundle's.
    """
    bundle_dir = Path(bundle_dir)
    manifest = load_edge_bundle(bundle_dir)
    high = manifest.max_batch if max_batch is None else max_batch
    if parity_images is not None:
        check_graph_batch(parity_images, manifest.input)
    onnx_path = bundle_dir / manifest.onnx
    partial = bundle_dir / f".{manifest.onnx}.engine.partial"
    try:
        entry = build_engine(
            onnx_path,
            partial,
            input_name=manifest.input.name,
            image_shape=image_shape(manifest.input),
            batch=(1, opt_batch, high),
            precision=precision,
            timing_cache=timing_cache,
            workspace_mb=workspace_mb,
        )
        parity = None
        if parity_images is None:
            log.warning("%s: engine added without a parity check (parity: null)", bundle_dir)
        else:
            tolerances = (score_tolerance, map_tolerance)
            parity = _parity(manifest, partial, entry, parity_images, parity_source, tolerances)
        stem = Path(manifest.onnx).stem
        name = engine_file_name(stem, entry.precision, entry.device, entry.tensorrt_version)
        entry = entry.model_copy(update={"file": name, "parity": parity})
        install_engine(bundle_dir, manifest, partial, entry)
    finally:
        partial.unlink(missing_ok=True)
    return entry


def _parity(
    manifest: EdgeBundle,
    engine: Path,
    entry: EngineEntry,
    images: np.ndarray,
    source: str,
    tolerances: tuple[float | None, float | None],
) -> ParityCheck:
    """The built engine against ONNX Runtime on CPU; ParityRefused when it misses a bar."""
    onnx_path = engine.parent / manifest.onnx
    outputs = manifest.outputs
    names = (outputs.score, outputs.anomaly_map, outputs.is_defect)
    reference = OnnxRuntimeCpu(
        onnx_path, input_name=manifest.input.name, output_names=names, max_batch=manifest.max_batch
    )
    with TensorRTRunner(
        engine,
        input_name=manifest.input.name,
        output_names=names,
        name=f"tensorrt-{entry.precision}",
    ) as runner:
        check = engine_parity(
            runner,
            reference,
            images,
            source=source,
            score_tolerance=tolerances[0],
            map_tolerance=tolerances[1],
            min_agreement=MIN_AGREEMENT,
            min_rank=MIN_RANK,
        )
    if not check.passed:
        raise ParityRefused(f"{onnx_path.parent}: engine not added; {check.summary()}")
    return check


def engine_file_name(stem: str, precision: str, device: str, tensorrt_version: str) -> str:
    """`<stem>-<precision>-<gpu-slug>-trt<version>.engine`, e.g. model-fp16-orin-trt10.3.0.engine:
    an engine copied to the wrong GPU or TensorRT version shows it in its name."""
    return f"{stem}-{precision}-{gpu_slug(device)}-trt{tensorrt_version}.engine"


def gpu_slug(device: str) -> str:
    """A GPU name as a file-name part: "NVIDIA GeForce RTX 4060" -> "nvidia-geforce-rtx-4060"."""
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "unknown"


def install_engine(
    bundle_dir: Path, manifest: EdgeBundle, built: Path, entry: EngineEntry
) -> EdgeBundle:
    """Move the built engine to `entry.file` and list it with its sha256 in bundle.json.

    Each step leaves an intact bundle: an engine of the same name is first unlisted, then the
    file replaced, then the new manifest written atomically (an unlisted file is ignored)."""
    bundle_dir = Path(bundle_dir)
    taken = (BUNDLE_JSON, manifest.onnx, manifest.drift_reference)
    if Path(entry.file).name != entry.file or entry.file in taken:
        raise EngineBuildError(f"{bundle_dir}: {entry.file!r} is not a file name for an engine")
    kept = [e for e in manifest.engines if e.file != entry.file]
    files = {k: v for k, v in manifest.files.items() if k != entry.file}
    if len(kept) != len(manifest.engines) or len(files) != len(manifest.files):
        write_manifest(bundle_dir, manifest.model_copy(update={"engines": kept, "files": files}))
    digest = sha256_file(built)
    os.replace(built, bundle_dir / entry.file)
    updated = manifest.model_copy(
        update={"engines": [*kept, entry], "files": {**files, entry.file: digest}}
    )
    write_manifest(bundle_dir, updated)
    return updated


def write_manifest(bundle_dir: Path, manifest: EdgeBundle) -> None:
    """bundle.json replaced in one rename, never half-written; validated before it is written."""
    text = EdgeBundle.model_validate(manifest.model_dump()).model_dump_json(indent=2) + "\n"
    write_atomically(Path(bundle_dir) / BUNDLE_JSON, text.encode())


def default_timing_cache() -> Path:
    """One timing cache per GPU and TensorRT version, outside any bundle:
    $XDG_CACHE_HOME (or ~/.cache)/aeinspect/tensorrt/timing-<gpu>-trt<version>.cache."""
    trt = require_tensorrt()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    device, _ = gpu_identity()
    return root / "aeinspect" / "tensorrt" / f"timing-{gpu_slug(device)}-trt{trt.__version__}.cache"
