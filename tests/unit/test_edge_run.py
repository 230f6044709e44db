"""The edge runtime in-process on the tiny demo bundle: parity with ONNX Runtime on the lab's
images, invalid frames, refused bundles, backend choice and hot swaps."""

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_contracts.bundle import BUNDLE_JSON, load_edge_bundle
from deploy.edge.backends import select_backend
from deploy.edge.cli import main
from deploy.edge.errors import EdgeError
from deploy.edge.health import PORT_FILE
from deploy.edge.records import RECORDS_FILE
from deploy.edge.runtime import RunOptions, run
from deploy.edge.stats import Stats
from deploy.edge.swap import BundleWatcher, ModelSlot, fingerprint, load_model
from pipeline.data.mvtec import load_test_set


def read_records(out: Path) -> list[dict]:
    path = out / RECORDS_FILE
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]  # the last piece may be a line being written
    return [json.loads(line) for line in lines]


def flat_test_folder(demo_data: Path, dest: Path) -> Path:
    """Every demo test image in one folder, named `<class>_<file>` (sorted = class order)."""
    dest.mkdir()
    for image in sorted((demo_data / "test").glob("*/*.png")):
        shutil.copy(image, dest / f"{image.parent.name}_{image.name}")
    return dest


def copy_bundle(bundle: Path, dest: Path, version: str | None = None, flip: bool = False) -> Path:
    """A copy of `bundle`; a new `model_version` in bundle.json (not hashed), or one byte of
    model.onnx flipped (its hash no longer matches)."""
    shutil.copytree(bundle, dest)
    if version is not None:
        manifest = json.loads((dest / BUNDLE_JSON).read_text())
        manifest["model_version"] = version
        (dest / BUNDLE_JSON).write_text(json.dumps(manifest, indent=2))
    if flip:
        data = bytearray((dest / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (dest / "model.onnx").write_bytes(bytes(data))
    return dest


def repoint(link: Path, target: Path) -> None:
    """Atomically repoint a symlink, as a deployer does."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_runtime_scores_equal_onnx_runtime_on_the_labs_images(edge_bundle, demo_data, tmp_path):
    import onnxruntime as ort

    manifest = load_edge_bundle(edge_bundle)
    folder = flat_test_folder(demo_data, tmp_path / "frames")
    summary = run(RunOptions(edge_bundle, str(folder), tmp_path / "out", port=0, watch_interval=0))

    size, channels = manifest.input.contract.input_height, manifest.input.contract.channels
    lab = load_test_set(demo_data, size, channels)  # the lab's reader and resize (PIL + cv2)
    session = ort.InferenceSession(
        str(edge_bundle / manifest.onnx), providers=["CPUExecutionProvider"]
    )
    scores, _, flags = session.run(None, {manifest.input.name: lab.images})
    names = [f"{Path(p).parent.name}_{Path(p).name}" for p in lab.paths]
    expected = {n: (float(s), bool(f)) for n, s, f in zip(names, scores, flags, strict=True)}

    records = read_records(tmp_path / "out")
    assert summary.snapshot.total_frames == len(records) == len(expected)
    for record in records:
        score, defect = expected[record["frame_id"]]
        assert abs(record["score"] - score) <= manifest.parity.score_tolerance
        assert record["verdict"] == ("defect" if defect else "good")
        assert (
            record["backend"] == "onnxruntime-cpu" and record["model_name"] == manifest.model_name
        )
        assert 0 < record["inference_ms"] <= record["latency_ms"]
        assert (record["overlay"] is not None) == defect
        if defect:
            assert cv2.imread(record["overlay"]).shape == (64, 64, 3)


def test_invalid_frames_get_records_and_the_run_goes_on(edge_bundle, demo_data, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    good = next((demo_data / "test" / "good").glob("*.png"))
    (frames / "a_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (frames / "b_truncated.png").write_bytes(good.read_bytes()[:200])
    cv2.imwrite(str(frames / "c_gray.png"), cv2.imread(str(good), cv2.IMREAD_GRAYSCALE))
    cv2.imwrite(str(frames / "d_tiny.png"), np.zeros((8, 8, 3), np.uint8))
    shutil.copy(good, frames / "e_good.png")

    summary = run(RunOptions(edge_bundle, str(frames), tmp_path / "out", port=0, watch_interval=0))

    records = {r["frame_id"]: r for r in read_records(tmp_path / "out")}
    assert list(records) == [
        "a_corrupt.png",
        "b_truncated.png",
        "c_gray.png",
        "d_tiny.png",
        "e_good.png",
    ]
    for name, needle in [
        ("a_corrupt.png", "not a readable image"),
        ("b_truncated.png", "not a readable image"),
        ("c_gray.png", "1 channel(s), expected 3"),
        ("d_tiny.png", "height 8 outside"),
    ]:
        record = records[name]
        assert record["verdict"] == "invalid" and record["score"] is None
        assert name in record["problem"] and needle in record["problem"]
    assert records["e_good.png"]["score"] is not None
    assert summary.snapshot.frames["invalid"] == 4


def test_runs_extend_the_records_file_and_max_frames_stops(edge_bundle, demo_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / RECORDS_FILE).write_text('{"earlier": 1}\n{"cut off by a crash')
    good = demo_data / "test" / "good"
    for _ in range(2):
        options = RunOptions(edge_bundle, str(good), out, port=0, watch_interval=0, max_frames=3)
        assert run(options).snapshot.total_frames == 3
    lines = (out / RECORDS_FILE).read_text().splitlines()
    assert lines[:2] == ['{"earlier": 1}', '{"cut off by a crash']
    first = sorted(p.name for p in good.glob("*.png"))[:3]
    assert [json.loads(line)["frame_id"] for line in lines[2:]] == first * 2


def test_verify_prints_the_model_and_its_files(edge_bundle, capsys):
    assert main(["verify", "--bundle", str(edge_bundle)]) == 0
    out = capsys.readouterr().out
    manifest = load_edge_bundle(edge_bundle)
    assert f"{manifest.model_name} version {manifest.model_version}" in out
    assert "files OK: " in out and "model.onnx" in out


def test_a_flipped_byte_is_refused_by_verify_and_run_and_out_is_untouched(
    edge_bundle, demo_data, tmp_path, capsys
):
    bad = copy_bundle(edge_bundle, tmp_path / "bad", flip=True)
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    (out / RECORDS_FILE).write_text('{"earlier": "record"}\n')
    (out / "overlays" / "x.png").write_bytes(b"earlier overlay")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    source = str(demo_data / "test" / "good")

    for argv in (
        ["verify", "--bundle", str(bad)],
        ["run", "--bundle", str(bad), "--source", source, "--out", str(out), "--port", "0"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("aeinspect-edge: ")
        assert str(bad / "model.onnx") in err[0] and "sha256 does not match" in err[0]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--source", "/nonexistent/frames"], "source not found"),
        (["--collector", "collector:8080"], "not an http:// or https:// URL"),
    ],
)
def test_user_errors_are_one_line(edge_bundle, demo_data, tmp_path, capsys, extra, needle):
    argv = ["run", "--bundle", str(edge_bundle), "--out", str(tmp_path / "o"), "--port", "0"]
    argv += ["--source", str(demo_data / "test" / "good"), *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_auto_backend_here_and_explicit_unavailable_backends(edge_bundle):
    import onnxruntime as ort

    from deploy.tensorrt.availability import tensorrt_available

    manifest = load_edge_bundle(edge_bundle)
    backend = select_backend(edge_bundle, manifest, "onnxruntime-cpu", threads=1)
    assert backend.name == "onnxruntime-cpu"
    assert backend.session.get_session_options().intra_op_num_threads == 1
    if not tensorrt_available()[0]:
        with pytest.raises(EdgeError, match="backend tensorrt is not usable: tensorrt is not"):
            select_backend(edge_bundle, manifest, "tensorrt")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert select_backend(edge_bundle, manifest).name == "onnxruntime-cpu"
        with pytest.raises(EdgeError, match="no CUDAExecutionProvider"):
            select_backend(edge_bundle, manifest, "onnxruntime-cuda")


def test_watcher_swaps_on_a_rewritten_bundle_json_and_refuses_a_broken_one(edge_bundle, tmp_path):
    bundle = copy_bundle(edge_bundle, tmp_path / "b")
    slot = ModelSlot(load_model(bundle, "auto", None))
    stats = Stats("m", "1", "onnxruntime-cpu")
    watcher = BundleWatcher(
        bundle, fingerprint(bundle), slot, lambda b: load_model(b, "auto", None), stats, 0.02
    )
    watcher.start()
    try:
        manifest = json.loads((bundle / BUNDLE_JSON).read_text())
        manifest["model_version"] = "2"
        tmp = bundle / "bundle.json.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, bundle / BUNDLE_JSON)
        wait_for(lambda: slot.current.manifest.model_version == "2", what="the swap")
        swapped = slot.current
        (bundle / "model.onnx").write_bytes(b"not a graph")
        wait_for(lambda: stats.snapshot().last_swap_error, what="the refusal")
    finally:
        watcher.stop()
    assert slot.current is swapped
    snap = stats.snapshot()
    assert (snap.swaps, snap.swaps_refused) == (1, 1) and "model.onnx" in snap.last_swap_error


FRAMES = 200  # 4 s at 50 fps: time for a swap and a refused swap while frames keep coming


def test_hot_swap_while_running_loses_no_frame(edge_bundle, demo_data, tmp_path):
    v1 = copy_bundle(edge_bundle, tmp_path / "v1", version="v1")
    v2 = copy_bundle(edge_bundle, tmp_path / "v2", version="v2")
    broken = copy_bundle(edge_bundle, tmp_path / "v3", version="v3", flip=True)
    link = tmp_path / "current"
    os.symlink(v1, link)
    frames = tmp_path / "frames"
    frames.mkdir()
    good = next((demo_data / "test" / "good").glob("*.png"))
    for i in range(FRAMES):
        os.link(good, frames / f"{i:04d}.png")
    out = tmp_path / "out"
    options = RunOptions(link, str(frames), out, port=0, watch_interval=0.05, fps=50)
    result = {}
    worker = threading.Thread(target=lambda: result.update(summary=run(options)))
    worker.start()
    try:
        wait_for(lambda: len(read_records(out)) >= 15, what="records from v1")
        repoint(link, v2)
        wait_for(lambda: any(r["model_version"] == "v2" for r in read_records(out)), what="v2")
        repoint(link, broken)
        port = int((out / PORT_FILE).read_text())

        def refusal() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                health = json.load(r)
            return health if health["last_swap_error"] else None

        health = wait_for(refusal, what="the refusal in /healthz")
    finally:
        worker.join(60)
    assert str(broken / "model.onnx") in health["last_swap_error"]
    assert health["model_version"] == "v2" and health["status"] == "degraded"

    records = read_records(out)
    assert [r["frame_id"] for r in records] == [f"{i:04d}.png" for i in range(FRAMES)]
    versions = [r["model_version"] for r in records]
    switch = versions.index("v2")
    assert switch >= 15 and versions == ["v1"] * switch + ["v2"] * (FRAMES - switch)
    snap = result["summary"].snapshot
    assert (snap.swaps, snap.swaps_refused, snap.total_frames) == (1, 1, FRAMES)


def test_build_engine_is_wired_to_the_tensorrt_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["build-engine", "--help"])
    assert exited.value.code == 0
    assert "--precision" in capsys.readouterr().out
