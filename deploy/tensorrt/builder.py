"""Build a TensorRT engine from the bundle's ONNX graph, on the machine that will run it.

An engine is valid only for the GPU and TensorRT version it was built with, so it is built on
the target and records both. Written against TensorRT 10 (explicit batch, name-based I/O); on
TensorRT 11, which dropped the FP16/INT8 builder flags and weak typing, every build is strongly
typed and the precision is the one in the ONNX graph.
"""

import logging
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Literal

from data_contracts.bundle import EngineEntry
from deploy.tensorrt.availability import require_tensorrt
from deploy.tensorrt.device import gpu_identity
from deploy.tensorrt.errors import EngineBuildError
from deploy.tensorrt.files import write_atomically

log = logging.getLogger(__name__)

Precision = Literal["fp16", "fp32", "strongly-typed"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "fp32", "strongly-typed")


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    input_name: str,
    image_shape: tuple[int, int, int],
    batch: tuple[int, int, int],
    precision: Precision = "fp16",
    timing_cache: Path | None = None,
    workspace_mb: int = 1024,
) -> EngineEntry:
    """Build `onnx_path` into `engine_path` for batches batch[0]..batch[2] (tuned for batch[1]).

    `image_shape` is one image in the graph's layout: (H, W, C) for uint8_nhwc, (C, H, W) for
    float_nchw. The timing cache, when given, is read if present and written back after the build
    (a rebuild on the same GPU then skips most kernel timing). INT8 is used only when the graph
    carries explicit Q/DQ nodes; there is no calibrator. The entry's precision says what was
    really built ("int8-qdq", or "strongly-typed" when TensorRT has no FP16 flag).
    """
    trt = require_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    _check_batch(batch)
    if precision not in PRECISIONS:
        raise EngineBuildError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = _strongly_typed(trt, precision)
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(
            f"{onnx_path}: TensorRT cannot parse this graph: {_parser_errors(parser)}"
        )
    _check_input(network, onnx_path, input_name, image_shape, batch)
    quantized = _has_qdq(trt, network)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    _set_precision_flags(trt, config, precision, strongly_typed, quantized)
    profile = builder.create_optimization_profile()
    low, opt, high = ((b, *image_shape) for b in batch)
    profile.set_shape(input_name, low, opt, high)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        _attach_timing_cache(config, Path(timing_cache))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "no error was logged"
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine: {detail}")
    write_atomically(engine_path, memoryview(serialized))
    if timing_cache is not None:
        write_atomically(Path(timing_cache), memoryview(config.get_timing_cache().serialize()))

    device, capability = gpu_identity()
    built_as = "strongly-typed" if strongly_typed else precision
    return EngineEntry(
        file=engine_path.name,
        tensorrt_version=str(trt.__version__),
        device=device,
        compute_capability=capability,
        precision="int8-qdq" if quantized else built_as,
        batch=batch,
        built=datetime.now(timezone.utc),
    )


def _check_batch(batch: tuple[int, int, int]) -> None:
    low, opt, high = batch
    if not 1 <= low <= opt <= high:
        raise EngineBuildError(f"batch profile {batch}: need 1 <= min <= opt <= max")


def _collecting_logger(trt: ModuleType):
    """A TensorRT logger that forwards to `logging` and keeps the errors for the exception text."""
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.DEBUG,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg: str) -> None:
            level = levels.get(severity, logging.DEBUG)
            if level >= logging.ERROR:
                self.errors.append(msg)
            log.log(level, "TensorRT: %s", msg)

    return CollectingLogger()


def _strongly_typed(trt: ModuleType, precision: Precision) -> bool:
    """Strongly typed when asked for, or when TensorRT has no FP16 flag (TensorRT 11)."""
    if precision == "strongly-typed":
        return True
    if hasattr(trt.BuilderFlag, "FP16"):
        return False
    if precision == "fp16":
        log.warning(
            "TensorRT %s has no FP16 builder flag: building strongly typed, so the engine runs "
            "in the ONNX graph's own precision (convert the graph to FP16 first, e.g. with "
            "ModelOpt AutoCast, for an FP16 engine)",
            trt.__version__,
        )
    return True


def _network_flags(trt: ModuleType, strongly_typed: bool) -> int:
    """0 is an explicit-batch network on TensorRT 10; the STRONGLY_TYPED flag is ignored on 11,
    where every network is strongly typed, and may be gone later."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if strongly_typed and flag is not None else 0


def _parser_errors(parser) -> str:
    found = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node_name() if hasattr(error, "node_name") else ""
        operator = error.node_operator() if hasattr(error, "node_operator") else ""
        where = " ".join(part for part in (operator, node) if part)
        found.append(f"{where}: {error.desc()}" if where else str(error.desc()))
    return "; ".join(found) or "no parser error was recorded"


def _check_input(
    network,
    onnx_path: Path,
    input_name: str,
    image_shape: tuple[int, int, int],
    batch: tuple[int, int, int],
) -> None:
    """The graph must have exactly the bundle's input, with a batch axis the profile can vary."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if list(inputs) != [input_name]:
        raise EngineBuildError(
            f"{onnx_path}: graph inputs are {sorted(inputs)}, the bundle names only {input_name!r}"
        )
    shape = tuple(inputs[input_name].shape)
    fits = len(shape) == 4 and all(
        d in (-1, want) for d, want in zip(shape[1:], image_shape, strict=True)
    )
    if not fits:
        raise EngineBuildError(
            f"{onnx_path}: input {input_name!r} has shape {shape}, the bundle says "
            f"(batch, {', '.join(map(str, image_shape))})"
        )
    if shape[0] != -1 and set(batch) != {shape[0]}:
        raise EngineBuildError(
            f"{onnx_path}: the graph's batch axis is fixed at {shape[0]}; export it with a "
            f"dynamic batch axis to build for batches {batch[0]}..{batch[2]}"
        )


def _has_qdq(trt: ModuleType, network) -> bool:
    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _set_precision_flags(
    trt: ModuleType, config, precision: Precision, strongly_typed: bool, quantized: bool
) -> None:
    """ "fp32" turns TF32 off, so it means full FP32 matmuls and convolutions. Weakly typed builds
    (TensorRT 10) also get FP16 on request, and INT8, which explicit Q/DQ nodes need there;
    strongly typed networks take their types from the graph and refuse those flags."""
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if strongly_typed:
        return
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if quantized:
        config.set_flag(trt.BuilderFlag.INT8)


def _attach_timing_cache(config, path: Path) -> None:
    """Start from the cache on disk; one from another GPU or TensorRT version is not mixed in
    (ignore_mismatch=False) and the build starts a fresh cache, which then replaces the file."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):  # False: ignore_mismatch
        return
    log.warning("%s: timing cache not usable on this GPU/TensorRT; starting a fresh one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)
