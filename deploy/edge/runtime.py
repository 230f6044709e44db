"""The camera loop: source -> contract check -> preprocess -> backend -> record.

The frame thread does only what a verdict needs; records, overlays and the spool are written
by the writer thread, delivery and model loading run on threads of their own. Per frame it
measures `latency_ms` (frame in hand to verdict) and `inference_ms`, whose sums give the share
of the time spent outside the model (the product goal is at most 20 %).
"""

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from deploy.edge.delivery import Sender, check_collector_url
from deploy.edge.errors import EdgeError
from deploy.edge.frames import FrameProblem
from deploy.edge.health import HealthServer
from deploy.edge.records import RecordWriter, Verdict
from deploy.edge.sources import CaptureSource, FolderSource, Frame, open_source, paced
from deploy.edge.spool import Spool
from deploy.edge.stats import Snapshot, Stats
from deploy.edge.swap import ActiveModel, BundleWatcher, ModelSlot, fingerprint, load_model

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    bundle: Path
    source: str
    out: Path
    collector: str | None = None
    port: int = 9108
    backend: str = "auto"
    threads: int | None = None
    watch_interval: float = 2.0
    max_frames: int | None = None
    drain_timeout: float = 30.0
    fps: float | None = None


@dataclass
class Summary:
    snapshot: Snapshot
    collector: bool
    spool_left: int

    def line(self) -> str:
        s = self.snapshot
        delivery = (
            f"{s.delivered} records delivered, {self.spool_left} left in the spool"
            if self.collector
            else "no collector"
        )
        return (
            f"{s.total_frames} frames ({s.frames['good']} good, {s.frames['defect']} defect, "
            f"{s.frames['invalid']} invalid); mean latency {s.mean_latency_ms:.2f} ms, "
            f"{s.outside_inference_share:.1%} outside inference; {delivery}"
        )


def score_frame(frame: Frame, model: ActiveModel, start: float) -> Verdict:
    """The verdict on one frame; `start` is when the frame was in hand (perf_counter)."""
    manifest = model.manifest
    common = {
        "frame_id": frame.frame_id,
        "threshold": manifest.threshold,
        "model_name": manifest.model_name,
        "model_version": manifest.model_version,
    }
    try:
        batch = model.preprocessor.batch(frame)
    except FrameProblem as exc:
        return Verdict(
            **common,
            time=datetime.now(timezone.utc),
            score=None,
            verdict="invalid",
            latency_ms=1000 * (time.perf_counter() - start),
            inference_ms=None,
            backend=None,
            problem=str(exc),
        )
    begin = time.perf_counter()
    scores, maps, flags = model.backend.run(batch)
    end = time.perf_counter()
    score, defect = float(scores[0]), bool(flags[0])
    scored = {
        **common,
        "time": datetime.now(timezone.utc),
        "latency_ms": 1000 * (end - start),
        "inference_ms": 1000 * (end - begin),
        "backend": model.backend.name,
    }
    if not math.isfinite(score):  # NaN > threshold is False: it would pass as a good part
        problem = f"{frame.frame_id}: the model returned a non-finite score ({score})"
        return Verdict(**scored, score=None, verdict="invalid", problem=problem)
    return Verdict(
        **scored,
        score=score,
        verdict="defect" if defect else "good",
        pixels=frame.pixels if defect else None,
        anomaly_map=maps[0] if defect else None,
    )


def _prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise EdgeError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def _retire(model: ActiveModel) -> None:
    """Free a swapped-out backend's device memory once no frame uses it any more."""
    close = getattr(model.backend, "close", None)
    if close is not None:
        close()


class _StopOnSignal:
    """SIGINT/SIGTERM set `stop`: the frame in progress finishes, records are flushed."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.previous = stop, {}

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        log.info("%s: finishing the current frame and stopping", signal.Signals(signum).name)
        self.stop.set()

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run(options: RunOptions) -> Summary:
    """Score frames until the source ends, `max_frames` is reached or a signal arrives."""
    collector = check_collector_url(options.collector) if options.collector else None
    bundle = Path(options.bundle)
    seen = fingerprint(bundle) if bundle.is_dir() else None  # before loading: no change missed
    load = partial(load_model, preference=options.backend, threads=options.threads)
    model = load(bundle)  # refuses before anything in --out is touched
    source = open_source(options.source)
    out = _prepare_out(Path(options.out))
    manifest = model.manifest
    stats = Stats(manifest.model_name, manifest.model_version, model.backend.name)
    log.info(
        "%s version %s on %s, reading %s",
        manifest.model_name,
        manifest.model_version,
        model.backend.name,
        source.description,
    )
    spool = sender = None
    if collector is not None:
        spool = Spool(out / "spool")
        sender = Sender(spool, collector, stats)
        stats.spool_depth = spool.depth
    health = HealthServer(stats, options.port)
    writer = RecordWriter(out, spool)
    slot = ModelSlot(model)
    watcher = None
    if options.watch_interval > 0 and seen is not None:
        watcher = BundleWatcher(bundle, seen, slot, load, stats, options.watch_interval)
    stop = threading.Event()
    left = 0
    writer.start()
    health.start(out)
    for thread in (sender, watcher):
        if thread is not None:
            thread.start()
    try:
        with _StopOnSignal(stop):
            ended = _loop(source, options, slot, stats, writer, stop)
            writer.close()
            if sender is not None:
                left = sender.drain(options.drain_timeout, stop) if ended else sender.spool.depth()
                if left:
                    log.warning(
                        "%d records not delivered yet; they stay in %s", left, sender.spool.folder
                    )
    finally:
        if watcher is not None:
            watcher.stop()
        if writer.is_alive():
            writer.close()
        if sender is not None:
            sender.stop()
        health.stop()
    if writer.error is not None:
        raise EdgeError(f"cannot write records to {out}: {writer.error}")
    return Summary(stats.snapshot(), sender is not None, left)


def _loop(
    source: FolderSource | CaptureSource,
    options: RunOptions,
    slot: ModelSlot,
    stats: Stats,
    writer: RecordWriter,
    stop: threading.Event,
) -> bool:
    """Frames until the end; True when the source ended or --max-frames was reached."""
    frames = source.frames(stop)
    if options.fps:
        frames = paced(frames, options.fps, stop)
    previous, count = slot.current, 0
    try:
        for frame in frames:
            start = time.perf_counter()
            model = slot.current
            if model is not previous:
                _retire(previous)
                previous = model
            verdict = score_frame(frame, model, start)
            stats.frame(
                verdict.verdict,
                verdict.latency_ms / 1000,
                (verdict.inference_ms or 0.0) / 1000,
                verdict.time,
            )
            writer.submit(verdict)
            count += 1
            if writer.error is not None or stop.is_set():
                return False
            if options.max_frames and count >= options.max_frames:
                return True
        return not stop.is_set()
    finally:
        frames.close()
