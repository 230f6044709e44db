"""/healthz and /metrics: served on loopback, valid Prometheus text, figures that add up."""

import json
import re
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from deploy.edge.errors import EdgeError
from deploy.edge.health import PORT_FILE, HealthServer, metrics_text
from deploy.edge.stats import Stats

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Check the exposition format line by line; `name{labels}` -> value."""
    assert text.endswith("\n")
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("# HELP "):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            family = re.sub(r"_(bucket|sum|count)$", "", match.group(1))
            assert match.group(1) in typed or family in typed, f"no TYPE before {line!r}"
            samples[line.rsplit(" ", 1)[0]] = float(match.group(4))
    return samples


@pytest.fixture
def stats() -> Stats:
    stats = Stats('line "3"', "7", "onnxruntime-cpu")
    now = datetime.now(timezone.utc)
    for verdict, latency, inference in [("good", 0.004, 0.003), ("defect", 0.03, 0.02)]:
        stats.frame(verdict, latency, inference, now)
    stats.frame("invalid", 0.0005, 0.0, now)
    stats.posted(2)
    stats.post_failed("HTTP 503 Service Unavailable")
    stats.swap_refused("/b/model.onnx: sha256 does not match bundle.json")
    return stats


def test_metrics_are_valid_exposition_text_with_every_figure(stats):
    m = parse_metrics(metrics_text(stats.snapshot()))

    assert m['aeinspect_edge_frames_total{verdict="good"}'] == 1
    assert m['aeinspect_edge_frames_total{verdict="invalid"}'] == 1
    assert m["aeinspect_edge_frame_seconds_total"] == pytest.approx(0.0345)
    assert m["aeinspect_edge_inference_seconds_total"] == pytest.approx(0.023)
    buckets = [v for k, v in m.items() if k.startswith("aeinspect_edge_frame_latency_seconds_b")]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    assert m['aeinspect_edge_frame_latency_seconds_bucket{le="0.005"}'] == 2
    assert m["aeinspect_edge_frame_latency_seconds_count"] == 3
    assert m['aeinspect_edge_posts_total{result="failed"}'] == 1
    assert m["aeinspect_edge_records_delivered_total"] == 2
    assert m['aeinspect_edge_swaps_total{result="refused"}'] == 1
    info = 'aeinspect_edge_model_info{model_name="line \\"3\\"",model_version="7",'
    assert m[info + 'backend="onnxruntime-cpu"}'] == 1


def test_server_answers_on_loopback_and_writes_its_port(stats, tmp_path):
    server = HealthServer(stats, 0)
    server.start(tmp_path)
    try:
        port = int((tmp_path / PORT_FILE).read_text())
        assert port == server.port
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            health = json.load(response)
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            kind = response.headers["Content-Type"]
            parse_metrics(response.read().decode())
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "/other", timeout=5)
    finally:
        server.stop()
    assert kind.startswith("text/plain; version=0.0.4")
    assert server._server.server_address[0] == "127.0.0.1"
    assert health["status"] == "degraded"
    assert (health["frames"], health["defects"], health["invalid"]) == (3, 1, 1)
    assert health["model_version"] == "7" and health["backend"] == "onnxruntime-cpu"
    assert "model.onnx" in health["last_swap_error"]
    assert health["last_frame_time"] is not None and health["spool_depth"] == 0


def test_a_busy_port_is_a_clear_error(stats):
    first = HealthServer(stats, 0)
    try:
        with pytest.raises(EdgeError, match=f"--port {first.port}"):
            HealthServer(stats, first.port)
    finally:
        first.stop()
