"""Counters shared by the frame loop, the writer, the sender and the watcher; read by /healthz,
/metrics and the final summary. One lock, held for a few additions per frame."""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
VERDICTS = ("good", "defect", "invalid")


@dataclass
class Snapshot:
    """A consistent copy of every figure at one moment."""

    model_name: str
    model_version: str
    backend: str
    frames: dict[str, int]
    frame_s: float
    inference_s: float
    latency_buckets: list[int]
    last_frame_time: datetime | None
    spool_depth: int
    delivered: int
    posts_ok: int
    posts_failed: int
    last_post_error: str | None
    swaps: int
    swaps_refused: int
    last_swap_error: str | None

    @property
    def total_frames(self) -> int:
        return sum(self.frames.values())

    @property
    def mean_latency_ms(self) -> float:
        return 1000 * self.frame_s / self.total_frames if self.total_frames else 0.0

    @property
    def outside_inference_share(self) -> float:
        """Share of the per-frame time (frame in hand to verdict) spent outside the model."""
        return (self.frame_s - self.inference_s) / self.frame_s if self.frame_s > 0 else 0.0


class Stats:
    """Live figures of one run; `spool_depth` is asked on each snapshot (the spool counts)."""

    def __init__(self, model_name: str, model_version: str, backend: str) -> None:
        self.model_name, self.model_version, self.backend = model_name, model_version, backend
        self.spool_depth: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()
        self._frames = dict.fromkeys(VERDICTS, 0)
        self._frame_s = self._inference_s = 0.0
        self._buckets = [0] * len(LATENCY_BUCKETS_S)
        self._last_frame_time: datetime | None = None
        self._delivered = self._posts_ok = self._posts_failed = 0
        self._last_post_error: str | None = None
        self._swaps = self._swaps_refused = 0
        self._last_swap_error: str | None = None

    def frame(self, verdict: str, latency_s: float, inference_s: float, when: datetime) -> None:
        with self._lock:
            self._frames[verdict] += 1
            self._frame_s += latency_s
            self._inference_s += inference_s
            self._last_frame_time = when
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if latency_s <= bound:
                    self._buckets[i] += 1
                    break

    def posted(self, records: int) -> None:
        with self._lock:
            self._posts_ok += 1
            self._delivered += records
            self._last_post_error = None

    def post_failed(self, why: str) -> None:
        with self._lock:
            self._posts_failed += 1
            self._last_post_error = why

    def swapped(self, model_name: str, model_version: str, backend: str) -> None:
        with self._lock:
            self.model_name, self.model_version, self.backend = model_name, model_version, backend
            self._swaps += 1
            self._last_swap_error = None

    def swap_refused(self, why: str) -> None:
        with self._lock:
            self._swaps_refused += 1
            self._last_swap_error = why

    def snapshot(self) -> Snapshot:
        depth = self.spool_depth()
        with self._lock:
            cumulative, running = [], 0
            for count in self._buckets:
                running += count
                cumulative.append(running)
            return Snapshot(
                model_name=self.model_name,
                model_version=self.model_version,
                backend=self.backend,
                frames=dict(self._frames),
                frame_s=self._frame_s,
                inference_s=self._inference_s,
                latency_buckets=cumulative,
                last_frame_time=self._last_frame_time,
                spool_depth=depth,
                delivered=self._delivered,
                posts_ok=self._posts_ok,
                posts_failed=self._posts_failed,
                last_post_error=self._last_post_error,
                swaps=self._swaps,
                swaps_refused=self._swaps_refused,
                last_swap_error=self._last_swap_error,
            )
