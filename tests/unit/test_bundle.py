import json

import numpy as np
import pytest
import torch

from pipeline.bundle import load_bundle, set_bundle_version, verify_bundle, write_bundle
from pipeline.calibration import calibrate
from pipeline.config import load_config
from pipeline.errors import BundleError
from pipeline.models import build_model
from pipeline.scoring import InspectionModule, fit_scoring, score_images


@pytest.fixture
def bundle_dir(tmp_path):
    cfg = load_config(
        None,
        [
            "data.image_size=32",
            "model.width=8",
            "model.depth=2",
            "model.latent_dim=4",
            "calibration.alpha=0.1",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, 32, 1)
    module = InspectionModule(model, cfg.score, 32, 1)
    good = (np.random.default_rng(0).random((40, 32, 32, 1)) * 255).astype(np.uint8)
    fit_scoring(module, good[:20], good[20:30])
    scores, _ = score_images(module, good[30:])
    cal = calibrate(scores, 0.1, [0.1])
    module.threshold.fill_(cal.threshold)
    out = write_bundle(tmp_path / "bundle", module, cfg, cal, data_fingerprint="abc")
    return out, module, good


def test_round_trip_scores_identically(bundle_dir):
    path, module, good = bundle_dir
    loaded = load_bundle(path)
    a, _ = score_images(module, good[:5])
    b, _ = score_images(loaded.module, good[:5])
    np.testing.assert_array_equal(a, b)
    assert float(loaded.module.threshold) == float(module.threshold)
    meta = verify_bundle(path)
    assert set(meta["files"]) == {"weights.pt", "config.json"}
    assert meta["input"]["contract"]["channels"] == 1


def test_a_flipped_byte_is_refused_naming_the_file(bundle_dir):
    path = bundle_dir[0]
    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.pt: sha256 does not match"):
        load_bundle(path)


def test_missing_file_and_missing_json(bundle_dir, tmp_path):
    path = bundle_dir[0]
    (path / "config.json").unlink()
    with pytest.raises(BundleError, match="config.json: listed in bundle.json but missing"):
        verify_bundle(path)
    with pytest.raises(BundleError, match="not a model bundle"):
        verify_bundle(tmp_path)


def test_version_is_recorded_without_breaking_hashes(bundle_dir):
    path = bundle_dir[0]
    set_bundle_version(path, "7")
    assert json.loads((path / "bundle.json").read_text())["model_version"] == "7"
    assert load_bundle(path).version == "7"
