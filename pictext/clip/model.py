"""CLIP, top to bottom: image tower (ViT or ModifiedResNet), text tower, shared embedding space.

Paper: "Learning Transferable Visual Models From Natural Language Supervision",
Radford et al. 2021. Reference code: github.com/openai/CLIP (model.py) and
github.com/mlfoundations/open_clip. Parameter names follow OpenAI's layout so
that OpenAI and OpenCLIP weights load without renaming.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pictext.config import COUNT, HEADS, SIDE, TOKEN_ID, VOCAB, WIDTH
from pictext.errors import UsageError
from pictext.images.transforms import Preprocess
from pictext.nn import Transformer
from pictext.nn.bert import BertEncoder
from pictext.nn.transformer import ACTIVATIONS
from pictext.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class VisionConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "image_size": SIDE,
        "layers": COUNT,
        "width": WIDTH,
        "patch_size": SIDE,
        "head_width": WIDTH,
    }
    image_size: int = 224  # input resolution in pixels (square)
    layers: int | tuple[int, ...] = 12  # int: ViT depth; 4-tuple: ModifiedResNet blocks per stage
    width: int = 768  # ViT width, or ResNet stem width (64 for RN50)
    patch_size: int | None = 32  # ViT patch size; None for ModifiedResNet
    head_width: int = 64  # channels per attention head
    mlp_ratio: float = 4.0

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.layers, tuple)


@dataclass(frozen=True)
class TextConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "context_length": SIDE,
        "vocab_size": VOCAB,
        "width": WIDTH,
        "heads": HEADS,
        "layers": COUNT,
        "eot_token_id": TOKEN_ID,
        "pad_token_id": TOKEN_ID,
    }
    context_length: int = 77  # tokens per text, SOT and EOT included
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    eot_token_id: int = 49407  # the text feature is read at the first EOT token ("clip" towers)
    kind: str = "clip"  # "clip": causal, read at EOT (OpenAI); "bert": bidirectional, mean-pooled (LiT, lit.py)
    pad_token_id: int = 0  # "bert" towers mask padding out of attention and pooling


@dataclass(frozen=True)
class CLIPConfig:
    LIMITS: ClassVar[dict] = {"embed_dim": WIDTH}  # pictext.config: bounds a file's config must keep
    embed_dim: int = 512  # size of the shared image-text embedding
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    activation: str = "quick_gelu"  # "quick_gelu" (OpenAI) or "gelu" (most OpenCLIP/LAION models)

    def __post_init__(self) -> None:
        if self.text.kind not in ("clip", "bert"):
            raise ValueError(f"text tower kind must be 'clip' or 'bert', got {self.text.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        v = self.vision
        if v.is_resnet and len(v.layers) != 4:  # type: ignore[arg-type]
            raise ValueError(f"ModifiedResNet needs 4 stage depths, got {v.layers}")
        if not v.is_resnet and (v.patch_size is None or v.image_size % v.patch_size):
            raise ValueError(f"ViT image_size {v.image_size} must be a multiple of patch_size {v.patch_size}")


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int, activation: str) -> None:
        super().__init__()
        width, patch = cfg.width, cfg.patch_size
        assert isinstance(cfg.layers, int) and patch is not None
        grid = cfg.image_size // patch
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(
            width=width,
            layers=cfg.layers,
            heads=width // cfg.head_width,
            mlp_ratio=cfg.mlp_ratio,
            activation=activation,
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, E)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, N, C) patch tokens
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, N+1, C)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class Bottleneck(nn.Module):
    """ResNet bottleneck with anti-aliased downsampling (avg-pool before the strided path)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                        ("1", nn.BatchNorm2d(out)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class AttentionPool2d(nn.Module):
    """Pools a feature map with one attention query: the mean token attends to all positions."""

    def __init__(self, spatial: int, width: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial**2 + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, out_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, E)
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, HW+1, C)
        B, T, C = x.shape
        H = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T', C) -> (B, H, T', C/H)
            return t.view(B, t.shape[1], H, C // H).transpose(1, 2)

        q = split(self.q_proj(x[:, :1]))
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, C/H)
        return self.c_proj(y.transpose(1, 2).reshape(B, C))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet: 3-conv stem, anti-aliased strides, attention pooling instead of global average."""

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        assert isinstance(cfg.layers, tuple)
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w // 2)
        self.conv2 = nn.Conv2d(w // 2, w // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w // 2)
        self.conv3 = nn.Conv2d(w // 2, w, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = w
        self.layer1 = self._stage(w, cfg.layers[0])
        self.layer2 = self._stage(w * 2, cfg.layers[1], stride=2)
        self.layer3 = self._stage(w * 4, cfg.layers[2], stride=2)
        self.layer4 = self._stage(w * 8, cfg.layers[3], stride=2)
        self.attnpool = AttentionPool2d(cfg.image_size // 32, w * 32, w * 32 // cfg.head_width, embed_dim)

    def _stage(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, E)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu(self.bn3(self.conv3(x))))  # (B, w, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 32w, H/32, W/32)
        return self.attnpool(x)


_TEXT_TOWER = ("text.", "token_embedding.", "positional_embedding", "transformer.", "ln_final.")
_IMAGE_PROJECTIONS = ("visual.proj", "visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.bias")


def _is_text_tower(name: str) -> bool:
    return name.startswith(_TEXT_TOWER)


class CLIP(nn.Module):
    """Image and text towers projected into one space; `logit_scale` is the learned inverse temperature."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.preprocess = Preprocess(image_size=config.vision.image_size)  # replaced by what a checkpoint records
        self.tokenizer: Tokenizer | None = None  # set by pictext.load; None for a bare architecture
        self.precision = "fp32"  # what pictext.api and Index run it in ("fp32" or "bf16"); pictext.load sets it
        self.text_source: dict | None = None  # a pretrained text tower installed as a package (lit.py): its name, hash
        self.has_image_tower = True  # False: a text encoder alone (Karlo's), its image tower a stand-in that refuses
        t = config.text
        if config.vision.is_resnet:
            self.visual: nn.Module = ModifiedResNet(config.vision, config.embed_dim)
        else:
            self.visual = VisionTransformer(config.vision, config.embed_dim, config.activation)
        if t.kind == "bert":  # BERT's activation is exact GELU whatever `activation` says for the image tower
            self.text = BertEncoder(
                vocab_size=t.vocab_size,
                context_length=t.context_length,
                width=t.width,
                heads=t.heads,
                layers=t.layers,
                hidden=int(t.width * t.mlp_ratio),
                pad_token_id=t.pad_token_id,
            )
        else:
            self.token_embedding = nn.Embedding(t.vocab_size, t.width)
            self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
            self.transformer = Transformer(
                width=t.width, layers=t.layers, heads=t.heads, mlp_ratio=t.mlp_ratio, activation=config.activation
            )
            self.ln_final = nn.LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.empty(t.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.init_weights()

    def init_weights(self) -> None:
        t = self.config.text
        if t.kind == "clip":  # this order keeps seeded models (and the numbers in README) as they were
            nn.init.normal_(self.token_embedding.weight, std=0.02)
            nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=t.width**-0.5)
        if t.kind == "clip":
            self.transformer.init_weights()
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.init_weights()
        else:
            pool = self.visual.attnpool
            for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(proj.weight, std=pool.c_proj.in_features**-0.5)
            for name, p in self.visual.named_parameters():
                if name.startswith("layer") and name.endswith("bn3.weight"):  # each residual branch starts as
                    nn.init.zeros_(p)  # identity; the stem's own bn3 stays at one, or the tower starts dead

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:  # (B, 3, H, W) -> (B, E)
        if not self.has_image_tower:
            raise UsageError("this CLIP is a text encoder without an image encoder (a Karlo text-to-image folder); "
                             "pictures need one, e.g. kakaobrain/karlo-v1-alpha-image-variations")  # fmt: skip
        features = self.visual(pixels.to(self.dtype))
        return F.normalize(features, dim=-1) if normalize else features

    def text_tower(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, text width), before projection
        if self.config.text.kind == "bert":
            self._check_tokens(tokens)
            return self.text(tokens)
        x, real = self.text_sequence(tokens)
        eot = real.sum(dim=-1) - 1  # the first EOT (position 0 if none): the last position marked real
        return x[torch.arange(x.shape[0], device=x.device), eot]

    def text_sequence(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, T, text width) every token's final hidden state, (B, T) True at the text's own tokens): what a
        model conditioned on the whole caption (unCLIP's prior) reads."""
        t = self.config.text
        self._check_tokens(tokens)
        if t.kind == "bert":
            return self.text.sequence(tokens)
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:T].to(self.dtype)  # (B, T, C)
        x = self.ln_final(self.transformer(x, causal=True))
        eot = (tokens == t.eot_token_id).int().argmax(dim=-1)  # first EOT; position 0 if none
        real = torch.arange(T, device=tokens.device)[None, :] <= eot[:, None]
        return x, real

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        t = self.config.text
        if tokens.ndim != 2 or tokens.shape[1] > t.context_length:
            raise ValueError(f"token ids must be (batch, <= {t.context_length}), got {tuple(tokens.shape)}")

    def project_text(self, pooled: torch.Tensor, normalize: bool = False) -> torch.Tensor:  # (B, width) -> (B, E)
        features = pooled @ self.text_projection
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:  # (B, T) -> (B, E)
        return self.project_text(self.text_tower(tokens), normalize)

    def text_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The text tower's own parameters, projection excluded: what LiT locks."""
        return [(n, p) for n, p in self.named_parameters() if _is_text_tower(n)]

    def image_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The image tower's own parameters, its final projection excluded."""
        return [(n, p) for n, p in self.named_parameters() if n.startswith("visual.") and n not in _IMAGE_PROJECTIONS]

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Image-to-text logits (B_img, B_txt), scaled by exp(logit_scale) clamped at 100."""
        image = self.encode_image(pixels, normalize=True)
        text = self.encode_text(tokens, normalize=True)
        return self.logit_scale.exp().clamp(max=100) * image @ text.T
