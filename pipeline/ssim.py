"""Structural similarity as a per-pixel map, in plain torch ops so it exports to ONNX."""

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian; radius defaults to 3 sigma."""
    radius = radius if radius is not None else max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def ssim_window(channels: int, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Depthwise 2-D Gaussian window (channels, 1, size, size), as in Wang et al. 2004."""
    k = gaussian_kernel1d(sigma, radius=size // 2)
    return torch.outer(k, k).expand(channels, 1, size, size).contiguous()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (B, 1, H, W) of images in [0, 1], averaged over channels."""
    c = x.shape[1]
    pad = window.shape[-1] // 2
    c1, c2 = 0.01**2, 0.03**2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=1, keepdim=True)
