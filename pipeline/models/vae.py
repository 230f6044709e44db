"""Convolutional VAE: reconstruction plus a latent prior, so -log p(z) is a second score."""

import math

import torch

from pipeline.config import ModelConfig
from pipeline.models.base import Reconstructor
from pipeline.models.blocks import Bottleneck, Decoder, Encoder, Expander
from pipeline.models.registry import register_model


class ConvVAE(Reconstructor):
    """Gaussian posterior over a spatial or vector latent; the decoder reads the posterior mean at
    inference, so scores are deterministic and the exported graph has no sampling."""

    extra_maps = ("nll",)

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int) -> None:
        super().__init__(channels)
        grid = image_size // 2**cfg.depth
        self.beta = cfg.beta
        self.pixels = channels * image_size * image_size
        self.encoder = Encoder(channels, cfg.width, cfg.depth)
        self.to_mu = Bottleneck(self.encoder.out_channels, cfg.latent_dim, cfg.latent, grid)
        self.to_logvar = Bottleneck(self.encoder.out_channels, cfg.latent_dim, cfg.latent, grid)
        self.decoder = Decoder(channels, cfg.width, cfg.depth)
        self.from_latent = Expander(cfg.latent_dim, self.decoder.in_channels, cfg.latent, grid)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(x)
        mu = self.to_mu(h)
        logvar = self.to_logvar(h).clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        recon = self.decoder(self.from_latent(z))
        features = mu if mu.dim() == 4 else h
        return {"recon": recon, "features": features, "z": mu, "mu": mu, "logvar": logvar}

    def loss(
        self,
        x: torch.Tensor,
        out: dict[str, torch.Tensor],
        ssim_weight: float,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction + beta * KL, the KL summed over latents and divided by pixel count so
        that beta keeps its meaning across image sizes."""
        rec = self.reconstruction_loss(x, out["recon"], ssim_weight)
        mu, logvar = out["mu"], out["logvar"]
        kl = 0.5 * torch.sum(mu**2 + logvar.exp() - 1 - logvar) / (x.shape[0] * self.pixels)
        total = rec + self.beta * kl
        return total, {"recon": float(rec.detach()), "kl": float(kl.detach())}

    def nll_map(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """-log N(mu; 0, I) per latent position; a vector latent gives one value per image."""
        mu = out["mu"]
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        if mu.dim() == 2:
            nll = 0.5 * (mu**2).sum(dim=1) + mu.shape[1] * half_log_2pi
            return nll.view(-1, 1, 1, 1)
        return (0.5 * (mu**2) + half_log_2pi).sum(dim=1, keepdim=True)


@register_model("vae")
def conv_vae(cfg: ModelConfig, image_size: int, channels: int) -> ConvVAE:
    return ConvVAE(cfg, image_size, channels)
