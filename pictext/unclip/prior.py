"""unCLIP's diffusion prior: from a caption's CLIP text encodings to a CLIP image embedding.

Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents" (arXiv:2204.06125),
section 2.2: a decoder-only transformer with a causal mask over [text token encodings, text embedding,
timestep embedding, noised image embedding, a learned query], whose output at the query predicts the clean
image embedding directly (x0 parametrisation). That network is diffusers' `PriorTransformer`; this module adds
the unCLIP glue it lacks: scaling unit-norm CLIP embeddings to unit variance per dimension, caption dropout
for classifier-free guidance, and the paper's sampling trick of drawing two embeddings and keeping the one
closer to the text embedding.

Sampling caches the condition. The mask is causal and the condition comes first (token encodings, then the text
embedding), so those positions never see the timestep or the noised embedding: their keys and values at every
layer are the same at all sampling steps. `condition_cache` computes them once; each step then runs only the
three positions that change (timestep, noised embedding, query), a ninth of the sequence at 32 text tokens.
`forward_cached` matches `forward` within float rounding (tested); diffusers' `PriorTransformer` has no such
cache, so this module runs its blocks' own layers itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import PriorTransformer
from torch import nn

from pictext.config import COUNT, HEADS, SIDE, WIDTH
from pictext.training import Share
from pictext.unclip.diffusion import DiffusionConfig, make_scheduler, sample


@dataclass(frozen=True)
class PriorConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "embed_dim": WIDTH,
        "text_len": SIDE,
        "width": WIDTH,
        "heads": HEADS,
        "layers": COUNT,
    }
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


@dataclass
class ConditionCache:
    """Every layer's keys and values at the condition's positions (B, heads, P, head_dim), and their padding
    (B, P): 0 at a real token, -10000 at padding (diffusers' additive mask value)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    padding: torch.Tensor

    def index(self, rows: torch.Tensor) -> ConditionCache:
        if len(rows) == len(self.padding) and torch.equal(rows.cpu(), torch.arange(len(rows))):
            return self
        return ConditionCache([k[rows] for k in self.keys], [v[rows] for v in self.values], self.padding[rows])


Pair = tuple[torch.Tensor, torch.Tensor]


def _block(block: nn.Module, h: torch.Tensor, mask: torch.Tensor, past: Pair | None = None) -> tuple[torch.Tensor, ...]:
    """diffusers' BasicTransformerBlock (layer norms, self-attention, GELU feed-forward) on `h`, its keys and
    values joined after `past`; returns the new hidden states and `h`'s own keys and values."""
    attn = block.attn1
    x = block.norm1(h)
    B, n, _ = x.shape
    q, k, v = (proj(x).view(B, n, attn.heads, -1).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
    keys, values = (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)) if past is not None else (k, v)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    h = h + attn.to_out[0](out.transpose(1, 2).reshape(B, n, -1))
    return h + block.ff(block.norm3(h)), k, v


def condition_cache(tr: PriorTransformer, tokens: torch.Tensor, embedding: torch.Tensor,
                    mask: torch.Tensor) -> ConditionCache:  # fmt: skip
    """Every layer's keys and values at the condition's positions of diffusers' PriorTransformer `tr`: the token
    encodings (B, T, E) `tokens` with their mask, then the embedding `embedding` (its `proj_embedding`)."""
    if tr.prd_embedding is None or tr.encoder_hidden_states_proj is None:
        raise ValueError("the cached prior runs PriorTransformers with a prd token and a token projection (unCLIP's)")
    P = tokens.shape[1] + 1  # the token encodings, then the embedding
    if tr.embedding_proj_norm is not None:
        embedding = tr.embedding_proj_norm(embedding)
    h = torch.cat([tr.encoder_hidden_states_proj(tokens), tr.embedding_proj(embedding)[:, None]], 1)
    h = h + tr.positional_embedding[:, :P].to(h.dtype)
    if tr.norm_in is not None:
        h = tr.norm_in(h)
    padding = F.pad((1 - mask.to(h.dtype)) * -10000.0, (0, 1))
    attend = (padding[:, None, None, :] + tr.causal_attention_mask[..., :P, :P]).to(h.dtype)
    keys, values = [], []
    for block in tr.transformer_blocks:
        h, k, v = _block(block, h, attend)
        keys.append(k)
        values.append(v)
    return ConditionCache(keys, values, padding)


def forward_cached(tr: PriorTransformer, x_t: torch.Tensor, t: torch.Tensor, cache: ConditionCache) -> torch.Tensor:
    """`tr(x_t, t, ...)`'s predicted image embedding with the condition's positions read from `cache`: only the
    last three positions (timestep, noised embedding, query) run."""
    P, B = cache.padding.shape[1], x_t.shape[0]
    t = t.reshape(-1)
    time = tr.time_embedding(tr.time_proj(t.expand(B) if t.numel() == 1 else t).to(x_t.dtype))
    h = torch.cat([time[:, None], tr.proj_in(x_t)[:, None], tr.prd_embedding.expand(B, -1, -1).to(x_t.dtype)], 1)
    h = h + tr.positional_embedding[:, P : P + 3].to(h.dtype)
    if tr.norm_in is not None:
        h = tr.norm_in(h)
    mask = (F.pad(cache.padding, (0, 3))[:, None, None, :] + tr.causal_attention_mask[..., P : P + 3, : P + 3]).to(
        h.dtype
    )
    for block, k, v in zip(tr.transformer_blocks, cache.keys, cache.values, strict=True):
        h, _, _ = _block(block, h, mask, (k, v))
    return tr.proj_to_clip_embeddings(tr.norm_out(h[:, -1]))


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

    def condition_cache(self, cond: TextCondition) -> ConditionCache:
        """The keys and values of the condition's positions at every layer, for `forward_cached`."""
        return condition_cache(self.transformer, cond.tokens, cond.embedding * self.scale, cond.mask)

    def forward_cached(self, x_t: torch.Tensor, t: torch.Tensor, cache: ConditionCache) -> torch.Tensor:
        """`forward` with the condition's positions read from `cache`: only the last three positions run."""
        return forward_cached(self.transformer, x_t, t, cache)

    def loss(self, image_embedding: torch.Tensor, cond: TextCondition, generator: torch.Generator,
             drop: torch.Tensor | None = None, share: Share | None = None) -> torch.Tensor:  # fmt: skip
        """Diffusion loss on unit-norm image embeddings (B, E); rows where `drop` is True see the empty caption."""
        from pictext.unclip.diffusion import diffusion_loss

        if drop is not None and drop.any():
            empty = cond.dropped()
            keep = ~drop[:, None]
            cond = TextCondition(torch.where(keep, cond.embedding, empty.embedding),
                                 torch.where(keep[:, :, None], cond.tokens, empty.tokens),
                                 torch.where(keep, cond.mask, empty.mask))  # fmt: skip
        scheduler = make_scheduler(self.config.diffusion)
        return diffusion_loss(self, scheduler, image_embedding * self.scale, cond, generator, share)

    @torch.no_grad()
    def generate(self, cond: TextCondition, guidance_scale: float = 1.0, steps: int = 64, candidates: int = 2,
                 generator: torch.Generator | None = None, use_cache: bool = True,
                 check: Callable[[], None] | None = None) -> torch.Tensor:  # fmt: skip
        """(B, E) unit-norm image embeddings: `candidates` draws per caption, the one closest to the caption's
        text embedding kept (the paper keeps the better of two). `use_cache=False` runs the whole sequence at
        every step (the reference the cache is tested against)."""
        B, E = cond.embedding.shape
        many = TextCondition.cat([cond] * candidates)
        null = many.dropped() if guidance_scale != 1.0 else None
        scheduler = make_scheduler(self.config.diffusion, "ddim")
        both = TextCondition.cat([many, null]) if null is not None else many
        cache = self.condition_cache(both) if use_cache else None

        def model(x: torch.Tensor, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.forward_cached(x, t, cache.index(rows)) if cache is not None else self(x, t, both.index(rows))

        # `sample` batches row indices (the conditional rows, then the unconditional ones when guided), which the
        # model looks up in the conditions stacked
        rows = torch.arange(len(both), device=cond.embedding.device)
        n = len(many)
        x = sample(model, scheduler, (candidates * B, E), rows[:n], rows[n:] if null is not None else None,
                   guidance_scale, steps, generator, check=check)  # fmt: skip
        x = F.normalize(x, dim=-1).view(candidates, B, E)
        similarity = (x * F.normalize(cond.embedding, dim=-1)[None]).sum(-1)  # (candidates, B)
        best = similarity.argmax(0)
        return x[best, torch.arange(B)]
