"""Convolutional encoder and decoder stages shared by the AE and VAE families."""

import torch
from torch import nn


def stage_channels(width: int, depth: int) -> list[int]:
    """Channels after each stride-2 stage: doubling from `width`, capped at 8x."""
    return [width * min(2**i, 8) for i in range(depth)]


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
        _conv_block(c_out, c_out, stride=1),
    )


class Encoder(nn.Module):
    """`depth` stages of (stride-2 conv, 3x3 conv); output is the last feature map."""

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        chans = stage_channels(width, depth)
        stages, c_in = [], channels
        for c_out in chans:
            stages.append(nn.Sequential(_conv_block(c_in, c_out, 2), _conv_block(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class Decoder(nn.Module):
    """Mirror of the encoder: `depth` upsampling stages, then a sigmoid image in [0, 1]."""

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        chans = stage_channels(width, depth)[::-1]
        stages = [
            _up_block(c_in, c_out) for c_in, c_out in zip(chans, chans[1:] + [width], strict=False)
        ]
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(width, channels, 3, padding=1)
        self.in_channels = chans[0]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.stages(h)))


class Bottleneck(nn.Module):
    """Maps encoder features to `n_out` latent values: per position (spatial) or one vector."""

    def __init__(self, c_in: int, n_out: int, latent: str, grid: int) -> None:
        super().__init__()
        self.latent = latent
        if latent == "spatial":
            self.proj = nn.Conv2d(c_in, n_out, 1)
        else:
            self.proj = nn.Sequential(nn.Flatten(), nn.Linear(c_in * grid * grid, n_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


class Expander(nn.Module):
    """Inverse of Bottleneck: latent values back to a decoder feature map."""

    def __init__(self, latent_dim: int, c_out: int, latent: str, grid: int) -> None:
        super().__init__()
        self.latent, self.c_out, self.grid = latent, c_out, grid
        if latent == "spatial":
            self.proj = nn.Sequential(nn.Conv2d(latent_dim, c_out, 1), nn.LeakyReLU(0.2))
        else:
            self.proj = nn.Sequential(nn.Linear(latent_dim, c_out * grid * grid), nn.LeakyReLU(0.2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.proj(z)
        if self.latent == "vector":
            h = h.view(-1, self.c_out, self.grid, self.grid)
        return h
