"""The deployed graph: images -> (image score, anomaly map, is_defect), all in one nn.Module.

Every statistic that turns raw maps into a decision (the latent Gaussians, the per-map
normalisation, the fusion weights, the smoothing kernel, the threshold) is a buffer, so the
module evaluated in the lab is the one exported and run at the edge.
"""

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ScoreConfig
from pipeline.models.base import Reconstructor
from pipeline.ssim import gaussian_kernel1d, ssim_map

MAP_NAMES = ("l2", "ssim", "mahalanobis", "nll", "anomaly", "seg_mahalanobis")
# maps that are a Gaussian of model features: map name -> (feature key of the model's output,
# the module's LatentGaussian attribute)
GAUSSIAN_MAPS = {
    "mahalanobis": ("features", "latent"),
    "seg_mahalanobis": ("seg_features", "seg_latent"),
}


class LatentGaussian(nn.Module):
    """Per-position Gaussian over encoder features with Ledoit-Wolf shrinkage covariance.

    With fewer training images than feature dimensions the sample covariance is singular;
    shrinking towards a scaled identity keeps the Mahalanobis distance well defined.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        positions = height * width
        self.register_buffer("mean", torch.zeros(positions, channels))
        self.register_buffer("precision", torch.eye(channels).repeat(positions, 1, 1))
        self.register_buffer("shrinkage", torch.zeros(positions))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """features: (N, C, h, w) of the training images."""
        n, c, h, w = features.shape
        x = features.double().permute(2, 3, 0, 1).reshape(h * w, n, c)
        mean = x.mean(dim=1, keepdim=True)
        xc = x - mean
        sample = xc.transpose(1, 2) @ xc / n
        mu = torch.diagonal(sample, dim1=1, dim2=2).mean(dim=1)
        eye = torch.eye(c, dtype=x.dtype)
        d2 = ((sample - mu[:, None, None] * eye) ** 2).sum(dim=(1, 2))
        sq_norms = (xc**2).sum(dim=2)
        b2_bar = ((sq_norms**2).sum(dim=1) / n - (sample**2).sum(dim=(1, 2))) / n
        b2 = torch.minimum(b2_bar, d2)
        shrink = torch.where(d2 > 0, b2 / d2.clamp_min(1e-30), torch.ones_like(d2))
        cov = shrink[:, None, None] * mu[:, None, None] * eye + (1 - shrink[:, None, None]) * sample
        cov = cov + 1e-6 * eye
        self.mean.copy_(mean.squeeze(1).float())
        self.precision.copy_(torch.linalg.inv(cov).float())
        self.shrinkage.copy_(shrink.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance per position, (B, 1, h, w)."""
        b, c, h, w = features.shape
        d = features.permute(0, 2, 3, 1).reshape(b, h * w, c) - self.mean
        m2 = torch.einsum("bpi,pij,bpj->bp", d, self.precision, d)
        return torch.sqrt(m2.clamp_min(0)).reshape(b, 1, h, w)


def smoothing_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian for `smooth`; sigma 0 gives the identity kernel (no smoothing)."""
    return gaussian_kernel1d(sigma) if sigma > 0 else torch.ones(1)


def smooth(m: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable smoothing of (B, 1, H, W) maps with a 1-D kernel, reflect-padded."""
    r = kernel.numel() // 2
    if r == 0:
        return m
    m = F.pad(m, (r, r, r, r), mode="reflect")
    m = F.conv2d(m, kernel.view(1, 1, 1, -1))
    return F.conv2d(m, kernel.view(1, 1, -1, 1))


class InspectionModule(nn.Module):
    """Images (B, C, H, W) float in [0, 1] -> (score (B,), map (B, H, W), is_defect (B,))."""

    def __init__(
        self, model: Reconstructor, cfg: ScoreConfig, image_size: int, channels: int
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.image_size, self.channels = image_size, channels
        self.map_names = [name for name in MAP_NAMES if cfg.maps.get(name, 0) > 0]
        self.image_score, self.topk = cfg.image_score, cfg.topk
        with torch.no_grad():
            out = model(torch.zeros(1, channels, image_size, image_size))
        feat = out["features"]
        self.latent = LatentGaussian(feat.shape[1], feat.shape[2], feat.shape[3])
        if "seg_mahalanobis" in self.map_names:  # only then, so older bundles load unchanged
            seg = out["seg_features"]
            self.seg_latent = LatentGaussian(seg.shape[1], seg.shape[2], seg.shape[3])
        k = len(self.map_names)
        weights = torch.tensor([cfg.maps[n] for n in self.map_names], dtype=torch.float32)
        self.register_buffer("weights", weights / weights.sum())
        self.register_buffer("map_center", torch.zeros(k))
        self.register_buffer("map_scale", torch.ones(k))
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self.register_buffer("smooth_kernel", smoothing_kernel(cfg.smooth_sigma))

    def raw_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised maps (B, K, H, W) in the order of `map_names`."""
        out = self.model(x)
        recon = out["recon"]
        size = x.shape[-2:]
        maps = []
        for name in self.map_names:
            if name == "l2":
                maps.append(((x - recon) ** 2).mean(dim=1, keepdim=True))
            elif name == "ssim":
                maps.append(1 - ssim_map(x, recon, self.model.ssim_window))
            elif name in GAUSSIAN_MAPS:
                key, attr = GAUSSIAN_MAPS[name]
                m = getattr(self, attr)(out[key].float())
                maps.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
            elif name == "nll":
                nll = self.model.nll_map(out)
                maps.append(F.interpolate(nll, size=size, mode="bilinear", align_corners=False))
            else:
                maps.append(self.model.anomaly_map(out).float())
        return torch.cat(maps, dim=1)

    def fused_map(self, raw: torch.Tensor) -> torch.Tensor:
        """Normalise each map with held-out good statistics, weight, sum, smooth: (B, 1, H, W)."""
        z = (raw - self.map_center.view(1, -1, 1, 1)) / self.map_scale.view(1, -1, 1, 1)
        fused = (z * self.weights.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
        return smooth(fused, self.smooth_kernel)

    def pool_score(self, fused: torch.Tensor) -> torch.Tensor:
        flat = fused.flatten(1)
        if self.image_score == "max":
            return flat.max(dim=1).values
        return flat.topk(min(self.topk, flat.shape[1]), dim=1).values.mean(dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused = self.fused_map(self.raw_maps(x))
        score = self.pool_score(fused)
        return score, fused[:, 0], score >= self.threshold


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def batches(images: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), batch_size):
        yield to_tensor(images[start : start + batch_size])


@torch.no_grad()
def raw_maps_of(module: InspectionModule, images: np.ndarray, batch_size: int = 32) -> torch.Tensor:
    """Un-normalised maps (N, K, H, W) of many images, on the CPU, batch by batch."""
    device = module.threshold.device
    return torch.cat([module.raw_maps(b.to(device)).cpu() for b in batches(images, batch_size)])


@torch.no_grad()
def fit_scoring(
    module: InspectionModule, fit_images: np.ndarray, val_images: np.ndarray, batch_size: int = 32
) -> dict[str, dict[str, float]]:
    """Fit the latent Gaussians on training images, then each map's normalisation on held-out
    good images."""
    module.eval()
    device = module.threshold.device
    wanted = {key: attr for name, (key, attr) in GAUSSIAN_MAPS.items() if name in module.map_names}
    if wanted:
        feats: dict[str, list[torch.Tensor]] = {key: [] for key in wanted}
        for b in batches(fit_images, batch_size):
            out = module.model(b.to(device))
            for key in wanted:
                feats[key].append(out[key].float().cpu())
        for key, attr in wanted.items():
            getattr(module, attr).fit(torch.cat(feats[key]))
    return fit_map_normalisation(module, raw_maps_of(module, val_images, batch_size))


def fit_map_normalisation(
    module: InspectionModule, raws: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Each map's centre (median) and robust spread on raw maps of held-out good images, so
    maps of different units fuse on equal terms."""
    stats = {}
    for i, name in enumerate(module.map_names):
        values = raws[:, i].flatten()
        if values.numel() > 2_000_000:
            idx = torch.linspace(0, values.numel() - 1, 2_000_000).long()
            values = values[idx]
        center = values.median()
        spread = torch.quantile(values, 0.99) - center
        scale = spread if spread > 1e-8 else values.std().clamp_min(1e-8)
        module.map_center[i] = center
        module.map_scale[i] = scale
        stats[name] = {"center": float(center), "scale": float(scale)}
    return stats


@torch.no_grad()
def score_images(
    module: InspectionModule, images: np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and fused maps (N, H, W) as numpy, batch by batch."""
    module.eval()
    device = module.threshold.device
    scores, maps = [], []
    for b in batches(images, batch_size):
        s, m, _ = module(b.to(device))
        scores.append(s.cpu().numpy())
        maps.append(m.cpu().numpy().astype(np.float32))
    if not scores:
        return np.zeros(0, np.float32), np.zeros(
            (0, module.image_size, module.image_size), np.float32
        )
    return np.concatenate(scores), np.concatenate(maps)
