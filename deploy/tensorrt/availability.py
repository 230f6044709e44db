"""Whether TensorRT can be used here, and why not: the reason goes into skips and error lines."""

import importlib
import importlib.util
from functools import lru_cache
from types import ModuleType

from deploy.tensorrt.errors import TensorRTUnavailable

MIN_MAJOR = 10  # name-based I/O and execute_async_v3; the binding-index API is gone


@lru_cache(maxsize=1)
def _probe() -> tuple[ModuleType | None, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return None, (
            "tensorrt is not installed (pip packages need NVIDIA's index; on a Jetson it comes "
            "with JetPack, on x86 use NVIDIA's TensorRT container; see deploy/docker/README.md)"
        )
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # e.g. the bindings are there but libnvinfer is not
        return None, f"tensorrt is installed but does not import ({exc})"
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_MAJOR:
        return (
            None,
            f"tensorrt {trt.__version__} is too old; TensorRT {MIN_MAJOR} or later is needed",
        )
    return trt, f"tensorrt {trt.__version__}"


def tensorrt_available() -> tuple[bool, str]:
    """(True, "tensorrt X.Y") where it imports; (False, why not and what to install) elsewhere."""
    trt, reason = _probe()
    return trt is not None, reason


def require_tensorrt() -> ModuleType:
    """The tensorrt module, or TensorRTUnavailable with the reason from `tensorrt_available`."""
    trt, reason = _probe()
    if trt is None:
        raise TensorRTUnavailable(reason)
    return trt
