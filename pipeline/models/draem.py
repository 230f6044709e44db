"""DRAEM-class model (Zavrtanik et al., ICCV 2021): reconstruct, then segment what differs.

Two sub-networks trained together on synthetic anomalies pasted into good images:
- a reconstructive encoder-decoder without skip connections maps the anomalous image back to the
  clean one (L2 + SSIM), so it learns the manifold of good appearance;
- a discriminative U-Net sees [input, reconstruction] side by side and predicts the anomaly mask
  (focal loss). It learns *where the two disagree in a way good parts never do*, which is a far
  sharper signal than the raw reconstruction error an AE is scored by.
Both are needed: the reconstruction alone is a weaker AE, the discriminator alone overfits the
synthetic defects. Widths and depths come from the config, so the same family trains narrow at
reduced size on a CPU and at paper size on a GPU.

The U-Net's last features, pooled, are given out too (`seg_features`): a Gaussian of them over
good parts (the `seg_mahalanobis` score map) flags what the synthetic defects never taught the
head to mark.
"""

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError
from pipeline.models.base import Reconstructor
from pipeline.models.blocks import Decoder, Encoder
from pipeline.models.registry import register_model

SEG_FEATURE_STRIDE = 4  # the U-Net's last features are average-pooled by this for scoring


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SegmentationUNet(nn.Module):
    """U-Net with `depth` poolings, channels doubling from `width` (capped at 8x), one logit out."""

    def __init__(self, c_in: int, width: int, depth: int) -> None:
        super().__init__()
        chans = [width * min(2**i, 8) for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(c_in, chans[0])])
        self.down.extend(_double_conv(a, b) for a, b in zip(chans, chans[1:], strict=False))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(
            _double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, 1, H, W), last features (B, width, H, W))."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x), x


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss: down-weights the easy background pixels that dominate every mask."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-bce)
    return ((1 - p_true) ** gamma * bce).mean()


# With `input_norm: image`, x becomes 0.5 + (x - mean) / (NORM_SPAN * std): +-3 standard
# deviations of the image span [0, 1], the range of the decoder's sigmoid and of SSIM.
NORM_SPAN = 6.0
NORM_MIN_STD = 0.01  # a flat image is not blown up into noise


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image and channel by its own statistics: (normalised x, offset, scale) with
    x = offset + scale * normalised. Why: parts differ in brightness and contrast from one to
    the next (a magnetic tile's mean varies by 30 %), and without this the same defect scores
    lower on a dark part than on a bright one."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(NORM_MIN_STD)
    scale = NORM_SPAN * std
    offset = mean - 0.5 * scale
    return (x - offset) / scale, offset, scale


def position_grid(like: torch.Tensor) -> torch.Tensor:
    """Row and column of every pixel in [-1, 1], (B, 2, H, W): where in the frame a pixel is."""
    b, _, h, w = like.shape
    rows = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.unsqueeze(0).expand(b, -1, -1, -1)


class Draem(Reconstructor):
    """Reconstructive encoder-decoder + discriminative U-Net on [input, reconstruction]."""

    uses_synthetic_anomalies = True
    extra_maps = ("anomaly", "seg_mahalanobis")

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int) -> None:
        super().__init__(channels)
        self.encoder = Encoder(channels, cfg.width, cfg.depth)
        self.decoder = Decoder(channels, cfg.width, cfg.depth)
        self.position_channels = cfg.position_channels
        seg_in = 2 * channels + (2 if cfg.position_channels else 0)
        self.segmenter = SegmentationUNet(seg_in, cfg.disc_width, cfg.disc_depth)
        self.focal_gamma = cfg.focal_gamma
        self.input_norm = cfg.input_norm

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`recon` is in image units for scoring; the sub-networks work on `normalised` input
        (x itself without input_norm) and `recon_normalised` is what the loss compares."""
        if self.input_norm == "image":
            xn, offset, scale = standardise(x)
        else:
            xn, offset, scale = (
                x,
                torch.zeros_like(x[:, :, :1, :1]),
                torch.ones_like(x[:, :, :1, :1]),
            )
        h = self.encoder(xn)
        recon_n = self.decoder(h)
        seg_in = [xn, recon_n, position_grid(xn)] if self.position_channels else [xn, recon_n]
        logits, seg_features = self.segmenter(torch.cat(seg_in, dim=1))
        return {
            "recon": offset + scale * recon_n,
            "recon_normalised": recon_n,
            "offset": offset,
            "scale": scale,
            "features": h,
            "seg_features": F.avg_pool2d(seg_features, SEG_FEATURE_STRIDE),
            "logits": logits,
            "anomaly": torch.sigmoid(logits),
        }

    def loss(
        self,
        target: torch.Tensor,
        out: dict[str, torch.Tensor],
        ssim_weight: float,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction towards the clean image plus focal loss on the anomaly mask. The clean
        target is normalised with the *input's* statistics, as the reconstruction is."""
        target_n = (target - out["offset"]) / out["scale"]
        rec = self.reconstruction_loss(target_n, out["recon_normalised"], ssim_weight)
        if mask is None:
            mask = torch.zeros_like(out["logits"])
        seg = focal_loss(out["logits"].float(), mask, self.focal_gamma)
        return rec + seg, {"recon": float(rec.detach()), "segment": float(seg.detach())}

    def anomaly_map(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return out["anomaly"]


@register_model("draem")
def draem(cfg: ModelConfig, image_size: int, channels: int) -> Draem:
    if image_size % 2**cfg.disc_depth:
        raise ConfigError(
            f"image_size {image_size} is not divisible by 2^disc_depth = {2**cfg.disc_depth}"
        )
    return Draem(cfg, image_size, channels)
