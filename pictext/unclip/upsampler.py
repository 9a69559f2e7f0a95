"""unCLIP's optional upsampler: a diffusion model from the decoder's small picture to one twice as large.

Ramesh et al. 2022 follow the decoder with diffusion upsamplers conditioned on the low-resolution picture,
which they corrupt while training (Gaussian blur for the first one) so that the upsampler learns to mend the
decoder's flaws rather than to copy real low-resolution pictures exactly. Here: diffusers' `UNet2DModel`
reads the noised large picture beside the small one, resized to the same size (6 input channels); training
blurs the small picture by a random amount and adds a little noise; sampling takes the decoder's output as it
is. No text or CLIP condition, so no guidance: the small picture says what to draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from pictext.config import SIDE, WIDTH
from pictext.training import Share
from pictext.unclip.diffusion import DiffusionConfig, diffusion_loss, make_scheduler, sample


@dataclass(frozen=True)
class UpsamplerConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "low": SIDE,
        "resolution": SIDE,
        "channels": WIDTH,
        "layers_per_block": (1, 16),
    }
    low: int = 32  # the decoder's resolution, which it reads
    resolution: int = 64  # what it draws
    channels: tuple[int, ...] = (32, 64, 64)  # UNet widths per level (multiples of 32: GroupNorm's groups)
    layers_per_block: int = 1
    max_blur: float = 0.6  # training blurs the small picture with a Gaussian of sigma in [0, max_blur] pixels
    max_noise: float = 0.05  # and adds Gaussian noise of std up to this (pixels in [-1, 1])
    diffusion: DiffusionConfig = DiffusionConfig(prediction="v_prediction", clip_sample=True)

    def __post_init__(self) -> None:
        if self.resolution <= self.low:
            raise ValueError(f"an upsampler draws larger than it reads: resolution {self.resolution}, low {self.low}")


class DiffusionUpsampler(nn.Module):
    def __init__(self, config: UpsamplerConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.channels)
        self.unet = UNet2DModel(
            sample_size=c.resolution, in_channels=6, out_channels=3, block_out_channels=c.channels,
            layers_per_block=c.layers_per_block, down_block_types=("DownBlock2D",) * n,
            up_block_types=("UpBlock2D",) * n,
        )  # fmt: skip

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) noised pixels, timesteps, (B, 3, r, r) the small pictures in [-1, 1]."""
        up = F.interpolate(low, size=x_t.shape[-2:], mode="bilinear", align_corners=False)
        return self.unet(torch.cat([x_t, up.to(x_t.dtype)], dim=1), t).sample

    def shrink(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) -> (B, 3, r, r), averaging each block: what the decoder would have drawn at its size."""
        return F.interpolate(pixels, size=(self.config.low, self.config.low), mode="area")

    def corrupt(self, low: torch.Tensor, generator: torch.Generator, share: Share | None = None) -> torch.Tensor:
        """The training-time degradation of small pictures: a per-picture random blur and a little noise."""
        import kornia

        c = self.config
        share = share or Share.whole(low.shape[0])
        sigma = share.rand((low.shape[0],), generator) * c.max_blur + 1e-3  # 0 is not a valid sigma
        blurred = kornia.filters.gaussian_blur2d(low, (5, 5), sigma[:, None].expand(-1, 2).to(low))
        std = share.rand((low.shape[0], 1, 1, 1), generator) * c.max_noise
        return blurred + (std * share.randn(low.shape, generator)).to(low)

    def loss(self, pixels: torch.Tensor, generator: torch.Generator, share: Share | None = None) -> torch.Tensor:
        """Diffusion loss on large pixels in [-1, 1], conditioned on their own corrupted small version."""
        low = self.corrupt(self.shrink(pixels), generator, share)
        return diffusion_loss(self, make_scheduler(self.config.diffusion), pixels, low, generator, share)

    @torch.no_grad()
    def generate(self, low: torch.Tensor, steps: int = 25, generator: torch.Generator | None = None,
                 eta: float = 0.0, same_noise: bool = False,
                 check: Callable[[], None] | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 3, R, R) pixels in [-1, 1] for (B, 3, r, r) small pictures in [-1, 1], by DDIM; `same_noise`
        starts every picture from one noise (an interpolation's frames then differ only where their inputs do)."""
        c = self.config
        if tuple(low.shape[-2:]) != (c.low, c.low):
            raise ValueError(f"this upsampler reads {c.low}x{c.low} pictures, got {tuple(low.shape[-2:])}")
        shape = (low.shape[0], 3, c.resolution, c.resolution)
        x_T = torch.randn((1, *shape[1:]), generator=generator).expand(shape) if same_noise else None
        x = sample(self, make_scheduler(c.diffusion, "ddim"), shape, low, None, 1.0, steps, generator, eta, x_T, check)
        return x.clamp(-1, 1)
