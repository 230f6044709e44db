import pytest
import torch

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError
from pipeline.models import available_models, build_model


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("latent", ["spatial", "vector"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_family_reconstructs_and_has_a_loss(name, latent, channels):
    cfg = ModelConfig(name=name, width=8, depth=3, latent_dim=6, latent=latent)
    model = build_model(cfg, 32, channels)
    x = torch.rand(3, channels, 32, 32)
    out = model(x)
    assert out["recon"].shape == x.shape
    assert out["recon"].min() >= 0 and out["recon"].max() <= 1
    assert out["features"].dim() == 4 and out["features"].shape[0] == 3
    loss, parts = model.loss(x, out, ssim_weight=0.5)
    loss.backward()
    assert torch.isfinite(loss) and "recon" in parts
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_vae_is_deterministic_in_eval_and_has_a_prior_map():
    model = build_model(ModelConfig(name="vae", width=8, depth=2, latent_dim=4), 32, 1).eval()
    x = torch.rand(2, 1, 32, 32)
    a, b = model(x), model(x)
    assert torch.equal(a["recon"], b["recon"])
    assert model.nll_map(a).shape == (2, 1, 8, 8)


def test_unknown_model_and_bad_size_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model 'gan'.*ae"):
        build_model(ModelConfig(name="gan"), 32, 1)
    with pytest.raises(ConfigError, match="not divisible"):
        build_model(ModelConfig(depth=6), 32, 1)
