"""The drift report as people open it: logged to a real MLflow server, fetched over HTTP, and
shown by MLflow's own UI in headless Chromium with every outside request blocked.

The server sends artifacts as attachments (opening the artifact URL directly downloads it), so
the browser opens the run's artifact view, which fetches the HTML through `/get-artifact` and
shows it in a sandboxed iframe from a blob URL; the report must render there with no network.
"""

import importlib.util
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from flows.drift_flow import drift_flow
from flows.train_flow import train_flow

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BATCH_SIZE = 12  # above the drift monitor's default min_batch of 10

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright is not installed (pip install -e '.[dev]')",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[str]:
    """`mlflow server` in its own process group (uvicorn and helpers), always stopped after.
    Background jobs are off: nothing here uses them and they add three more processes."""
    home = tmp_path / "server"
    home.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--artifacts-destination",
                str(home / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"mlflow server exited:\n{_log_tail(log_path)}"
            assert time.monotonic() < deadline, f"no /health in 180 s:\n{_log_tail(log_path)}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _batch_folder(demo_data: Path, tmp_path: Path) -> Path:
    """The demo's good test images, topped up from train/good if there are too few."""
    good = demo_data / "test" / "good"
    if len(list(good.glob("*.png"))) >= BATCH_SIZE:
        return good
    batch = tmp_path / "batch"
    batch.mkdir()
    frames = sorted(good.glob("*.png")) + sorted((demo_data / "train" / "good").glob("*.png"))
    for i, frame in enumerate(frames[:BATCH_SIZE]):
        shutil.copy(frame, batch / f"{i:03d}.png")
    return batch


def _screenshot_is_a_report(png: bytes) -> None:
    """Not blank: contrast, many colours, and both chart series (blue reference, orange batch)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
    assert rgb.std() > 10 and colours > 50, (rgb.std(), colours)
    r, b = rgb[..., 0], rgb[..., 2]
    assert (b - r > 40).sum() > 100, "no reference (blue) marks in the screenshot"
    assert (r - b > 80).sum() > 100, "no batch (orange) marks in the screenshot"


def test_drift_report_renders_offline_in_the_mlflow_ui(
    mlflow_server, monkeypatch, tiny_config, demo_data, workspace_dir, tmp_path
) -> None:
    """Trained and checked against the server, as a line would run it; then the HTML must
    come back byte for byte and render in the UI with nothing fetched from outside."""
    from playwright.sync_api import Request, Route, sync_playwright

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    trained = train_flow(tiny_config)
    outcome = drift_flow(str(trained.run_dir / "bundle"), _batch_folder(demo_data, tmp_path))

    # logged through the server, in drift/<NNNN>-<stamp>-<batch>/
    client = MlflowClient(mlflow_server)
    folders = [a.path for a in client.list_artifacts(outcome.mlflow_run_id, "drift")]
    expected = re.compile(rf"drift/\d{{4}}-{re.escape(outcome.html_path.parent.name)}")
    matched = [f for f in folders if expected.fullmatch(f)]
    assert len(matched) == 1, folders
    artifact = f"{matched[0]}/drift_report.html"
    query = urllib.parse.urlencode({"path": artifact, "run_uuid": outcome.mlflow_run_id})
    with urllib.request.urlopen(f"{mlflow_server}/get-artifact?{query}", timeout=30) as answer:
        assert answer.read() == outcome.html_path.read_bytes()

    experiment = client.get_run(outcome.mlflow_run_id).info.experiment_id
    view = f"{mlflow_server}/#/experiments/{experiment}/runs/{outcome.mlflow_run_id}/artifacts/"
    requested: list[str] = []
    blocked: list[str] = []

    def only_the_server(route: Route, request: Request) -> None:
        if request.url.startswith(f"{mlflow_server}/"):
            route.continue_()
        else:
            blocked.append(request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # context-wide, so the UI's workers are covered too; data: and blob: never reach here
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(60_000)
            context.on("request", lambda request: requested.append(request.url))
            context.route("**/*", only_the_server)
            page = context.new_page()
            page.goto(view + artifact)
            holder = page.wait_for_selector('iframe[src^="blob:"]')
            report = holder.content_frame()
            assert report is not None
            report.wait_for_function(
                "document.images.length > 0"
                " && Array.from(document.images).every(img => img.complete)"
            )
            images = report.evaluate(
                "Array.from(document.images).map(img => [img.src.slice(0, 5), img.naturalWidth])"
            )
            report.locator("img").first.scroll_into_view_if_needed()
            png = holder.screenshot()
        finally:
            browser.close()

    assert blocked == [], f"requests outside the MLflow server: {blocked}"
    outside = [u for u in requested if not u.startswith((f"{mlflow_server}/", "data:", "blob:"))]
    assert outside == [], outside
    assert any("/get-artifact?" in u and "drift_report.html" in u for u in requested), requested
    assert len(images) >= 3  # histograms, feature scatter, score distributions
    assert all(scheme == "data:" and width > 0 for scheme, width in images), images
    _screenshot_is_a_report(png)
