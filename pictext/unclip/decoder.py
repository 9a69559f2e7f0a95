"""unCLIP's decoder: a diffusion model from a CLIP image embedding to pixels.

Ramesh et al. 2022, section 2.1 (after GLIDE): the CLIP image embedding is projected and added to the
timestep embedding, and projected into a few extra context tokens the UNet attends to. The UNet is diffusers'
`UNet2DConditionModel` (the embedding enters through its `class_embed_type="projection"` path, the tokens as
`encoder_hidden_states`); this module adds only the token projection, the guidance dropout and the sampling
call. `export_diffusers` writes the UNet as a diffusers model folder (`UNet2DConditionModel.from_pretrained`
loads it) with the token projection beside it. The optional upsampler that may follow it is `upsampler.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from pictext.config import SIDE, WIDTH
from pictext.training import Share
from pictext.unclip.diffusion import DiffusionConfig, diffusion_loss, make_scheduler, sample


@dataclass(frozen=True)
class DecoderConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "embed_dim": WIDTH,
        "resolution": SIDE,
        "channels": WIDTH,
        "layers_per_block": (1, 16),
        "context_tokens": (0, 256),
        "cross_dim": WIDTH,
        "head_dim": WIDTH,
        "attention_levels": (0, 16),
    }
    embed_dim: int  # the CLIP's embedding size
    resolution: int = 32
    channels: tuple[int, ...] = (32, 64, 64)  # UNet widths per level (multiples of 32: GroupNorm's groups)
    layers_per_block: int = 1
    context_tokens: int = 4  # extra tokens projected from the image embedding
    cross_dim: int = 64  # their width
    head_dim: int = 32
    attention_levels: int = 1  # the lowest-resolution levels that attend (to themselves and the tokens)
    # v rather than epsilon: an epsilon decoder's samples kept the noise's grain (docs/measurements.md)
    diffusion: DiffusionConfig = DiffusionConfig(prediction="v_prediction", clip_sample=True)


class DiffusionDecoder(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.channels)
        a = min(c.attention_levels, n)
        down = ("DownBlock2D",) * (n - a) + ("CrossAttnDownBlock2D",) * a
        up = ("CrossAttnUpBlock2D",) * a + ("UpBlock2D",) * (n - a)
        self.unet = UNet2DConditionModel(
            sample_size=c.resolution, in_channels=3, out_channels=3, block_out_channels=c.channels,
            layers_per_block=c.layers_per_block, down_block_types=down, up_block_types=up,
            cross_attention_dim=c.cross_dim, attention_head_dim=c.head_dim, class_embed_type="projection",
            projection_class_embeddings_input_dim=c.embed_dim,
        )  # fmt: skip
        self.to_tokens = nn.Linear(c.embed_dim, c.context_tokens * c.cross_dim)
        self.scale = c.embed_dim**0.5  # unit-norm embeddings -> about unit variance per dimension

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) noised pixels, timesteps, (B, E) unit-norm image embeddings (zeros: no condition)."""
        e = embedding * self.scale
        tokens = self.to_tokens(e).view(e.shape[0], self.config.context_tokens, self.config.cross_dim)
        return self.unet(x_t, t, encoder_hidden_states=tokens, class_labels=e).sample

    def loss(self, pixels: torch.Tensor, embedding: torch.Tensor, generator: torch.Generator,
             drop: torch.Tensor | None = None, share: Share | None = None) -> torch.Tensor:  # fmt: skip
        """Diffusion loss on pixels in [-1, 1]; rows where `drop` is True see no embedding (for guidance)."""
        if drop is not None:
            embedding = torch.where(drop[:, None], torch.zeros_like(embedding), embedding)
        return diffusion_loss(self, make_scheduler(self.config.diffusion), pixels, embedding, generator, share)

    @torch.no_grad()
    def generate(self, embedding: torch.Tensor, guidance_scale: float = 1.0, steps: int = 50,
                 generator: torch.Generator | None = None, eta: float = 0.0,
                 check: Callable[[], None] | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 3, H, W) pixels in [-1, 1] for (B, E) unit-norm image embeddings, by DDIM."""
        c = self.config
        shape = (embedding.shape[0], 3, c.resolution, c.resolution)
        scheduler = make_scheduler(c.diffusion, "ddim")
        null = torch.zeros_like(embedding)
        x = sample(self, scheduler, shape, embedding, null, guidance_scale, steps, generator, eta, check=check)
        return x.clamp(-1, 1)


def export_diffusers(decoder: DiffusionDecoder, folder: str | os.PathLike) -> Path:
    """The UNet as a diffusers model folder (config.json + weights), the token projection beside it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    decoder.unet.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in decoder.to_tokens.state_dict().items()}, folder / "to_tokens.safetensors")
    return folder
