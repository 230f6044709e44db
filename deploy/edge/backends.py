"""The inference backend behind one call, `run(batch) -> (scores, maps, is_defect)`.

Chosen per bundle: a TensorRT engine built for this very GPU when TensorRT imports, else ONNX
Runtime on CUDA, else ONNX Runtime on the CPU. An explicit choice that cannot be honoured is an
error, not a silent fallback, so a deployer never benchmarks the backend they did not ask for.
"""

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from data_contracts.bundle import EdgeBundle, EngineEntry
from deploy.edge.errors import EdgeError

log = logging.getLogger(__name__)

PREFERENCES = ("auto", "tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> Outputs: ...


class OnnxRuntimeBackend:
    """One ONNX Runtime session with full graph optimisation, as the bundle's parity check ran."""

    def __init__(
        self, onnx_path: Path, manifest: EdgeBundle, cuda: bool, threads: int | None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # one thread per core unless told: faster than ONNX Runtime's default on a small CPU
        options.intra_op_num_threads = threads or os.cpu_count() or 0
        providers = ["CUDAExecutionProvider"] if cuda else []
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=[*providers, "CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own, unexported exception types
            raise EdgeError(f"{onnx_path}: ONNX Runtime cannot load the graph ({exc})") from exc
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            # ONNX Runtime falls back to the CPU with only a log line when CUDA libraries fail
            raise EdgeError(
                "onnxruntime-cuda: the CUDA provider did not load (CUDA/cuDNN libraries)"
            )
        self.name = "onnxruntime-cuda" if cuda else "onnxruntime-cpu"
        self._input = manifest.input.name
        outputs = manifest.outputs
        self._outputs = [outputs.score, outputs.anomaly_map, outputs.is_defect]

    def run(self, batch: np.ndarray) -> Outputs:
        scores, maps, flags = self.session.run(self._outputs, {self._input: batch})
        return scores, maps, flags


def engine_for_this_gpu(manifest: EdgeBundle) -> tuple[EngineEntry | None, str]:
    """The bundle's engine built on this GPU model and TensorRT version, or why there is none.
    Engines are not portable across either, and a failed engine parity check disqualifies one."""
    from deploy.tensorrt.availability import tensorrt_available

    available, reason = tensorrt_available()
    if not available:
        return None, reason
    if not manifest.engines:
        return None, "the bundle has no TensorRT engine (build one: aeinspect-edge build-engine)"
    import tensorrt

    from deploy.tensorrt.device import gpu_identity

    device, capability = gpu_identity()
    for entry in manifest.engines:
        if (
            entry.device == device
            and entry.compute_capability == capability
            and entry.tensorrt_version == str(tensorrt.__version__)
            and (entry.parity is None or entry.parity.passed)
        ):
            return entry, f"engine {entry.file}"
    built = ", ".join(f"{e.device} / TensorRT {e.tensorrt_version}" for e in manifest.engines)
    return None, (
        f"no engine for {device} (compute {capability}) with TensorRT {tensorrt.__version__}; "
        f"the bundle has engines for {built}"
    )


def select_backend(
    bundle_dir: Path,
    manifest: EdgeBundle,
    preference: str = "auto",
    threads: int | None = None,
) -> Backend:
    """The fastest usable backend for this bundle here, or the one `preference` names."""
    if preference not in PREFERENCES:
        raise EdgeError(f"backend {preference!r}: choose one of {', '.join(PREFERENCES)}")
    bundle_dir = Path(bundle_dir)
    if preference in ("auto", "tensorrt"):
        entry, reason = engine_for_this_gpu(manifest)
        if entry is not None:
            try:
                return _tensorrt_backend(bundle_dir / entry.file, manifest, entry)
            except EdgeError as exc:
                reason = str(exc)
        if preference == "tensorrt":
            raise EdgeError(f"backend tensorrt is not usable: {reason}")
        log.info("TensorRT not used: %s", reason)
    if preference in ("auto", "onnxruntime-cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            try:
                return OnnxRuntimeBackend(bundle_dir / manifest.onnx, manifest, True, threads)
            except EdgeError as exc:
                if preference != "auto":
                    raise
                log.warning("%s; using the CPU", exc)
        elif preference == "onnxruntime-cuda":
            raise EdgeError(
                "backend onnxruntime-cuda is not usable: this ONNX Runtime has no "
                "CUDAExecutionProvider (install onnxruntime-gpu)"
            )
    return OnnxRuntimeBackend(bundle_dir / manifest.onnx, manifest, False, threads)


def _tensorrt_backend(engine_path: Path, manifest: EdgeBundle, entry: EngineEntry) -> Backend:
    from deploy.tensorrt.engine_runner import TensorRTRunner
    from deploy.tensorrt.errors import EngineError

    outputs = manifest.outputs
    try:
        return TensorRTRunner(
            engine_path,
            input_name=manifest.input.name,
            output_names=(outputs.score, outputs.anomaly_map, outputs.is_defect),
            name=f"tensorrt-{entry.precision}",
        )
    except EngineError as exc:
        raise EdgeError(str(exc)) from exc


def warm_up(backend: Backend, manifest: EdgeBundle) -> None:
    """One inference on a blank frame, so the first real frame does not pay for lazy set-up
    (kernel selection, allocations) and a graph that cannot run fails before it is used."""
    contract = manifest.input.contract
    h, w, c = contract.input_height, contract.input_width, contract.channels
    if manifest.input.layout == "uint8_nhwc":
        blank = np.zeros((1, h, w, c), np.uint8)
    else:
        blank = np.zeros((1, c, h, w), np.float32)
    backend.run(blank)
