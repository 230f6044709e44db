"""The edge runtime as a deployer runs it: a subprocess on a video, a collector that is down,
then flaky, then fine; SIGTERM mid-run; and a run with torch, MLflow, Prefect and our lab
packages made unimportable."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
FRAMES = 150  # more than one batch of 100, so the collector sees several posts


def write_video(demo_data: Path, path: Path, frames: int) -> Path:
    """An MJPG .avi of the demo test images at their own size, repeated."""
    images = [cv2.imread(str(p)) for p in sorted((demo_data / "test").glob("*/*.png"))]
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for i in range(frames):
        writer.write(images[i % len(images)])
    writer.release()
    return path


def read_records(out: Path) -> list[dict]:
    path = out / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"runtime exited early: {proc.communicate()[1][-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """A collector that stores each Idempotency-Key once. Its second post is answered 503; its
    third is stored but the connection is dropped before the answer, as if it crashed there,
    so the runtime must resend that batch under the same key."""

    def __init__(self, port: int) -> None:
        self.port, self.posts, self.repeats = port, 0, 0
        self.stored: dict[str, list[dict]] = {}
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                collector.posts += 1
                if collector.posts == 2:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if key in collector.stored:
                    collector.repeats += 1
                else:
                    collector.stored[key] = body
                if collector.posts == 3:
                    self.close_connection = True  # stored, but the answer never leaves
                    return
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def runtime(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.edge", "run", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_record_reaches_a_collector_that_was_down_exactly_once(
    edge_bundle, demo_data, tmp_path
):
    video = write_video(demo_data, tmp_path / "clip.avi", FRAMES)
    out, port = tmp_path / "out", free_port()
    proc = runtime(
        *("--bundle", str(edge_bundle), "--source", str(video), "--out", str(out)),
        *("--collector", f"http://127.0.0.1:{port}/records", "--port", "0"),
        *("--drain-timeout", "90", "--watch-interval", "0"),
    )
    collector = None
    try:
        wait_for(lambda: len(read_records(out)) >= 40, proc, what="records while down")
        health_port = int((out / "health.port").read_text())
        wait_for(
            lambda: 'posts_total{result="failed"} 0\n' not in get(health_port, "/metrics"),
            proc,
            what="a failed post",
        )
        health = json.loads(get(health_port, "/healthz"))
        assert health["spool_depth"] > 0 and "unreachable" in health["last_post_error"]
        collector = Collector(port)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if collector is not None:
            collector.stop()
    assert proc.returncode == 0, stderr[-3000:]

    records = read_records(out)
    ids = [f"clip:{i:06d}" for i in range(FRAMES)]
    assert [r["frame_id"] for r in records] == ids
    delivered = [r for batch in collector.stored.values() for r in batch]
    assert Counter(r["frame_id"] for r in delivered) == Counter(ids)  # no gaps, no duplicates
    assert sorted(delivered, key=lambda r: r["frame_id"]) == records
    assert collector.repeats >= 1  # the dropped answer was retried under the same key
    assert f"{FRAMES} frames" in stdout
    assert f"{FRAMES} records delivered, 0 left in the spool" in stdout
    assert not list((out / "spool").glob("*.record"))


def test_sigterm_finishes_the_frame_flushes_and_exits_cleanly(edge_bundle, demo_data, tmp_path):
    video = write_video(demo_data, tmp_path / "clip.avi", 200)
    out = tmp_path / "out"
    proc = runtime(
        *("--bundle", str(edge_bundle), "--source", str(video), "--out", str(out)),
        *("--port", "0", "--fps", "40"),
    )
    try:
        wait_for(lambda: len(read_records(out)) >= 5, proc, what="first records")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    records = read_records(out)
    assert 5 <= len(records) < 200
    assert f"aeinspect-edge: {len(records)} frames" in stdout
    assert [r["frame_id"] for r in records] == [f"clip:{i:06d}" for i in range(len(records))]


BLOCKED = ("torch", "mlflow", "prefect", "pipeline", "flows")


def test_runs_without_torch_mlflow_prefect_or_the_lab_packages(edge_bundle, demo_data, tmp_path):
    code = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "from deploy.edge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["run", "--bundle", str(edge_bundle), "--source", str(demo_data / "test" / "good")]
    args += ["--out", str(tmp_path / "out"), "--port", "0"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    good = len(list((demo_data / "test" / "good").glob("*.png")))
    assert f"aeinspect-edge: {good} frames" in done.stdout
    assert len(read_records(tmp_path / "out")) == good
