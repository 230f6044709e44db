"""TensorRT engines for the edge bundle.

The parity arithmetic, the bundle bookkeeping and the import guard run everywhere; building and
running an engine needs TensorRT and a GPU and skips elsewhere with the reason. The ONNX graph is
made here with onnx.helper, so these tests do not depend on the lab's exporter.
"""

import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from data_contracts.bundle import (
    BUNDLE_JSON,
    BundleRefused,
    EdgeBundle,
    EngineEntry,
    GraphInput,
    ParityCheck,
    load_edge_bundle,
    sha256_file,
)
from data_contracts.frame import FrameContract
from deploy.tensorrt.add_engine import add_engine_to_bundle, engine_file_name, install_engine
from deploy.tensorrt.availability import require_tensorrt, tensorrt_available
from deploy.tensorrt.cli import build_engine_command
from deploy.tensorrt.errors import (
    EngineBuildError,
    FramesError,
    ParityRefused,
    TensorRTUnavailable,
)
from deploy.tensorrt.frames import image_shape, load_frames, to_graph_layout
from deploy.tensorrt.parity import OnnxRuntimeCpu, compare_outputs, engine_parity

REPO = Path(__file__).resolve().parents[2]
SIZE = 32
THRESHOLD = 0.5
TRT_OK, TRT_REASON = tensorrt_available()
CUDA_OK = any(importlib.util.find_spec(m) for m in ("cuda", "pycuda"))
needs_gpu = pytest.mark.skipif(
    not (TRT_OK and CUDA_OK),
    reason=TRT_REASON if not TRT_OK else "needs cuda-python or pycuda for device memory",
)
without_tensorrt = pytest.mark.skipif(TRT_OK, reason="tensorrt is installed here")


def outputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n).astype(np.float32)
    maps = rng.random((n, 4, 4), dtype=np.float32)
    return scores, maps, scores > 0


# --- parity arithmetic (numpy only) ---


def test_identical_outputs_pass_with_full_agreement():
    check = compare_outputs(*outputs(50), *outputs(50), runtime="tensorrt-fp16", source="test")
    assert check.passed and check.decision_agreement == 1.0
    assert check.rank_correlation == pytest.approx(1.0)
    assert check.max_score_diff == 0 and check.max_map_diff == 0
    assert check.reference == "onnxruntime-cpu" and check.images == 50


def test_one_flipped_decision_in_100_misses_the_995_bar_but_not_in_200():
    for n, passes in ((100, False), (200, True)):
        scores, maps, flags = outputs(n)
        flipped = flags.copy()
        flipped[7] = ~flipped[7]
        check = compare_outputs(scores, maps, flags, scores, maps, flipped, runtime="t", source="s")
        assert check.decision_agreement == pytest.approx(1 - 1 / n)
        assert check.passed is passes


def test_reversed_ranking_gives_rank_minus_one_and_fails():
    scores, maps, flags = outputs(100)
    check = compare_outputs(scores, maps, flags, -scores, maps, flags, runtime="t", source="s")
    assert check.decision_agreement == 1.0
    assert check.rank_correlation == pytest.approx(-1.0)
    assert not check.passed


def test_tolerances_are_criteria_only_when_given():
    scores, maps, flags = outputs(100)
    moved = scores + np.float32(0.01)
    loose = compare_outputs(scores, maps, flags, moved, maps, flags, runtime="t", source="s")
    tight = compare_outputs(
        scores, maps, flags, moved, maps, flags, runtime="t", source="s", score_tolerance=1e-3
    )
    assert loose.passed and not tight.passed
    assert tight.max_score_diff == pytest.approx(0.01, rel=1e-3)


def test_non_finite_scores_refuse_naming_the_runtime():
    scores, maps, flags = outputs(10)
    broken = scores.copy()
    broken[3] = np.inf
    with pytest.raises(ParityRefused, match="tensorrt-fp16 scores: 1 of 10 images"):
        compare_outputs(
            scores, maps, flags, broken, maps, flags, runtime="tensorrt-fp16", source="s"
        )


# --- a tiny bundle made here ---


def tiny_onnx(path: Path, layout: str) -> None:
    """images -> anomaly_map = pixels in [0, 1], image_score = its mean, is_defect = score > 0.5."""
    from onnx import TensorProto, checker, helper, save

    h = helper
    if layout == "uint8_nhwc":
        shape, dtype, axis = ["batch", SIZE, SIZE, 1], TensorProto.UINT8, 3
        scale = [
            h.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
            h.make_node("Div", ["pixels", "c255"], ["scaled"]),
        ]
        constants = [h.make_tensor("c255", TensorProto.FLOAT, [], [255.0])]
    else:
        shape, dtype, axis = ["batch", 1, SIZE, SIZE], TensorProto.FLOAT, 1
        scale = [h.make_node("Identity", ["images"], ["scaled"])]
        constants = []
    nodes = [
        *scale,
        h.make_node("Squeeze", ["scaled", "axis"], ["anomaly_map"]),
        h.make_node("ReduceMean", ["anomaly_map"], ["image_score"], axes=[1, 2], keepdims=0),
        h.make_node("Greater", ["image_score", "threshold"], ["is_defect"]),
    ]
    constants += [
        h.make_tensor("axis", TensorProto.INT64, [1], [axis]),
        h.make_tensor("threshold", TensorProto.FLOAT, [], [THRESHOLD]),
    ]
    graph = h.make_graph(
        nodes,
        "tiny",
        [h.make_tensor_value_info("images", dtype, shape)],
        [
            h.make_tensor_value_info("image_score", TensorProto.FLOAT, ["batch"]),
            h.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", SIZE, SIZE]),
            h.make_tensor_value_info("is_defect", TensorProto.BOOL, ["batch"]),
        ],
        initializer=constants,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    checker.check_model(model)
    save(model, str(path))


def line_frames(n: int = 64) -> np.ndarray:
    """Grey frames whose mean brightness is spread evenly, none close to the threshold."""
    rng = np.random.default_rng(1)
    levels = np.linspace(8, 247, n)[:, None, None, None]
    noise = rng.integers(-4, 5, size=(n, SIZE, SIZE, 1))
    return np.clip(levels + noise, 0, 255).astype(np.uint8)


def make_bundle(folder: Path, layout: str = "uint8_nhwc") -> Path:
    pytest.importorskip("onnx")
    folder.mkdir(parents=True)
    tiny_onnx(folder / "model.onnx", layout)
    same = outputs(1)
    manifest = EdgeBundle(
        model_name="tiny",
        model_family="test",
        model_version="1",
        created=datetime.now(timezone.utc),
        opset=17,
        max_batch=8,
        input=GraphInput(
            layout=layout,
            channel_order="gray",
            contract=FrameContract(channels=1, input_height=SIZE, input_width=SIZE),
        ),
        threshold=THRESHOLD,
        alpha=0.05,
        parity=ParityCheck.measure(
            same,
            same,
            runtime="onnxruntime-cpu",
            reference="torch-cpu",
            source="test",
            min_agreement=1.0,
        ),
        files={"model.onnx": sha256_file(folder / "model.onnx")},
    )
    (folder / BUNDLE_JSON).write_text(manifest.model_dump_json(indent=2))
    return folder


def fake_entry(name: str = "model-fp16-test-gpu-trt10.3.0.engine") -> EngineEntry:
    return EngineEntry(
        file=name,
        tensorrt_version="10.3.0",
        device="Test GPU",
        compute_capability="8.7",
        precision="fp16",
        batch=(1, 1, 8),
        built=datetime.now(timezone.utc),
    )


@pytest.mark.parametrize("layout", ["uint8_nhwc", "float_nchw"])
def test_onnxruntime_reference_agrees_with_itself_in_both_layouts(tmp_path, layout):
    bundle = make_bundle(tmp_path / "b", layout)
    manifest = load_edge_bundle(bundle)
    images = to_graph_layout(line_frames(), manifest.input)
    assert images.shape[1:] == image_shape(manifest.input)
    names = ("image_score", "anomaly_map", "is_defect")
    reference = OnnxRuntimeCpu(
        bundle / "model.onnx", input_name="images", output_names=names, max_batch=8
    )
    check = engine_parity(reference, reference, images, source="line frames")
    assert check.passed and check.decision_agreement == 1.0
    scores, maps, flags = reference.run(images)
    assert maps.shape == (64, SIZE, SIZE) and 0 < flags.sum() < 64
    assert np.all(
        np.diff(scores) > 0
    )  # brightness order survives: rank correlation means something


def test_install_engine_lists_its_hash_and_replaces_one_of_the_same_name(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    mode = (bundle / BUNDLE_JSON).stat().st_mode
    for payload in (b"first engine", b"second engine"):
        built = bundle / ".partial"
        built.write_bytes(payload)
        install_engine(bundle, load_edge_bundle(bundle), built, fake_entry())
    manifest = load_edge_bundle(bundle)  # hashes check out
    assert [e.file for e in manifest.engines] == [fake_entry().file]
    assert (bundle / fake_entry().file).read_bytes() == b"second engine"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [BUNDLE_JSON, "model.onnx", fake_entry().file]
    )
    assert (bundle / BUNDLE_JSON).stat().st_mode == mode


def test_install_engine_refuses_a_path_as_file_name(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / ".partial").write_bytes(b"x")
    with pytest.raises(EngineBuildError, match="not a file name"):
        install_engine(bundle, load_edge_bundle(bundle), bundle / ".partial", fake_entry("../x"))


def test_engine_file_name_says_precision_gpu_and_version():
    name = engine_file_name("model", "fp16", "NVIDIA GeForce RTX 4060", "10.3.0")
    assert name == "model-fp16-nvidia-geforce-rtx-4060-trt10.3.0.engine"


def test_a_damaged_bundle_is_refused_before_any_build(tmp_path):
    with pytest.raises(BundleRefused, match="not an edge bundle"):
        add_engine_to_bundle(tmp_path, parity_images=None)
    bundle = make_bundle(tmp_path / "b")
    (bundle / "model.onnx").write_bytes(b"changed")
    with pytest.raises(BundleRefused, match=r"model\.onnx: sha256 does not match"):
        add_engine_to_bundle(bundle, parity_images=None)


def test_parity_frames_of_the_wrong_layout_are_refused_before_the_build(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    wrong = line_frames(4).transpose(0, 3, 1, 2)
    with pytest.raises(FramesError, match=r"takes uint8 \(N, 32, 32, 1\)"):
        add_engine_to_bundle(bundle, parity_images=wrong)


def test_load_frames_reads_a_folder_at_the_input_size(tmp_path):
    import cv2

    bundle = make_bundle(tmp_path / "b")
    graph_input = load_edge_bundle(bundle).input
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(np.full((3, 64, 48), 100, np.uint8)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    frames = load_frames(folder, graph_input)
    assert frames.shape == (3, SIZE, SIZE, 1) and frames.dtype == np.uint8
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FramesError, match="broken.png: not a readable image"):
        load_frames(folder, graph_input)


# --- without TensorRT: the import guard and its one-line reasons ---


@without_tensorrt
def test_tensorrt_is_reported_unavailable_with_the_reason():
    available, reason = tensorrt_available()
    assert not available and "tensorrt is not installed" in reason
    with pytest.raises(TensorRTUnavailable, match="tensorrt is not installed"):
        require_tensorrt()


@without_tensorrt
def test_build_engine_command_fails_in_one_line_without_tensorrt(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b")
    assert build_engine_command(["--bundle", str(bundle), "--skip-parity"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("build-engine: tensorrt is not installed") and err.count("\n") == 1
    assert json.loads((bundle / BUNDLE_JSON).read_text())["engines"] == []


def test_build_engine_command_wants_parity_frames_or_an_explicit_skip(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        build_engine_command(["--bundle", str(tmp_path)])
    assert exit_info.value.code == 2


def test_modules_import_without_torch_or_the_lab_packages():
    blocked = ("torch", "pipeline", "flows", "mlflow", "prefect")
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
        "import deploy.tensorrt.builder, deploy.tensorrt.engine_runner, "
        "deploy.tensorrt.parity, deploy.tensorrt.add_engine, deploy.tensorrt.cli"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


# --- with TensorRT and a GPU ---


@needs_gpu
@pytest.mark.parametrize(("layout", "precision"), [("uint8_nhwc", "fp16"), ("float_nchw", "fp32")])
def test_engine_is_built_checked_and_listed(tmp_path, layout, precision):
    from deploy.tensorrt.engine_runner import TensorRTRunner

    bundle = make_bundle(tmp_path / "b", layout)
    graph_input = load_edge_bundle(bundle).input
    images = to_graph_layout(line_frames(), graph_input)
    cache = tmp_path / "cache" / "timing.cache"
    entry = add_engine_to_bundle(
        bundle, precision, parity_images=images, parity_source="line frames", timing_cache=cache
    )
    assert entry.parity is not None and entry.parity.passed
    assert entry.precision in (precision, "strongly-typed") and entry.batch == (1, 1, 8)
    assert cache.stat().st_size > 0
    manifest = load_edge_bundle(bundle)
    assert [e.file for e in manifest.engines] == [entry.file]
    assert entry.file.startswith(f"model-{entry.precision}-") and entry.file.endswith(".engine")

    names = ("image_score", "anomaly_map", "is_defect")
    reference = OnnxRuntimeCpu(
        bundle / "model.onnx", input_name="images", output_names=names, max_batch=8
    )
    with TensorRTRunner(bundle / entry.file, name=f"tensorrt-{entry.precision}") as runner:
        scores, maps, flags = runner.run(images[:11])  # 8 + 3: a batch past the profile's max
    ref_scores, ref_maps, ref_flags = reference.run(images[:11])
    assert scores.dtype == np.float32 and maps.shape == (11, SIZE, SIZE) and flags.dtype == bool
    np.testing.assert_array_equal(flags, ref_flags)
    np.testing.assert_allclose(scores, ref_scores, atol=2e-3)


@needs_gpu
def test_a_refused_engine_leaves_the_bundle_untouched(tmp_path, monkeypatch):
    import deploy.tensorrt.add_engine as add_engine

    bundle = make_bundle(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    monkeypatch.setattr(add_engine, "MIN_RANK", 1.01)  # a bar no engine can clear
    images = line_frames()
    with pytest.raises(ParityRefused, match="engine not added"):
        add_engine.add_engine_to_bundle(bundle, parity_images=images)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
