"""Errors of building and running engines: each message is one line naming file and problem."""


class EngineError(Exception):
    """What `build-engine` and the TensorRT backend report as one line and a non-zero exit."""


class TensorRTUnavailable(EngineError):
    """TensorRT (or the CUDA bindings it needs for memory) cannot be imported on this machine."""


class EngineBuildError(EngineError):
    """TensorRT could not parse the ONNX graph or build an engine from it."""


class EngineRunError(EngineError):
    """An engine cannot be loaded or run (other GPU or TensorRT, CUDA failure, bad batch)."""


class ParityRefused(EngineError):
    """The engine does not reproduce ONNX Runtime closely enough; the bundle was left as it was."""


class FramesError(EngineError):
    """Parity frames are missing, unreadable or do not fit the bundle's input contract."""
