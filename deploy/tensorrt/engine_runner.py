"""Run a TensorRT engine with the same call as the ONNX Runtime backend: `run(batch)`.

Buffers for the largest batch of the engine's profile are allocated once; a larger batch runs
in slices of that size. One runner per thread: it owns one execution context and one stream.
"""

from math import prod
from pathlib import Path
from types import ModuleType

import numpy as np

from deploy.tensorrt.availability import require_tensorrt
from deploy.tensorrt.device import open_device_memory
from deploy.tensorrt.errors import EngineRunError

OUTPUT_NAMES = ("image_score", "anomaly_map", "is_defect")
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class TensorRTRunner:
    """A deserialised engine: `run(uint8 or float batch) -> (scores, maps, is_defect)` in numpy."""

    def __init__(
        self,
        engine_path: Path,
        *,
        input_name: str = "images",
        output_names: tuple[str, str, str] = OUTPUT_NAMES,
        name: str = "tensorrt",
    ) -> None:
        trt = require_tensorrt()
        self.name = name
        self._path = Path(engine_path)
        self._input = input_name
        self._outputs = output_names
        self._memory = open_device_memory()
        try:
            self._load(trt)
        except BaseException:
            self._memory.close()
            raise

    def _load(self, trt: ModuleType) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self._path.read_bytes())
        if self._engine is None:
            raise EngineRunError(
                f"{self._path}: TensorRT {trt.__version__} cannot load this engine (built for "
                "another GPU or TensorRT version, or damaged); rebuild it on this machine"
            )
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [self._input]:
            raise EngineRunError(
                f"{self._path}: engine inputs are {inputs}, expected [{self._input!r}]"
            )
        missing = [n for n in self._outputs if n not in names]
        if missing:
            raise EngineRunError(f"{self._path}: engine has no output {missing} (it has {names})")
        low, _, high = (tuple(s) for s in engine.get_tensor_profile_shape(self._input, 0))
        self.min_batch, self.max_batch = low[0], high[0]
        self.image_shape = high[1:]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._context = engine.create_execution_context()
        if not self._context.set_input_shape(self._input, high):
            raise EngineRunError(f"{self._path}: cannot set input shape {high}")
        self._pointers = {}
        for tensor in names:  # every output needs an address, also ones we do not read
            shape = tuple(self._context.get_tensor_shape(tensor))
            if any(d < 0 for d in shape):
                raise EngineRunError(f"{self._path}: output {tensor!r} has a data-dependent shape")
            pointer = self._memory.alloc(max(1, prod(shape)) * self._dtypes[tensor].itemsize)
            self._context.set_tensor_address(tensor, pointer)
            self._pointers[tensor] = pointer

    @property
    def input_dtype(self) -> np.dtype:
        return self._dtypes[self._input]

    def run(self, batch: np.ndarray) -> Outputs:
        """Scores (B,) float32, anomaly maps (B, H, W) float32 and decisions (B,) bool."""
        batch = np.ascontiguousarray(batch)
        if batch.dtype != self.input_dtype or batch.shape[1:] != self.image_shape or not len(batch):
            raise EngineRunError(
                f"{self._path}: got a batch of {batch.dtype} {batch.shape}, the engine takes "
                f"{self.input_dtype} (N, {', '.join(map(str, self.image_shape))})"
            )
        step = self.max_batch
        parts = [self._run_slice(batch[i : i + step]) for i in range(0, len(batch), step)]
        scores, maps, flags = (np.concatenate(p) for p in zip(*parts, strict=True))
        return (
            scores.astype(np.float32, copy=False),
            maps.astype(np.float32, copy=False),
            flags.astype(bool, copy=False),
        )

    def _run_slice(self, batch: np.ndarray) -> list[np.ndarray]:
        if not self._context.set_input_shape(self._input, batch.shape):
            raise EngineRunError(
                f"{self._path}: batch of {len(batch)} is outside the engine's profile "
                f"{self.min_batch}..{self.max_batch}"
            )
        self._memory.to_device(self._pointers[self._input], batch)
        if not self._context.execute_async_v3(self._memory.stream_handle):
            raise EngineRunError(f"{self._path}: execution failed (see TensorRT's log)")
        results = []
        for tensor in self._outputs:
            host = np.empty(tuple(self._context.get_tensor_shape(tensor)), self._dtypes[tensor])
            self._memory.to_host(host, self._pointers[tensor])
            results.append(host)
        self._memory.synchronize()
        return results

    def close(self) -> None:
        """Free the device buffers and the stream; the runner cannot run afterwards."""
        self._context = None
        self._engine = None
        self._memory.close()

    def __enter__(self) -> "TensorRTRunner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
