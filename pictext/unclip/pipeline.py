"""unCLIP as one object: the prior, the decoder, an optional upsampler and the CLIP whose space they live in;
pictures from captions, variations of a picture, and interpolations between two."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pictext.clip.model import CLIP
from pictext.errors import UsageError
from pictext.images.tensors import to_images
from pictext.unclip import DECODER_GUIDANCE
from pictext.unclip.decoder import DiffusionDecoder
from pictext.unclip.prior import DiffusionPrior
from pictext.unclip.upsampler import DiffusionUpsampler

Check = Callable[[], None] | None  # called between steps; raises pictext.errors.Cancelled to stop


@dataclass
class UnclipPipeline:
    """Pictures from captions and CLIP image embeddings. With an upsampler, the pictures the decoder draws are
    enlarged by it (`upsample_steps` DDIM steps) unless a call passes upsample=False."""

    clip: CLIP
    prior: DiffusionPrior
    decoder: DiffusionDecoder
    upsampler: DiffusionUpsampler | None = None
    upsample_steps: int = 25

    def __post_init__(self) -> None:
        if self.clip.config.embed_dim != self.prior.config.embed_dim:
            raise UsageError(f"the CLIP embeds in {self.clip.config.embed_dim} dimensions, the prior in "
                             f"{self.prior.config.embed_dim}; use the CLIP they were trained with")  # fmt: skip
        if self.upsampler is not None and self.upsampler.config.low != self.decoder.config.resolution:
            raise UsageError(f"the upsampler reads {self.upsampler.config.low} px pictures, the decoder draws "
                             f"{self.decoder.config.resolution} px ones; train one for this decoder")  # fmt: skip

    prior_steps: int = 64  # the prior's DDIM steps (image_embeddings_for's default)

    @property
    def resolution(self) -> int:
        """The size of the pictures drawn without the upsampler."""
        return self.decoder.config.resolution

    def total_steps(self, steps: int, upsample: bool = True) -> int:
        """The diffusion steps one caption costs: the prior's, the decoder's `steps`, the upsampler's."""
        return self.prior_steps + steps + (self.upsample_steps if self.upsampler is not None and upsample else 0)

    def image_embeddings_for(self, prompts: list[str], guidance_scale: float = 1.0, steps: int = 64,
                             generator: torch.Generator | None = None,
                             check: Check = None) -> torch.Tensor:  # fmt: skip
        from pictext.unclip.train import text_condition

        if any(not p.strip() for p in prompts):
            raise UsageError("the prompt is empty; unCLIP draws a caption, e.g. 'a red circle'")
        cond = text_condition(self.clip, prompts)
        return self.prior.generate(cond, guidance_scale, steps, generator=generator, check=check)

    def draw(
        self,
        embeddings: torch.Tensor,
        guidance_scale: float = DECODER_GUIDANCE,
        steps: int = 50,
        generator: torch.Generator | None = None,
        x_T: torch.Tensor | None = None,
        eta: float = 0.0,
        upsample: bool = True,
        check: Check = None,
    ) -> list[Image.Image]:
        """Pictures for (B, E) unit-norm image embeddings; x_T fixes the starting noise; `eta` is DDIM's share of
        fresh noise at each step (0: deterministic from x_T, 1: as much as DDPM); `upsample`: through the
        upsampler, if there is one; `check` is called between diffusion steps (it raises
        `pictext.errors.Cancelled` to stop)."""
        from pictext.unclip.diffusion import make_scheduler, sample

        if not 0 <= eta <= 1:
            raise UsageError(f"eta must be between 0 (deterministic DDIM) and 1 (DDPM-like), got {eta}")
        if x_T is None:
            pixels = self.decoder.generate(embeddings, guidance_scale, steps, generator, eta, check)
        else:
            scheduler = make_scheduler(self.decoder.config.diffusion, "ddim")
            null = torch.zeros_like(embeddings)
            pixels = sample(self.decoder, scheduler, tuple(x_T.shape), embeddings, null, guidance_scale, steps,
                            generator, eta, x_T=x_T, check=check).clamp(-1, 1)  # fmt: skip
        if self.upsampler is not None and upsample:
            pixels = self.upsampler.generate(pixels, self.upsample_steps, generator, eta, same_noise=x_T is not None,
                                             check=check)  # fmt: skip
        return to_images(pixels)

    def generate(self, prompt: str, n: int = 1, prior_guidance: float = 1.0, guidance_scale: float = DECODER_GUIDANCE,
                 steps: int = 50, seed: int = 0, eta: float = 1.0, upsample: bool = True,
                 check: Check = None) -> list[Image.Image]:  # fmt: skip
        """`n` pictures of `prompt`. eta 1 by default (fresh noise at each step), which draws captions right more
        often than deterministic DDIM (docs/measurements.md)."""
        g = torch.Generator().manual_seed(seed)
        embeddings = self.image_embeddings_for([prompt] * n, prior_guidance, self.prior_steps, g, check=check)
        return self.draw(embeddings, guidance_scale, steps, g, eta=eta, upsample=upsample, check=check)

    def vary(self, image: Image.Image, n: int = 4, guidance_scale: float = DECODER_GUIDANCE, steps: int = 50,
             seed: int = 0, eta: float = 1.0, upsample: bool = True,
             check: Check = None) -> list[Image.Image]:  # fmt: skip
        """Variations: the image's own CLIP embedding decoded from `n` different noises.

        eta 1 by default: variations keep their source's colour and shape more often than with deterministic
        DDIM (docs/measurements.md)."""
        from pictext.unclip.train import image_embeddings

        embedding = image_embeddings(self.clip, [image]).expand(n, -1)
        g = torch.Generator().manual_seed(seed)
        return self.draw(embedding, guidance_scale, steps, g, eta=eta, upsample=upsample, check=check)

    def interpolate(self, a: Image.Image, b: Image.Image, n: int = 8, guidance_scale: float = DECODER_GUIDANCE,
                    steps: int = 50, seed: int = 0, upsample: bool = True,
                    check: Check = None) -> list[Image.Image]:  # fmt: skip
        """`n` pictures along the great circle between the two images' CLIP embeddings, from one noise (and
        deterministic DDIM, eta 0, so that only the embedding changes along the way)."""
        from pictext.unclip.train import image_embeddings

        ea, eb = image_embeddings(self.clip, [a, b])
        embeddings = torch.stack([slerp(ea, eb, float(w)) for w in np.linspace(0, 1, n)])
        g = torch.Generator().manual_seed(seed)
        c = self.decoder.config
        x_T = torch.randn((1, 3, c.resolution, c.resolution), generator=g).expand(n, -1, -1, -1)
        return self.draw(embeddings, guidance_scale, steps, g, x_T=x_T, upsample=upsample, check=check)


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between unit vectors a (w=0) and b (w=1); unit-norm all along."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return a
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)
