"""Training batches built ahead of time on worker threads, with the wait for them measured.

Why threads: synthesis and augmentation are numpy/OpenCV work that releases the GIL, so one or
two threads keep the model fed without the process start-up and pickling costs of a
multiprocessing DataLoader. The share of step time spent waiting is recorded per epoch so a slow
loader shows up in the run's metrics instead of as a mysteriously slow model.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np

Batch = TypeVar("Batch")


class PrefetchLoader(Generic[Batch]):
    """Yields `make_batch(indices)` for consecutive slices of `order`, keeping `depth` in flight.

    Batches come out in order whatever the thread count, so training stays deterministic.
    """

    def __init__(
        self,
        make_batch: Callable[[np.ndarray], Batch],
        order: np.ndarray,
        batch_size: int,
        threads: int = 1,
        depth: int = 2,
    ) -> None:
        self.make_batch = make_batch
        self.slices = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if len(self.slices) > 1 and len(self.slices[-1]) < 2:  # a batch of one breaks BatchNorm
            self.slices.pop()
        self.threads, self.depth = threads, max(depth, 1)
        self.wait_seconds = 0.0

    def __len__(self) -> int:
        return len(self.slices)

    def __iter__(self) -> Iterator[Batch]:
        if self.threads == 0:
            for idx in self.slices:
                began = time.perf_counter()
                batch = self.make_batch(idx)
                self.wait_seconds += time.perf_counter() - began
                yield batch
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="batches") as pool:
            pending: deque[Future[Batch]] = deque()
            queue = iter(self.slices)
            for idx in queue:
                pending.append(pool.submit(self.make_batch, idx))
                if len(pending) >= self.depth + self.threads - 1:
                    break
            while pending:
                began = time.perf_counter()
                batch = pending.popleft().result()
                self.wait_seconds += time.perf_counter() - began
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(pool.submit(self.make_batch, nxt))
                yield batch
