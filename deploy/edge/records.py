"""Writing verdicts off the frame thread: JSONL records, defect overlays, the collector spool.

The frame loop only puts a `Verdict` on a queue; building the `ScoreRecord`, encoding the
overlay PNG and the spool's fsync happen on the writer thread, so disk latency never shows in
the per-frame time. `<out>/records.jsonl` is appended to (never truncated) and flushed per
record; an overlay is written before the record that names it.
"""

import logging
import queue
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from data_contracts.score import ScoreRecord
from deploy.edge.spool import Spool

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
OVERLAY_DIR = "overlays"
QUEUE_FRAMES = 256  # at most this many verdicts wait; then the frame loop waits for the disk


@dataclass
class Verdict:
    """What the frame loop knows about one frame when it is done with it."""

    frame_id: str
    time: datetime
    score: float | None
    verdict: str
    threshold: float
    model_name: str
    model_version: str
    latency_ms: float
    inference_ms: float | None
    backend: str | None
    problem: str | None = None
    pixels: np.ndarray | None = None  # frame as delivered (BGR/grey), kept for defects only
    anomaly_map: np.ndarray | None = None


def overlay_image(pixels: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """The frame with its anomaly map blended on top, scaled so the threshold sits mid-scale:
    red is clearly above anything a good part reaches, blue is normal."""
    h, w = pixels.shape[:2]
    scale = threshold if threshold > 0 else max(float(anomaly_map.max()), 1e-6)
    level = np.clip(anomaly_map / (2 * scale), 0, 1) * 255
    level = cv2.resize(level.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(level, cv2.COLORMAP_JET)
    base = pixels if pixels.dtype == np.uint8 else (pixels / 257).astype(np.uint8)
    if base.shape[2] == 1:
        base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(base, 0.55, heat, 0.45, 0)


def _ends_with_newline(path: Path) -> bool:
    """True also for an empty file (nothing to finish)."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


class RecordWriter(threading.Thread):
    """Turns verdicts into records on disk (and in the spool) in the order they were made."""

    def __init__(self, out: Path, spool: Spool | None) -> None:
        super().__init__(name="edge-writer", daemon=True)
        self.out, self.spool = Path(out), spool
        self.overlays = self.out / OVERLAY_DIR
        self.error: Exception | None = None
        self._queue: queue.Queue[Verdict | None] = queue.Queue(QUEUE_FRAMES)
        path = self.out / RECORDS_FILE
        cut_off = path.is_file() and not _ends_with_newline(path)
        self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
        if cut_off:
            self._jsonl.write("\n")  # a line cut off by a crash stays alone, not glued to ours

    def submit(self, verdict: Verdict) -> None:
        self._queue.put(verdict)

    def run(self) -> None:
        try:
            while (verdict := self._queue.get()) is not None:
                if self.error is None:
                    self._write(verdict)
        finally:
            self._jsonl.close()

    def _write(self, verdict: Verdict) -> None:
        try:
            overlay = self._write_overlay(verdict) if verdict.anomaly_map is not None else None
            inference = verdict.inference_ms
            record = ScoreRecord(
                frame_id=verdict.frame_id,
                time=verdict.time,
                score=verdict.score,
                threshold=verdict.threshold,
                verdict=verdict.verdict,
                model_name=verdict.model_name,
                model_version=verdict.model_version,
                latency_ms=round(verdict.latency_ms, 3),
                inference_ms=None if inference is None else round(inference, 3),
                backend=verdict.backend,
                problem=verdict.problem,
                overlay=overlay,
            )
            line = record.model_dump_json()
            self._jsonl.write(line + "\n")
            self._jsonl.flush()
            if self.spool is not None:
                self.spool.put(line)
        except Exception as exc:  # disk full, folder gone: stop the run rather than lose records
            log.error("cannot write records to %s: %s", self.out, exc, exc_info=True)
            self.error = exc

    def _write_overlay(self, verdict: Verdict) -> str:
        assert verdict.pixels is not None and verdict.anomaly_map is not None
        image = overlay_image(verdict.pixels, verdict.anomaly_map, verdict.threshold)
        safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", verdict.frame_id)
        path = self.overlays / f"{verdict.time:%Y%m%dT%H%M%S%f}Z_{safe_id}.png"
        self.overlays.mkdir(exist_ok=True)
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"OpenCV could not encode the overlay for {verdict.frame_id}")
        path.write_bytes(png.tobytes())
        return str(path)

    def close(self) -> None:
        """Write everything queued, then stop."""
        self._queue.put(None)
        self.join()
