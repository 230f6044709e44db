"""What every model family provides to training and scoring.

A family maps images in [0, 1] to a reconstruction plus the encoder features whose
per-position Gaussian gives the latent-likelihood map: the latent code itself when it is a
spatial grid (the learned coordinates on the manifold of good parts), else the last
encoder feature map. The scoring module only relies on
this interface, so new families plug into scoring, calibration and export unchanged.
"""

import torch
from torch import nn

from pipeline.ssim import ssim_map, ssim_window


class Reconstructor(nn.Module):
    """Base of the model families: `forward(x) -> dict` with at least `recon` and `features`.

    Families that learn from synthetic anomalies set `uses_synthetic_anomalies`: training then
    feeds them anomalous images with their masks, and selects them on synthetic defects.
    """

    uses_synthetic_anomalies = False
    extra_maps: tuple[str, ...] = ()  # score maps beyond l2/ssim/mahalanobis this family gives

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("ssim_window", ssim_window(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def reconstruction_loss(
        self, x: torch.Tensor, recon: torch.Tensor, ssim_weight: float
    ) -> torch.Tensor:
        """(1 - w) * L2 + w * (1 - SSIM): SSIM keeps structure sharp where L2 alone blurs."""
        l2 = torch.mean((x - recon) ** 2)
        if ssim_weight == 0:
            return l2
        dssim = torch.mean(1 - ssim_map(x, recon, self.ssim_window))
        return (1 - ssim_weight) * l2 + ssim_weight * dssim

    def loss(
        self,
        target: torch.Tensor,
        out: dict[str, torch.Tensor],
        ssim_weight: float,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training objective and its parts (for logging). `target` is the clean image; `mask`
        marks synthetic anomalies for the families that use them."""
        rec = self.reconstruction_loss(target, out["recon"], ssim_weight)
        return rec, {"recon": float(rec.detach())}

    def nll_map(self, out: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """-log p(z) under the prior as a (B, 1, h, w) map; None for families without a prior."""
        return None

    def anomaly_map(self, out: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Learned anomaly probability (B, 1, H, W); None for families without a segmenter."""
        return None
