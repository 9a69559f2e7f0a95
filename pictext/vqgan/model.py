"""VQGAN: a convolutional autoencoder whose latent grid is quantized to a learned codebook.

Esser, Rombach, Ommer, "Taming Transformers for High-Resolution Image Synthesis" (2021),
https://arxiv.org/abs/2012.09841; reference code: taming-transformers (`taming/models/vqgan.py`,
`taming/modules/diffusionmodules/model.py`). The encoder and decoder follow that code block for block
(GroupNorm(32), swish, ResNet blocks, single-head attention at chosen resolutions, asymmetric-pad strided
downsampling, nearest upsampling), and parameters carry the same names, so a taming checkpoint loads by name
(`convert.py`). Images are (B, 3, H, W) in [-1, 1]; H and W are multiples of `config.factor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pictext.config import SIDE, WIDTH
from pictext.vqgan.quantize import GumbelQuantizer, Quantized, VectorQuantizer


@dataclass(frozen=True)
class VQGANConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "resolution": SIDE,
        "in_channels": (1, 64),
        "out_ch": (1, 64),
        "ch": WIDTH,
        "ch_mult": (1, 64),
        "num_res_blocks": (1, 16),
        "attn_resolutions": SIDE,
        "z_channels": WIDTH,
        "embed_dim": WIDTH,
        "n_embed": (1, 1 << 18),
        "restart_after": (0, 1 << 31),
    }
    resolution: int = 64  # training image side; inference takes any multiple of `factor`
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 64  # base width; widths are ch * ch_mult[level], multiples of 32 (GroupNorm's groups)
    ch_mult: tuple[int, ...] = (1, 1, 2, 2)  # one level per entry, a 2x downsampling between levels
    num_res_blocks: int = 1  # ResNet blocks per level (the decoder has one more)
    attn_resolutions: tuple[int, ...] = (8,)  # feature-map sides that get a self-attention block
    dropout: float = 0.0
    z_channels: int = 64  # encoder output channels
    embed_dim: int = 64  # codebook vector size
    n_embed: int = 512  # codebook entries
    quantizer: str = "vq"  # "vq": nearest code, straight-through; "gumbel": Gumbel-softmax relaxation
    beta: float = 0.25  # weight of the commitment (legacy: codebook) term
    legacy: bool = True  # taming's beta placement (see VectorQuantizer)
    ema_decay: float = 0.0  # > 0: EMA codebook instead of a learned one
    restart_after: int = 0  # > 0: restart codes unused for this many training steps
    kl_weight: float = 5e-4  # Gumbel only: weight of the KL to the uniform prior
    # the decoder draws 4 * out_ch channels, one level of Haar wavelet coefficients, and its picture is their
    # inverse transform at twice its side (the Sber VQGAN's DWT decoder: 256 px codes drawn at 512 px)
    wavelet: bool = False

    def __post_init__(self) -> None:
        if self.quantizer not in ("vq", "gumbel"):
            raise ValueError(f"quantizer must be 'vq' or 'gumbel', got {self.quantizer!r}")
        widths = [self.ch * m for m in self.ch_mult]
        if self.ch <= 0 or any(w % 32 for w in widths):
            raise ValueError(f"widths ch * ch_mult = {widths} must be positive multiples of 32 (GroupNorm groups)")
        if self.resolution % self.factor:
            raise ValueError(f"resolution {self.resolution} is not a multiple of the downsampling factor {self.factor}")

    @property
    def factor(self) -> int:
        """Pixels per latent position along each side."""
        return 2 ** (len(self.ch_mult) - 1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, 1x1 convolutions for q, k, v and the output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).reshape(b, 1, c, h * w).transpose(2, 3) for f in (self.q, self.k, self.v))  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming pads right and bottom only


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution: ResNet blocks, attention after each where the resolution asks, then a resampling."""

    def __init__(self, blocks: list[ResnetBlock], attn: list[AttnBlock], resample: nn.Module | None, name: str):
        super().__init__()
        self.block, self.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
        if resample is not None:
            setattr(self, name, resample)  # taming's names: down[i].downsample, up[i].upsample
        self.resample_name = name if resample is not None else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return getattr(self, self.resample_name)(h) if self.resample_name else h


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        widths = [cfg.ch * m for m in (1, *cfg.ch_mult)]
        res, levels = cfg.resolution, []
        for i in range(len(cfg.ch_mult)):
            blocks = [ResnetBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1], cfg.dropout)
                      for j in range(cfg.num_res_blocks)]  # fmt: skip
            attn = [AttnBlock(widths[i + 1]) for _ in blocks] if res in cfg.attn_resolutions else []
            last = i == len(cfg.ch_mult) - 1
            levels.append(_Level(blocks, attn, None if last else Downsample(widths[i + 1]), "downsample"))
            res = res if last else res // 2
        self.down = nn.ModuleList(levels)
        self.mid = _Middle(widths[-1], cfg.dropout)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, z_channels, H/f, W/f)
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        res = cfg.resolution // cfg.factor
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, padding=1)
        self.mid = _Middle(widths[-1], cfg.dropout)
        levels: list[_Level] = []
        block_in = widths[-1]
        for i in reversed(range(len(cfg.ch_mult))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, widths[i], cfg.dropout))
                block_in = widths[i]
            attn = [AttnBlock(widths[i]) for _ in blocks] if res in cfg.attn_resolutions else []
            levels.insert(0, _Level(blocks, attn, Upsample(widths[i]) if i else None, "upsample"))
            res = res * 2 if i else res
        self.up = nn.ModuleList(levels)  # up[0] is the full resolution, as in taming
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], cfg.out_ch * (4 if cfg.wavelet else 1), 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_channels, h, w) -> (B, 3, h*f, w*f)
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def inverse_haar(x: torch.Tensor) -> torch.Tensor:
    """(B, 4C, h, w) -> (B, C, 2h, 2w): one level of the inverse 2-D Haar transform, the channels laid out as the
    Sber VQGAN's DWT decoder gives them to pytorch_wavelets' DWTInverse (wave "db1"): the C low-pass ones, then
    for each of the C its LH, HL and HH. Written out (four sums) rather than through pytorch_wavelets or
    PyWavelets: a whole dependency for one fixed 2x2 filter."""
    b, c4, h, w = x.shape
    c = c4 // 4
    ll = x[:, :c]
    lh, hl, hh = x[:, c:].reshape(b, c, 3, h, w).unbind(2)
    rows = (ll + lh, ll - lh)  # the column (height) synthesis: even and odd rows, before the 1/2
    cols = (hl + hh, hl - hh)
    quad = torch.stack([torch.stack([rows[r] + cols[r], rows[r] - cols[r]], -1) for r in (0, 1)], 3)  # (b,c,h,2,w,2)
    return quad.reshape(b, c, 2 * h, 2 * w) / 2


@dataclass
class VQGANOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W) in about [-1, 1]
    quantized: Quantized


class VQGAN(nn.Module):
    """Encoder -> 1x1 conv -> quantizer -> 1x1 conv -> decoder. `encode`/`decode` split it for generation:
    VQGAN+CLIP optimizes the (B, embed_dim, h, w) latent that `decode` takes."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        if config.quantizer == "gumbel":
            self.quantize: VectorQuantizer | GumbelQuantizer = GumbelQuantizer(
                in_channels=config.embed_dim,
                n_embed=config.n_embed,
                embed_dim=config.embed_dim,
                kl_weight=config.kl_weight,
            )
        else:
            self.quantize = VectorQuantizer(
                n_embed=config.n_embed,
                embed_dim=config.embed_dim,
                beta=config.beta,
                legacy=config.legacy,
                ema_decay=config.ema_decay,
                restart_after=config.restart_after,
            )

    @property
    def codebook(self) -> torch.Tensor:  # (n_embed, embed_dim)
        q = self.quantize
        return q.embed.weight if isinstance(q, GumbelQuantizer) else q.embedding.weight

    def encode(self, x: torch.Tensor) -> Quantized:  # (B, 3, H, W) -> quantized (B, embed_dim, H/f, W/f)
        self._check_size(x)
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:  # (B, embed_dim, h, w) -> (B, 3, h*f, w*f), 2x if wavelet
        out = self.decoder(self.post_quant_conv(z_q))
        return inverse_haar(out) if self.config.wavelet else out

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:  # (B, h, w) codes -> (B, 3, h*f, w*f)
        return self.decode(self.quantize.lookup(indices))

    def forward(self, x: torch.Tensor) -> VQGANOutput:
        quantized = self.encode(x)
        return VQGANOutput(self.decode(quantized.z_q), quantized)

    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight: the adaptive GAN weight compares gradient norms here."""
        return self.decoder.conv_out.weight

    def _check_size(self, x: torch.Tensor) -> None:
        f = self.config.factor
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"VQGAN takes (B, {self.config.in_channels}, H, W) with H and W multiples of {f}; got {tuple(x.shape)}"
            )
