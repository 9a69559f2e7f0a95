"""A BERT encoder (Devlin et al. 2019) as sentence-transformers runs it: post-LN blocks, exact GELU, mean pooling.

Written here rather than run through `transformers.BertModel` so that a LiT model
(pictext/clip/lit.py) is one native .safetensors file that loads without
transformers, with attention on torch's fused `scaled_dot_product_attention` and
query/key/value fused into one matrix product. tests/test_lit.py holds it to
transformers' own BertModel within 1e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12  # BERT's, and every model derived from it


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln_1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.ln_2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:  # (B, T, C), (B, 1, 1, T) bool
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend).transpose(1, 2).reshape(B, T, C)
        x = self.ln_1(x + self.out(y))
        return self.ln_2(x + self.fc2(F.gelu(self.fc1(x))))


class BertEncoder(nn.Module):
    """Token ids (B, T), padded with `pad_token_id`, to one mean-pooled vector per text (B, width)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        context_length: int,
        width: int,
        heads: int,
        layers: int,
        hidden: int,
        pad_token_id: int,
    ) -> None:
        super().__init__()
        self.pad_token_id = pad_token_id
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Parameter(torch.zeros(context_length, width))
        self.token_type_embedding = nn.Parameter(torch.zeros(width))  # segment A's; a single text has no B
        self.ln_embed = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.layers = nn.ModuleList([BertLayer(width, heads, hidden) for _ in range(layers)])
        for p in self.parameters():
            if p.ndim > 1:
                nn.init.normal_(p, std=0.02)  # BERT's initialisation, for a tower trained from scratch

    def sequence(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, T, width) every token's final hidden state, (B, T) True at real tokens)."""
        real = tokens != self.pad_token_id  # (B, T)
        x = self.word_embeddings(tokens) + self.position_embeddings[: tokens.shape[1]] + self.token_type_embedding
        x = self.ln_embed(x)
        attend = real[:, None, None, :]  # padding is never attended to
        for layer in self.layers:
            x = layer(x, attend)
        return x, real

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, real = self.sequence(tokens)
        weights = real.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
