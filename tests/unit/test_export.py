"""ONNX export of the deployed module and the edge bundle: parity with the lab on the whole
demo test set, dynamic batch, both input layouts, polygraphy, and refusals."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_contracts.bundle import BundleRefused, load_edge_bundle
from pipeline.bundle import load_bundle
from pipeline.config import ExportConfig
from pipeline.data.mvtec import load_test_set
from pipeline.errors import ExportError
from pipeline.export.edge_bundle import write_edge_bundle
from pipeline.export.graph import INPUT_NAME, OUTPUT_NAMES
from pipeline.export.parity import onnx_session, session_outputs, torch_outputs

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def lab(trained_tiny, demo_data):
    """(lab bundle, demo test images at the model's size)."""
    bundle = load_bundle(trained_tiny[0].run_dir / "bundle")
    test = load_test_set(demo_data, bundle.module.image_size, bundle.module.channels)
    return bundle, test.images


def test_graph_has_named_io_dynamic_batch_and_opset_17(edge_bundle):
    manifest = load_edge_bundle(edge_bundle)
    model = onnx.load(str(edge_bundle / manifest.onnx))
    assert manifest.opset >= 17
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [32, 32, 3]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_bundle_parity_covers_the_whole_demo_test_set(edge_bundle, lab):
    manifest = load_edge_bundle(edge_bundle)
    parity = manifest.parity
    assert parity.passed and parity.images == len(lab[1])
    assert parity.decision_agreement == 1.0
    assert parity.max_score_diff <= parity.score_tolerance
    assert parity.max_map_diff <= parity.map_tolerance


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_matches_torch_at_any_batch(edge_bundle, lab, batch):
    bundle, images = lab
    manifest = load_edge_bundle(edge_bundle)
    expected = torch_outputs(bundle.module, images, 8)
    got = session_outputs(onnx_session(edge_bundle / manifest.onnx), images, "uint8_nhwc", batch)
    tolerance = ExportConfig().score_tolerance
    assert np.abs(expected[0] - got[0]).max() <= tolerance
    assert np.abs(expected[1] - got[1]).max() <= ExportConfig().map_tolerance
    assert (expected[2] == got[2]).all()
    assert got[2].dtype == np.bool_ and got[1].shape == (len(images), 32, 32)


def test_float_layout_exports_with_the_same_decisions(lab, tmp_path):
    bundle, images = lab
    manifest = write_edge_bundle(
        bundle, tmp_path / "float", ExportConfig(input_layout="float_nchw"), images, "demo test"
    )
    assert manifest.parity.passed and manifest.input.layout == "float_nchw"
    model = onnx.load(str(tmp_path / "float" / manifest.onnx))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    got = session_outputs(onnx_session(tmp_path / "float" / manifest.onnx), images, "float_nchw", 3)
    assert (got[2] == torch_outputs(bundle.module, images, 8)[2]).all()


def test_polygraphy_runs_the_exported_graph_with_onnx_runtime(edge_bundle):
    polygraphy = Path(sys.executable).with_name("polygraphy")
    if not polygraphy.exists():
        pytest.skip("polygraphy is not installed (dev extra)")
    done = subprocess.run(
        [
            str(polygraphy),
            "run",
            str(edge_bundle / "model.onnx"),
            "--onnxrt",
            "--input-shapes",
            f"{INPUT_NAME}:[4,32,32,3]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout + done.stderr


def test_a_flipped_byte_is_refused_naming_the_file(edge_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(edge_bundle, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleRefused, match=r"model\.onnx: sha256 does not match bundle\.json"):
        load_edge_bundle(copy)


def test_parity_failure_writes_nothing(lab, tmp_path):
    bundle, images = lab
    strict = ExportConfig(score_tolerance=1e-12, map_tolerance=1e-12)
    with pytest.raises(ExportError, match="does not match"):
        write_edge_bundle(bundle, tmp_path / "out", strict, images, "demo test")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_bundle_is_never_overwritten(lab, tmp_path):
    bundle, images = lab
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    with pytest.raises(ExportError, match="already exists and is not empty"):
        write_edge_bundle(bundle, out, ExportConfig(), images[:4], "demo test")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
