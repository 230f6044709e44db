"""CUDA memory and the GPU's identity without torch: cuda-python first, PyCUDA as a fallback.

The edge image must not carry torch, and TensorRT's Python package has no allocator of its own,
so device buffers, copies and the stream come from NVIDIA's CUDA bindings. Everything runs on
CUDA device 0 (select another with CUDA_VISIBLE_DEVICES).
"""

import subprocess
from functools import lru_cache
from types import ModuleType
from typing import Protocol

import numpy as np

from deploy.tensorrt.errors import EngineRunError, TensorRTUnavailable

UNKNOWN = "unknown"
INSTALL_HINT = (
    "install cuda-python matching the CUDA major version of the machine "
    "(pip install 'cuda-python>=12.6,<13' on JetPack 6 and CUDA 12), or pycuda"
)


class DeviceMemory(Protocol):
    """Device buffers and one stream; host arrays must stay alive until `synchronize`."""

    stream_handle: int

    def alloc(self, nbytes: int) -> int: ...

    def to_device(self, pointer: int, array: np.ndarray) -> None: ...

    def to_host(self, array: np.ndarray, pointer: int) -> None: ...

    def synchronize(self) -> None: ...

    def close(self) -> None: ...


def cuda_runtime() -> ModuleType | None:
    """cuda-python's runtime API module (new layout first, then the pre-12.6 `cuda.cudart`)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            return None
    return runtime


def open_device_memory() -> DeviceMemory:
    """Memory through cuda-python, else PyCUDA; TensorRTUnavailable naming what to install."""
    runtime = cuda_runtime()
    if runtime is not None:
        return _CudaPythonMemory(runtime)
    try:
        import pycuda.driver as pycuda_driver
    except ImportError:
        raise TensorRTUnavailable(f"no CUDA bindings for device memory: {INSTALL_HINT}") from None
    return _PyCudaMemory(pycuda_driver)


class _CudaPythonMemory:
    def __init__(self, runtime: ModuleType) -> None:
        self._rt = runtime
        self._pointers: list[int] = []
        self._stream = self._check(runtime.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = int(self._stream)

    def _check(self, result: tuple, what: str):
        """cuda-python returns (error, *values): raise on an error, return the value."""
        error, *values = result
        if error != self._rt.cudaError_t.cudaSuccess:
            name = self._rt.cudaGetErrorName(error)[1]
            raise EngineRunError(f"CUDA {what} failed: {name.decode(errors='replace')}")
        return values[0] if values else None

    def alloc(self, nbytes: int) -> int:
        pointer = int(self._check(self._rt.cudaMalloc(nbytes), "cudaMalloc"))
        self._pointers.append(pointer)
        return pointer

    def _copy(self, dst: int, src: int, nbytes: int, kind) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "copy")

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._copy(pointer, array.ctypes.data, array.nbytes, kind)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._copy(array.ctypes.data, pointer, array.nbytes, kind)

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        while self._pointers:
            self._rt.cudaFree(self._pointers.pop())
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class _PyCudaMemory:
    """PyCUDA speaks the driver API: push the primary context TensorRT's runtime API also uses.
    The context is current on the creating thread only, so use the runner from that thread."""

    def __init__(self, driver: ModuleType) -> None:
        driver.init()
        self._driver = driver
        self._context = driver.Device(0).retain_primary_context()
        self._context.push()
        self._stream = driver.Stream()
        self.stream_handle = int(self._stream.handle)
        self._allocations: list = []

    def alloc(self, nbytes: int) -> int:
        allocation = self._driver.mem_alloc(nbytes)
        self._allocations.append(allocation)
        return int(allocation)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self._driver.memcpy_htod_async(pointer, array, self._stream)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self._driver.memcpy_dtoh_async(array, pointer, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        if self._context is None:
            return
        while self._allocations:
            self._allocations.pop().free()
        self._context.pop()
        self._context = None


@lru_cache(maxsize=1)
def gpu_identity() -> tuple[str, str]:
    """(name, compute capability) of CUDA device 0, e.g. ("Orin", "8.7"); "unknown" where no
    probe answers. The name goes into engine file names, so a wrong GPU is visible at a glance."""
    return _from_cuda_python() or _from_nvidia_smi() or (UNKNOWN, UNKNOWN)


def _from_cuda_python() -> tuple[str, str] | None:
    runtime = cuda_runtime()
    if runtime is None:
        return None
    error, prop = runtime.cudaGetDeviceProperties(0)
    if error != runtime.cudaError_t.cudaSuccess:
        return None
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.rstrip("\x00").strip() or UNKNOWN, f"{prop.major}.{prop.minor}"


def _from_nvidia_smi() -> tuple[str, str] | None:
    """nvidia-smi lists GPUs in PCI order and ignores CUDA_VISIBLE_DEVICES: a fallback only."""
    command = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    if not lines or "," not in lines[0]:
        return None
    name, capability = (part.strip() for part in lines[0].rsplit(",", 1))
    if not capability.replace(".", "").isdigit():
        capability = UNKNOWN
    return (name or UNKNOWN), capability
