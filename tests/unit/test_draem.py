"""The DRAEM-class family: shapes, losses, a tiny train-and-score run, export of the one graph."""

import numpy as np
import pytest
import torch

from pipeline.bundle import load_bundle, write_bundle
from pipeline.calibration import calibrate
from pipeline.config import ModelConfig, load_config
from pipeline.errors import ConfigError
from pipeline.models import build_model
from pipeline.models.draem import focal_loss, position_grid
from pipeline.preflight import check_before_training
from pipeline.scoring import InspectionModule, fit_scoring, raw_maps_of, score_images
from pipeline.selection import choose_fusion_weights, synthetic_check, synthetic_validation_set
from pipeline.training import train_model

SCORING = ["train.epochs=3", "train.batch_size=8", "score.maps={anomaly: 1.0, l2: 1.0}"]


def _parts(n: int, seed: int = 0) -> np.ndarray:
    """Gray gradient parts with mild noise: a surface with structure for the model to learn."""
    rng = np.random.default_rng(seed)
    base = np.linspace(70, 180, 32, dtype=np.float32)[None, :, None] * np.ones((32, 1, 1))
    return np.clip(base + rng.normal(0, 6, (n, 32, 32, 1)), 0, 255).astype(np.uint8)


def test_forward_gives_reconstruction_features_and_anomaly_map():
    model = build_model(ModelConfig(name="draem", width=8, depth=2, disc_width=8), 32, 3)
    out = model(torch.rand(2, 3, 32, 32))
    assert out["recon"].shape == (2, 3, 32, 32)
    assert out["anomaly"].shape == (2, 1, 32, 32)
    assert float(out["anomaly"].min()) >= 0 and float(out["anomaly"].max()) <= 1
    assert out["features"].dim() == 4


def test_loss_has_reconstruction_and_segmentation_parts():
    model = build_model(ModelConfig(name="draem", width=8, depth=2, disc_width=8), 32, 1)
    x = torch.rand(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:16, 8:16] = 1
    loss, parts = model.loss(x, model(x), 0.5, mask)
    assert set(parts) == {"recon", "segment"} and loss.requires_grad
    assert float(loss) == pytest.approx(parts["recon"] + parts["segment"], rel=1e-5)


def test_focal_loss_discounts_confident_pixels():
    target = torch.tensor([1.0, 0.0])
    confident = focal_loss(torch.tensor([4.0, -4.0]), target)
    unsure = focal_loss(torch.tensor([0.1, -0.1]), target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([4.0, -4.0]), target)
    assert confident < unsure
    assert confident < bce / 10  # gamma 2 shrinks the easy pixels far more than plain BCE


def test_tiny_train_then_score_with_fusion_chosen_on_synthetic_defects(tiny_draem_overrides):
    cfg = load_config(None, [*tiny_draem_overrides, *SCORING, "score.smooth_sigma=1.0"])
    parts = _parts(56)
    fit, val, calib = parts[:32], parts[32:44], parts[44:]
    result = train_model(cfg, fit, val, channels=1)
    assert len(result.history) == 3
    row = result.history[-1]
    assert 0 <= row["val_synthetic_pixel_auroc"] <= 1 and row["images_per_s"] > 0
    assert 0 <= row["data_wait_share"] <= 1
    assert result.best_val == pytest.approx(min(r["val_objective"] for r in result.history))

    module = InspectionModule(result.model, cfg.score, 32, 1)
    assert module.map_names == ["l2", "anomaly"]
    fit_scoring(module, fit, val)
    sset = synthetic_validation_set(val, cfg.train.anomalies, seed=0)
    rows = choose_fusion_weights(module, sset)
    best = max(rows, key=lambda r: r["objective"])
    assert [float(w) for w in module.weights] == pytest.approx(list(best["weights"].values()))
    scores, maps = score_images(module, calib)
    assert maps.shape == (12, 32, 32) and np.isfinite(scores).all()
    module.threshold.fill_(calibrate(scores, 0.1, [0.1]).threshold)
    check = synthetic_check(module, sset)
    assert check.n_anomalous > 0 and 0 <= check.recall <= 1
    assert set(check.fusion_weights) == {"l2", "anomaly"}


def test_draem_scoring_module_exports_to_onnx(onnx_outputs, tiny_draem_overrides):
    cfg = load_config(None, [*tiny_draem_overrides, *SCORING])
    model = build_model(cfg.model, 32, 1).to(memory_format=torch.channels_last).eval()
    module = InspectionModule(model, cfg.score, 32, 1)
    fit_scoring(module, _parts(16), _parts(8, seed=1))
    module.threshold.fill_(0.5)
    x = torch.rand(2, 1, 32, 32)
    score, amap, _ = onnx_outputs(module, x)
    with torch.no_grad():
        t_score, t_map, _ = module(x)
    np.testing.assert_allclose(score, t_score.numpy(), atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(amap, t_map.numpy(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", ["anomaly", "seg_mahalanobis"])
def test_preflight_refuses_a_map_the_model_cannot_give(demo_data, name):
    cfg = load_config(None, [f"data.path={demo_data}", f"score.maps={{{name}: 1.0}}"])
    with pytest.raises(ConfigError, match=f"model 'ae' gives no '{name}' map"):
        check_before_training(cfg, demo_data)


SEG_MAPS = ["score.maps={anomaly: 1.0, seg_mahalanobis: 1.0}", "score.smooth_sigma=0"]


def _seg_scoring_module(tiny_draem_overrides: list[str]) -> tuple[InspectionModule, object]:
    cfg = load_config(None, [*tiny_draem_overrides, *SCORING, *SEG_MAPS])
    torch.manual_seed(0)
    module = InspectionModule(build_model(cfg.model, 32, 1).eval(), cfg.score, 32, 1)
    fit_scoring(module, _parts(48), _parts(8, seed=1))
    return module, cfg


def test_seg_mahalanobis_flags_a_patch_no_good_part_shows(tiny_draem_overrides):
    module, _ = _seg_scoring_module(tiny_draem_overrides)
    assert module.map_names == ["anomaly", "seg_mahalanobis"]
    assert float(module.seg_latent.mean.abs().sum()) > 0  # fitted on the good parts
    good = _parts(4, seed=2)
    patched = good.copy()
    patched[:, 12:20, 12:20] = 250  # a bright blob where the parts are mid-grey
    seg = raw_maps_of(module, np.concatenate([good, patched]))[:, 1]
    good_map, patched_map = seg[:4], seg[4:]
    inside = patched_map[:, 12:20, 12:20].flatten(1).mean(dim=1)
    assert (inside > 2 * good_map.flatten(1).amax(dim=1)).all()


def test_seg_mahalanobis_survives_the_bundle_and_onnx(onnx_outputs, tiny_draem_overrides, tmp_path):
    module, cfg = _seg_scoring_module(tiny_draem_overrides)
    calib = _parts(10, seed=3)
    scores, _ = score_images(module, calib)
    cal = calibrate(scores, 0.1, [0.1])
    module.threshold.fill_(cal.threshold)
    loaded = load_bundle(write_bundle(tmp_path / "bundle", module, cfg, cal, data_fingerprint="x"))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        t_score, t_map, _ = module(x)
        torch.testing.assert_close(loaded.module(x)[0], t_score)
    score, amap, _ = onnx_outputs(module, x)
    np.testing.assert_allclose(score, t_score.numpy(), atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(amap, t_map.numpy(), atol=1e-3, rtol=1e-4)


def test_preflight_names_a_texture_folder_without_images(demo_data, tmp_path):
    from pipeline.errors import DataError

    (tmp_path / "textures").mkdir()
    cfg = load_config(
        None, [f"data.path={demo_data}", f"train.anomalies.textures={tmp_path / 'textures'}"]
    )
    with pytest.raises(DataError, match="textures has no images"):
        check_before_training(cfg, demo_data)


def _draem(input_norm: str) -> torch.nn.Module:
    cfg = ModelConfig(name="draem", width=8, depth=2, disc_width=8, input_norm=input_norm)
    torch.manual_seed(0)
    return build_model(cfg, 32, 1).eval()


def test_image_norm_makes_the_segmenter_blind_to_brightness_and_contrast():
    x = torch.rand(2, 1, 32, 32) * 0.5 + 0.2
    darker = 0.6 * x + 0.05  # the same part under other lighting
    normed, plain = _draem("image"), _draem("none")
    with torch.no_grad():
        out, out_dark = normed(x), normed(darker)
        torch.testing.assert_close(out_dark["anomaly"], out["anomaly"], atol=1e-5, rtol=1e-4)
        # the reconstruction comes back in image units: it follows the lighting
        torch.testing.assert_close(
            out_dark["recon"], 0.6 * out["recon"] + 0.05, atol=1e-5, rtol=1e-4
        )
        moved = (plain(darker)["anomaly"] - plain(x)["anomaly"]).abs().max()
        stayed = (out_dark["anomaly"] - out["anomaly"]).abs().max()
        assert stayed < moved / 100  # without the norm, lighting moves the map


def test_image_norm_loss_is_measured_in_normalised_units():
    model = _draem("image")
    x = torch.rand(2, 1, 32, 32) * 0.1 + 0.4  # a low-contrast part
    out = model(x)
    loss, parts = model.loss(x, out, 0.0, torch.zeros(2, 1, 32, 32))
    target_n = (x - out["offset"]) / out["scale"]
    expected = torch.mean((target_n - out["recon_normalised"]) ** 2)
    assert parts["recon"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    "extra",
    [["model.input_norm=image"], ["model.input_norm=image", "model.position_channels=true"]],
)
def test_image_norm_exports_to_onnx_with_the_same_outputs(
    onnx_outputs, tiny_draem_overrides, extra
):
    cfg = load_config(None, [*tiny_draem_overrides, *SCORING, *extra])
    model = build_model(cfg.model, 32, 1).eval()
    module = InspectionModule(model, cfg.score, 32, 1)
    fit_scoring(module, _parts(16), _parts(8, seed=1))
    module.threshold.fill_(0.5)
    x = torch.rand(3, 1, 32, 32) * torch.tensor([0.3, 0.6, 1.0]).view(3, 1, 1, 1)
    score, amap, _ = onnx_outputs(module, x)
    with torch.no_grad():
        t_score, t_map, _ = module(x)
    np.testing.assert_allclose(score, t_score.numpy(), atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(amap, t_map.numpy(), atol=1e-3, rtol=1e-4)


def test_position_grid_spans_the_frame_row_by_column():
    grid = position_grid(torch.zeros(2, 1, 4, 6))
    assert grid.shape == (2, 2, 4, 6)
    assert grid[0, :, 0, 0].tolist() == [-1.0, -1.0]  # top left
    assert grid[0, :, -1, -1].tolist() == [1.0, 1.0]  # bottom right
    assert grid[0, 0, :, 0].tolist() == pytest.approx([-1.0, -1 / 3, 1 / 3, 1.0])  # rows go down


def test_position_channels_reach_the_segmenter():
    cfg = ModelConfig(name="draem", width=8, depth=2, disc_width=8, position_channels=True)
    torch.manual_seed(0)
    model = build_model(cfg, 32, 1).eval()
    first = model.segmenter.down[0][0]
    assert first.in_channels == 4  # input, reconstruction, row, column
    x = torch.full((1, 1, 32, 32), 0.5)
    with torch.no_grad():
        before = model(x)["anomaly"]
        first.weight[:, 2:] = 0  # blind it to where pixels are
        after = model(x)["anomaly"]
    assert (before - after).abs().max() > 1e-4


def test_position_channels_refuse_training_on_crops():
    with pytest.raises(ConfigError, match="position_channels needs whole images"):
        load_config(None, ["model.name=draem", "model.position_channels=true", "train.crop=64"])
