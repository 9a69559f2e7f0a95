"""DALL-E: one decoder-only transformer over a single stream of text tokens followed by image tokens.

Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation" (arXiv:2102.12092); reference code:
github.com/lucidrains/DALLE-pytorch. The stream is

    text_0 ... text_{L-1} | image_0 ... image_{N-1}          (L = text_len, N = image_grid**2, raster order)

and position p predicts token p+1, so the model learns p(text) and p(image | text) at once. As in the paper:

- every padding slot gets its own token (pad at text position i is token `text_vocab + i`), so the model
  knows where a caption ended without attending to pads that all look alike;
- image tokens have a 2-D position (a row embedding plus a column embedding);
- attention is causal, and a layer may restrict its image queries further with a sparse mask (`row`,
  `column`, `conv`; see `attention_mask`); the paper cycles row, column, row, row and ends on a conv layer
  (`attention`, `last_attention`). The masks are dense boolean masks handed to torch's
  `scaled_dot_product_attention`: they change what a layer sees, not how fast it runs;
- the loss weights image tokens over text tokens (`loss_img_weight`, 7 in the paper);
- dropping the caption (all pads) for a share of the training pairs teaches p(image) as well, which
  classifier-free guidance at sampling needs (`sampling.py`).

The switches that ruDALL-E (Sber's Russian DALL-E, CogView's stabilisers; `convert.py` imports it) needs
are config fields: `sandwich_norm` (a layer norm on each branch's output before the residual sum, CogView
section 2.4), `head_norm` (a second layer norm before the heads), `activation` "gelu_tanh" and `row_span`
(its row mask reaches one token further back). CogView's PB-relax needs no field: it rescales attention
scores so that fp16 does not overflow, and softmax is invariant to it; SDPA already subtracts each row's
maximum and accumulates in float32.

The linear layers are `PackedLinear` (pictext/nn/packed.py): the same parameters as `nn.Linear`, and on CPU
without gradients a oneDNN-prepacked weight, which made cached sampling 1.4-1.5 times faster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pictext.config import COUNT, HEADS, TOKEN_ID, VOCAB, WIDTH
from pictext.nn.packed import PackedLinear

ATTENTION = ("full", "row", "column", "conv")
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}  # name -> nn.GELU's `approximate`
_CAUSAL = torch.ones(0, dtype=torch.bool)  # stands for "causal" in place of a mask: SDPA's is_causal=True


@dataclass(frozen=True)
class DALLEConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "text_vocab": VOCAB,
        "image_vocab": (1, 1 << 18),
        "text_len": (1, 1024),
        "image_grid": (1, 64),
        "width": WIDTH,
        "layers": COUNT,
        "heads": HEADS,
        "conv_kernel": (1, 63),
        "row_span": (0, 4096),
        "pad_token_id": TOKEN_ID,
    }
    text_vocab: int  # the text tokenizer's vocabulary; per-position pad tokens come after it
    image_vocab: int  # the image tokenizer's codebook size
    text_len: int = 32  # text positions, start and end tokens included
    image_grid: int = 8  # the image tokenizer's grid side: image_grid**2 image tokens
    width: int = 256
    layers: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    attention: tuple[str, ...] = ("full",)  # each layer's mask, cycled over the layers (the paper: row, column, ...)
    last_attention: str | None = None  # the last layer's mask in place of the cycle's (the paper: conv)
    conv_kernel: int = 3  # side of the `conv` mask's window (odd)
    row_span: int = 0  # image tokens a `row` query sees, itself included; 0: image_grid (ruDALL-E: image_grid + 1)
    activation: str = "gelu"  # the MLP's: "gelu" (erf) or "gelu_tanh" (the tanh approximation: GPT-2, ruDALL-E)
    sandwich_norm: bool = False  # CogView's sandwich layer norm: normalise each branch's output before the sum
    head_norm: bool = False  # a layer norm between the final one and the heads (ruDALL-E's to_logits)
    dropout: float = 0.0
    loss_img_weight: float = 7.0  # image loss : text loss = loss_img_weight : 1
    pad_token_id: int = 0  # the text tokenizer's pad id, replaced by the per-position pad tokens

    def __post_init__(self) -> None:
        unknown = [a for a in (*self.attention, self.last_attention or "full") if a not in ATTENTION]
        if unknown or not self.attention:
            raise ValueError(f"attention and last_attention take {ATTENTION}, got {self.attention}, "
                             f"{self.last_attention}")  # fmt: skip
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation takes {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")

    @property
    def image_len(self) -> int:
        return self.image_grid**2

    @property
    def seq_len(self) -> int:
        """Positions the transformer sees: the whole stream but its last token (nothing follows it)."""
        return self.text_len + self.image_len - 1

    def layer_attention(self) -> list[str]:
        """Each layer's mask kind: the cycle of `attention`, the last layer `last_attention` if set."""
        kinds = [self.attention[i % len(self.attention)] for i in range(self.layers)]
        if self.last_attention is not None:
            kinds[-1] = self.last_attention
        return kinds


def attention_mask(kind: str, text_len: int, grid: int, kernel: int = 3, row_span: int = 0) -> torch.Tensor:
    """(T, T) boolean, True where query position i may attend to key position j; T = text_len + grid**2 (the
    whole stream: its last position predicts nothing, but logits at every position are asked for).

    Every mask is causal (j <= i), and text queries see the text before them. An image query is the
    position holding image token q (q = i - text_len), and it sees all of the text and, among image keys
    (image token k = j - text_len, k <= q):
      full:   every earlier image token;
      row:    the `row_span` (default `grid`) most recent ones (q - k < row_span): its own row so far and the
              end of the row above;
      column: those in its column (q - k a multiple of `grid`);
      conv:   those within a kernel x kernel window centred on it (rows and columns at most kernel // 2 away).
    The last text position predicts the first image token and is a text query.
    """
    if kind not in ATTENTION:
        raise ValueError(f"attention mask kind must be one of {ATTENTION}, got {kind!r}")
    T = text_len + grid * grid
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    causal = j <= i
    if kind == "full":
        return causal
    q, k = i - text_len, j - text_len  # image token indices (negative for text)
    if kind == "row":
        near = q - k < (row_span or grid)
    elif kind == "column":
        near = (q - k) % grid == 0
    else:
        half = kernel // 2
        near = ((q // grid - k // grid).abs() <= half) & ((q % grid - k % grid).abs() <= half)
    image_query, text_key = q >= 0, k < 0
    return causal & (~image_query | text_key | near)


class KVCache:
    """Keys and values of every layer for positions already seen, preallocated for the whole stream."""

    def __init__(self, config: DALLEConfig, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        head = config.width // config.heads
        shape = (batch, config.heads, config.seq_len, head)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.length = 0  # positions filled

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` of the batch (used to drop samples or repeat a primed prefix)."""
        self.keys = [k[index] for k in self.keys]
        self.values = [v[index] for v in self.values]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: DALLEConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = PackedLinear(config.width, 3 * config.width)
        self.proj = PackedLinear(config.width, config.width)
        self.dropout = config.dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        """x: (B, t, C) at positions [start, start + t) where start = cache.length (0 without a cache);
        mask: (t, start + t) rows of the layer's attention mask for those positions, `_CAUSAL`, or None (attend
        to every key: one new position under a causal mask)."""
        B, t, C = x.shape
        q, k, v = self.qkv(x).view(B, t, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, t, D)
        if cache is not None:
            start = cache.length
            cache.keys[layer][:, :, start : start + t] = k
            cache.values[layer][:, :, start : start + t] = v
            k, v = cache.keys[layer][:, :, : start + t], cache.values[layer][:, :, : start + t]
        dropout = self.dropout if self.training else 0.0
        causal = mask is _CAUSAL
        mask = None if causal else mask
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)  # (B,H,t,D)
        return self.proj(y.transpose(1, 2).reshape(B, t, C))


class Block(nn.Module):
    def __init__(self, config: DALLEConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.width)
        hidden = int(config.width * config.mlp_ratio)
        self.mlp = nn.Sequential(
            PackedLinear(config.width, hidden),
            nn.GELU(approximate=ACTIVATIONS[config.activation]),
            PackedLinear(hidden, config.width),
            nn.Dropout(config.dropout),
        )
        if config.sandwich_norm:  # CogView's: each branch's output normalised before it joins the residual
            self.ln_attn_out = nn.LayerNorm(config.width)
            self.ln_mlp_out = nn.LayerNorm(config.width)
        self.sandwich = config.sandwich_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int) -> torch.Tensor:
        a = self.attn(self.ln_1(x), mask, cache, layer)
        x = x + (self.ln_attn_out(a) if self.sandwich else a)
        m = self.mlp(self.ln_2(x))
        return x + (self.ln_mlp_out(m) if self.sandwich else m)


@dataclass
class DALLELoss:
    loss: torch.Tensor  # (text_loss + loss_img_weight * image_loss) / (1 + loss_img_weight)
    text_loss: torch.Tensor
    image_loss: torch.Tensor


class DALLE(nn.Module):
    def __init__(self, config: DALLEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.text_embed = nn.Embedding(c.text_vocab + c.text_len, c.width)  # + one pad token per position
        self.text_pos = nn.Parameter(torch.randn(c.text_len, c.width) * 0.02)
        self.image_embed = nn.Embedding(c.image_vocab, c.width)
        self.image_row = nn.Parameter(torch.randn(c.image_grid, c.width) * 0.02)
        self.image_col = nn.Parameter(torch.randn(c.image_grid, c.width) * 0.02)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.ln_f = nn.LayerNorm(c.width)
        self.ln_head = nn.LayerNorm(c.width) if c.head_norm else nn.Identity()
        self.text_head = PackedLinear(c.width, c.text_vocab + c.text_len)
        self.image_head = PackedLinear(c.width, c.image_vocab)
        kinds = c.layer_attention()
        unique = sorted(set(kinds))
        masks = [attention_mask(kind, c.text_len, c.image_grid, c.conv_kernel, c.row_span) for kind in unique]
        self.register_buffer("masks", torch.stack(masks), persistent=False)  # (kinds, T, T): one of each kind used
        self.mask_of_layer = [unique.index(kind) for kind in kinds]
        self.full = [kind == "full" for kind in kinds]
        self.apply(_init)
        for block in self.blocks:  # GPT-2's scaled init of the projections into the residual stream
            nn.init.normal_(block.attn.proj.weight, std=0.02 / (2 * c.layers) ** 0.5)
            nn.init.normal_(block.mlp[2].weight, std=0.02 / (2 * c.layers) ** 0.5)

    def text_tokens(self, text: torch.Tensor) -> torch.Tensor:
        """(B, text_len) tokenizer ids -> stream ids: each pad becomes its position's own pad token."""
        c = self.config
        if text.shape[1] != c.text_len:
            raise ValueError(f"text must have {c.text_len} positions, got {text.shape[1]}")
        positions = torch.arange(c.text_len, device=text.device) + c.text_vocab
        return torch.where(text == c.pad_token_id, positions, text)

    def null_text(self, batch: int, device: torch.device) -> torch.Tensor:
        """(batch, text_len) tokenizer ids of the empty caption (all pads): the unconditional stream's text."""
        return torch.full((batch, self.config.text_len), self.config.pad_token_id, device=device, dtype=torch.long)

    def embed(self, text: torch.Tensor | None, image: torch.Tensor | None, start: int = 0) -> torch.Tensor:
        """Embeddings of the stream's positions [start, start + len): stream text ids then image token ids."""
        c, parts = self.config, []
        if text is not None:
            parts.append(self.text_embed(text) + self.text_pos[start : start + text.shape[1]])
        if image is not None:
            first = max(0, start - c.text_len)  # index of the first image token given
            n = image.shape[1]
            index = torch.arange(first, first + n, device=image.device)
            position = self.image_row[index // c.image_grid] + self.image_col[index % c.image_grid]
            parts.append(self.image_embed(image) + position)
        return torch.cat(parts, dim=1)  # (B, t, C)

    def hidden(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run the blocks on embeddings x (B, t, C) at positions [cache.length, + t); advances the cache."""
        start, t = (cache.length if cache is not None else 0), x.shape[1]
        x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, self._mask(layer, start, t), cache, layer)
        if cache is not None:
            cache.length = start + t
        return self.ln_head(self.ln_f(x))

    def _mask(self, layer: int, start: int, t: int) -> torch.Tensor | None:
        """The layer's mask rows for positions [start, start + t); None where plain causal attention is the
        same thing and SDPA's fused causal path can run (a whole stream from 0, or one new position)."""
        if self.full[layer] and (start == 0 or t == 1):
            return None if t == 1 else _CAUSAL
        return self.masks[self.mask_of_layer[layer], start : start + t, : start + t]

    def image_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.image_head(h)

    def logits(self, text: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits at every position of the stream: text (B, text_len) tokenizer ids, image (B, n)
        the first n image tokens (n <= image_len, or None) -> (B, text_len + n, text_vocab + text_len +
        image_vocab), one joint vocabulary as ruDALL-E's: the text ids with their pad tokens, then the image
        codes. For inspection and parity checks; training and sampling use the heads they need."""
        if image is not None and not 0 <= image.shape[1] <= self.config.image_len:
            raise ValueError(f"image must have at most {self.config.image_len} tokens, got {tuple(image.shape)}")
        h = self.hidden(self.embed(self.text_tokens(text), image if image is not None and image.shape[1] else None))
        return torch.cat([self.text_head(h), self.image_head(h)], dim=-1)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> DALLELoss:
        """text: (B, text_len) tokenizer ids (pads included); image: (B, image_grid, image_grid) or (B, N) codes."""
        c = self.config
        image = image.reshape(image.shape[0], -1)
        if image.shape[1] != c.image_len:
            raise ValueError(f"image must have {c.image_len} tokens ({c.image_grid}x{c.image_grid}), got {image.shape}")
        text = self.text_tokens(text)
        h = self.hidden(self.embed(text, image[:, :-1]))  # (B, T, C): the stream but its last token
        text_logits = self.text_head(h[:, : c.text_len - 1])  # predicts text tokens 1 .. L-1
        image_logits = self.image_head(h[:, c.text_len - 1 :])  # predicts image tokens 0 .. N-1
        text_loss = F.cross_entropy(text_logits.float().transpose(1, 2), text[:, 1:])
        image_loss = F.cross_entropy(image_logits.float().transpose(1, 2), image)
        loss = (text_loss + c.loss_img_weight * image_loss) / (1 + c.loss_img_weight)
        return DALLELoss(loss, text_loss, image_loss)


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
