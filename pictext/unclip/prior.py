"""unCLIP's diffusion prior: from a caption's CLIP text encodings to a CLIP image embedding.

Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents" (arXiv:2204.06125),
section 2.2: a decoder-only transformer with a causal mask over [text token encodings, text embedding,
timestep embedding, noised image embedding, a learned query], whose output at the query predicts the clean
image embedding directly (x0 parametrisation). That network is diffusers' `PriorTransformer`; this module adds
the unCLIP glue it lacks: scaling unit-norm CLIP embeddings to unit variance per dimension, caption dropout
for classifier-free guidance, and the paper's sampling trick of drawing two embeddings and keeping the one
closer to the text embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import PriorTransformer
from torch import nn

from pictext.unclip.diffusion import DiffusionConfig, make_scheduler, sample


@dataclass(frozen=True)
class PriorConfig:
    embed_dim: int  # the CLIP's embedding size
    text_len: int  # text token encodings the prior sees (the CLIP's context length)
    width: int = 256  # heads * head_dim
    heads: int = 4
    layers: int = 6
    diffusion: DiffusionConfig = DiffusionConfig(prediction="sample")


@dataclass
class TextCondition:
    """What the prior is conditioned on, for a batch of captions."""

    embedding: torch.Tensor  # (B, E) unit-norm CLIP text embeddings
    tokens: torch.Tensor  # (B, T, E) the text tower's token encodings, projected into the embedding space
    mask: torch.Tensor  # (B, T) True at real tokens

    def __len__(self) -> int:
        return self.embedding.shape[0]

    def index(self, rows: torch.Tensor) -> TextCondition:
        return TextCondition(self.embedding[rows], self.tokens[rows], self.mask[rows])

    def to(self, device: torch.device | str) -> TextCondition:
        return TextCondition(self.embedding.to(device), self.tokens.to(device), self.mask.to(device))

    def dropped(self) -> TextCondition:
        """The empty condition classifier-free guidance compares with: zeros, and every token masked but one."""
        mask = torch.zeros_like(self.mask)
        mask[:, 0] = True
        return TextCondition(torch.zeros_like(self.embedding), torch.zeros_like(self.tokens), mask)

    @staticmethod
    def cat(parts: list[TextCondition]) -> TextCondition:
        return TextCondition(*(torch.cat([getattr(p, k) for p in parts]) for k in ("embedding", "tokens", "mask")))


class DiffusionPrior(nn.Module):
    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = c = config
        self.transformer = PriorTransformer(
            num_attention_heads=c.heads, attention_head_dim=c.width // c.heads, num_layers=c.layers,
            embedding_dim=c.embed_dim, num_embeddings=c.text_len, additional_embeddings=4,
        )  # fmt: skip
        self.scale = c.embed_dim**0.5  # unit-norm embeddings -> about unit variance per dimension

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCondition) -> torch.Tensor:
        """(B, E) noised scaled image embeddings at timesteps t -> the predicted clean (scaled) embeddings."""
        out = self.transformer(
            x_t, t, proj_embedding=cond.embedding * self.scale, encoder_hidden_states=cond.tokens,
            attention_mask=cond.mask,
        )  # fmt: skip
        return out.predicted_image_embedding

    def loss(self, image_embedding: torch.Tensor, cond: TextCondition, generator: torch.Generator,
             drop: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Diffusion loss on unit-norm image embeddings (B, E); rows where `drop` is True see the empty caption."""
        from pictext.unclip.diffusion import diffusion_loss

        if drop is not None and drop.any():
            empty = cond.dropped()
            keep = ~drop[:, None]
            cond = TextCondition(torch.where(keep, cond.embedding, empty.embedding),
                                 torch.where(keep[:, :, None], cond.tokens, empty.tokens),
                                 torch.where(keep, cond.mask, empty.mask))  # fmt: skip
        scheduler = make_scheduler(self.config.diffusion)
        return diffusion_loss(self, scheduler, image_embedding * self.scale, cond, generator)

    @torch.no_grad()
    def generate(self, cond: TextCondition, guidance_scale: float = 1.0, steps: int = 64, candidates: int = 2,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """(B, E) unit-norm image embeddings: `candidates` draws per caption, the one closest to the caption's
        text embedding kept (the paper keeps the better of two)."""
        B, E = cond.embedding.shape
        many = TextCondition.cat([cond] * candidates)
        null = many.dropped() if guidance_scale != 1.0 else None
        scheduler = make_scheduler(self.config.diffusion, "ddim")

        def model(x: torch.Tensor, t: torch.Tensor, c: TextCondition) -> torch.Tensor:
            return self(x, t, c)

        x = _sample_with_condition(model, scheduler, (candidates * B, E), many, null, guidance_scale, steps, generator)
        x = F.normalize(x, dim=-1).view(candidates, B, E)
        similarity = (x * F.normalize(cond.embedding, dim=-1)[None]).sum(-1)  # (candidates, B)
        best = similarity.argmax(0)
        return x[best, torch.arange(B)]


def _sample_with_condition(model, scheduler, shape, cond, null, guidance_scale, steps, generator):  # noqa: ANN001, ANN202
    """diffusion.sample for a TextCondition: `sample` batches row indices (conditional rows, then unconditional
    ones) and the model looks the rows up in the two conditions stacked."""
    both = TextCondition.cat([cond, null]) if null is not None else cond
    rows = torch.arange(len(both))

    def run(x: torch.Tensor, t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return model(x, t, both.index(index))

    return sample(run, scheduler, shape, rows[: len(cond)], rows[len(cond) :] if null is not None else None,
                  guidance_scale, steps, generator)  # fmt: skip
