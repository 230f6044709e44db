"""Convolutional autoencoder: the reconstruction baseline (Bergmann et al. 2019 with SSIM loss)."""

import torch

from pipeline.config import ModelConfig
from pipeline.models.base import Reconstructor
from pipeline.models.blocks import Bottleneck, Decoder, Encoder, Expander
from pipeline.models.registry import register_model


class ConvAE(Reconstructor):
    """Encoder -> narrow latent (spatial grid or vector) -> decoder."""

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int) -> None:
        super().__init__(channels)
        grid = image_size // 2**cfg.depth
        self.encoder = Encoder(channels, cfg.width, cfg.depth)
        self.to_latent = Bottleneck(self.encoder.out_channels, cfg.latent_dim, cfg.latent, grid)
        self.decoder = Decoder(channels, cfg.width, cfg.depth)
        self.from_latent = Expander(cfg.latent_dim, self.decoder.in_channels, cfg.latent, grid)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(x)
        z = self.to_latent(h)
        recon = self.decoder(self.from_latent(z))
        return {"recon": recon, "features": z if z.dim() == 4 else h, "z": z}


@register_model("ae")
def conv_ae(cfg: ModelConfig, image_size: int, channels: int) -> ConvAE:
    return ConvAE(cfg, image_size, channels)
