"""/healthz (JSON) and /metrics (Prometheus text format) on 127.0.0.1 only.

Bound to loopback because it is unauthenticated: a node exporter or a local agent scrapes it
and forwards what it needs. The exposition format is written by hand (a few counters do not
justify a dependency on the edge device).
"""

import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deploy.edge.errors import EdgeError
from deploy.edge.stats import LATENCY_BUCKETS_S, Snapshot, Stats

log = logging.getLogger(__name__)

PORT_FILE = "health.port"
PREFIX = "aeinspect_edge"


def health_json(snap: Snapshot) -> dict:
    degraded = snap.last_swap_error is not None or snap.last_post_error is not None
    return {
        "status": "degraded" if degraded else "ok",
        "model_name": snap.model_name,
        "model_version": snap.model_version,
        "backend": snap.backend,
        "frames": snap.total_frames,
        "defects": snap.frames["defect"],
        "invalid": snap.frames["invalid"],
        "spool_depth": snap.spool_depth,
        "delivered": snap.delivered,
        "last_post_error": snap.last_post_error,
        "last_frame_time": snap.last_frame_time.isoformat() if snap.last_frame_time else None,
        "last_swap_error": snap.last_swap_error,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Counts as integers, times at full precision (the `g` format would round 1234567)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def metrics_text(snap: Snapshot) -> str:
    """The Prometheus text exposition format, version 0.0.4."""
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {PREFIX}_{name} {text}", f"# TYPE {PREFIX}_{name} {kind}"])
        lines.extend(f"{PREFIX}_{name}{labels} {_number(value)}" for labels, value in samples)

    family(
        "frames_total",
        "counter",
        "Frames that got a record, by verdict.",
        [(f'{{verdict="{v}"}}', n) for v, n in snap.frames.items()],
    )
    family(
        "frame_seconds_total",
        "counter",
        "Time from frame in hand to verdict, summed over frames.",
        [("", snap.frame_s)],
    )
    family(
        "inference_seconds_total",
        "counter",
        "Time inside the model runtime, summed over frames.",
        [("", snap.inference_s)],
    )
    bounds = zip(LATENCY_BUCKETS_S, snap.latency_buckets, strict=True)
    buckets = [(f'{{le="{b:g}"}}', n) for b, n in bounds]
    name = "frame_latency_seconds"
    lines += [
        f"# HELP {PREFIX}_{name} Frame in hand to verdict.",
        f"# TYPE {PREFIX}_{name} histogram",
        *(f"{PREFIX}_{name}_bucket{le} {n}" for le, n in buckets),
        f'{PREFIX}_{name}_bucket{{le="+Inf"}} {snap.total_frames}',
        f"{PREFIX}_{name}_sum {_number(snap.frame_s)}",
        f"{PREFIX}_{name}_count {snap.total_frames}",
    ]
    family(
        "spool_depth",
        "gauge",
        "Records waiting for the collector.",
        [("", snap.spool_depth)],
    )
    family(
        "records_delivered_total",
        "counter",
        "Records the collector acknowledged.",
        [("", snap.delivered)],
    )
    family(
        "posts_total",
        "counter",
        "Batches posted to the collector, by result.",
        [('{result="ok"}', snap.posts_ok), ('{result="failed"}', snap.posts_failed)],
    )
    family(
        "swaps_total",
        "counter",
        "Model bundle swaps, by result.",
        [('{result="ok"}', snap.swaps), ('{result="refused"}', snap.swaps_refused)],
    )
    if snap.last_frame_time is not None:
        family(
            "last_frame_timestamp_seconds",
            "gauge",
            "When the last frame got its verdict (Unix time).",
            [("", snap.last_frame_time.timestamp())],
        )
    info = (
        f'{{model_name="{_label(snap.model_name)}",model_version="{_label(snap.model_version)}",'
        f'backend="{_label(snap.backend)}"}}'
    )
    family("model_info", "gauge", "The model scoring frames now.", [(info, 1)])
    return "\n".join(lines) + "\n"


class HealthServer:
    """The HTTP server in a daemon thread; `port` is the one really bound."""

    def __init__(self, stats: Stats, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    body = json.dumps(health_json(stats.snapshot())).encode()
                    kind = "application/json"
                elif path == "/metrics":
                    body = metrics_text(stats.snapshot()).encode()
                    kind = "text/plain; version=0.0.4; charset=utf-8"
                else:
                    self.send_error(404, "try /healthz or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the runtime's own log

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise EdgeError(
                f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror}); "
                "choose another port (0 picks a free one)"
            ) from exc
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="edge-health", daemon=True
        )

    def start(self, out: Path) -> None:
        """Serve, and write the bound port to `<out>/health.port` for whoever needs to find it."""
        self._thread.start()
        tmp = out / f".{PORT_FILE}.tmp"
        tmp.write_text(f"{self.port}\n")
        os.replace(tmp, out / PORT_FILE)
        log.info("health on http://127.0.0.1:%d/healthz and /metrics", self.port)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
