"""Named CLIP architectures, as data. The OpenAI ones use QuickGELU, as they were trained."""

from __future__ import annotations

import dataclasses

from pictext.clip.model import CLIPConfig, TextConfig, VisionConfig


def _text(width: int = 512, layers: int = 12) -> TextConfig:
    return TextConfig(width=width, heads=width // 64, layers=layers)


def _vit(embed: int, size: int, layers: int, width: int, patch: int, text: TextConfig) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(image_size=size, layers=layers, width=width, patch_size=patch), text)


def _rn(embed: int, size: int, layers: tuple[int, ...], width: int, text: TextConfig) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(image_size=size, layers=layers, width=width, patch_size=None), text)


_TINY_TEXT = TextConfig(context_length=16, vocab_size=512, width=64, heads=1, layers=2, eot_token_id=511)

CLIP_CONFIGS: dict[str, CLIPConfig] = {
    "RN50": _rn(1024, 224, (3, 4, 6, 3), 64, _text()),
    "RN101": _rn(512, 224, (3, 4, 23, 3), 64, _text()),
    "RN50x4": _rn(640, 288, (4, 6, 10, 6), 80, _text(640)),
    "RN50x16": _rn(768, 384, (6, 8, 18, 8), 96, _text(768)),
    "RN50x64": _rn(1024, 448, (3, 15, 36, 10), 128, _text(1024)),
    "ViT-B/32": _vit(512, 224, 12, 768, 32, _text()),
    "ViT-B/16": _vit(512, 224, 12, 768, 16, _text()),
    "ViT-L/14": _vit(768, 224, 24, 1024, 14, _text(768)),
    "ViT-L/14-336": _vit(768, 336, 24, 1024, 14, _text(768)),
    # Tiny configs: seconds on a CPU, for tests and for training on small data.
    "tiny-vit": _vit(64, 32, 2, 64, 8, _TINY_TEXT),
    "tiny-rn": _rn(64, 64, (1, 1, 1, 1), 16, _TINY_TEXT),
}


def get_config(name: str, **changes: object) -> CLIPConfig:
    """A named config, e.g. `get_config("ViT-B/32")`; `ViT-B-32` spellings work too. Keyword changes override fields."""
    by_slug = {k.replace("/", "-").lower(): k for k in CLIP_CONFIGS}
    key = by_slug.get(name.replace("/", "-").lower())
    if key is None:
        raise KeyError(f"unknown CLIP architecture {name!r}; known: {', '.join(CLIP_CONFIGS)}")
    return dataclasses.replace(CLIP_CONFIGS[key], **changes)  # type: ignore[arg-type]
