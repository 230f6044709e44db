import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from pipeline.config import ModelConfig, ScoreConfig
from pipeline.models import build_model
from pipeline.scoring import InspectionModule, LatentGaussian, fit_scoring, score_images


def test_latent_gaussian_matches_ledoit_wolf():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((40, 12, 2, 3)).astype(np.float32)  # n=40 < many dims is fine
    feats[:, 0] *= 5
    lg = LatentGaussian(12, 2, 3)
    lg.fit(torch.from_numpy(feats))
    x = feats[:, :, 1, 2]
    lw = LedoitWolf().fit(x)
    assert lg.shrinkage[1 * 3 + 2].item() == pytest.approx(lw.shrinkage_, rel=1e-4)
    probe = rng.standard_normal((5, 12, 2, 3)).astype(np.float32)
    ours = lg(torch.from_numpy(probe))[:, 0, 1, 2].numpy()
    theirs = np.sqrt(lw.mahalanobis(probe[:, :, 1, 2]))
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)


def _module(maps: dict[str, float], name: str = "ae") -> InspectionModule:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, width=8, depth=2, latent_dim=4), 32, 1)
    return InspectionModule(model, ScoreConfig(maps=maps), 32, 1)


@pytest.mark.parametrize(
    ("name", "maps"),
    [
        ("ae", {"l2": 1.0}),
        ("ae", {"l2": 1, "ssim": 1, "mahalanobis": 1}),
        ("vae", {"l2": 1, "ssim": 1, "mahalanobis": 1, "nll": 1}),
    ],
)
def test_module_outputs_score_map_and_decision(name, maps):
    rng = np.random.default_rng(0)
    good = (rng.random((24, 32, 32, 1)) * 60 + 100).astype(np.uint8)
    module = _module(maps, name)
    stats = fit_scoring(module, good[:16], good[16:])
    assert set(stats) == set(maps)
    module.threshold.fill_(1.5)
    x = torch.rand(3, 1, 32, 32)
    score, amap, is_defect = module(x)
    assert score.shape == (3,) and amap.shape == (3, 32, 32) and is_defect.dtype == torch.bool
    assert torch.equal(is_defect, score >= 1.5)
    assert torch.allclose(score, amap.flatten(1).max(dim=1).values)


def test_normalised_maps_put_an_outlier_above_good_images():
    rng = np.random.default_rng(1)
    good = (rng.random((30, 32, 32, 1)) * 20 + 120).astype(np.uint8)
    module = _module({"l2": 1.0})
    fit_scoring(module, good[:20], good[20:])
    bad = good[20:22].copy()
    bad[:, 10:20, 10:20] = 255
    good_scores, _ = score_images(module, good[20:])
    bad_scores, bad_maps = score_images(module, bad)
    assert bad_scores.min() > good_scores.max()
    assert bad_maps[0, 10:20, 10:20].mean() > bad_maps[0, :5, :5].mean()


def test_the_whole_module_exports_to_onnx_and_scores_the_same(onnx_outputs):
    """The one graph: network, maps, normalisation and threshold survive export unchanged."""
    rng = np.random.default_rng(2)
    good = (rng.random((24, 32, 32, 1)) * 60 + 100).astype(np.uint8)
    module = _module({"l2": 1, "ssim": 1, "mahalanobis": 1})
    fit_scoring(module, good[:16], good[16:])
    module.threshold.fill_(1.0)
    x = torch.rand(3, 1, 32, 32)
    score, amap, flag = onnx_outputs(module, x)
    with torch.no_grad():
        t_score, t_map, t_flag = module(x)
    np.testing.assert_allclose(score, t_score.numpy(), atol=1e-4)
    np.testing.assert_allclose(amap, t_map.numpy(), atol=1e-4)
    np.testing.assert_array_equal(flag, t_flag.numpy())
