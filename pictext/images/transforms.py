"""CLIP's preprocessing without torchvision: bicubic shortest-side resize, center crop, normalize.

Matches open_clip's eval transform (torchvision Resize + CenterCrop + ToTensor +
Normalize on PIL images) to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from pictext.config import SIDE

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "squash", "crop")


@dataclass(frozen=True)
class Preprocess:
    LIMITS: ClassVar[dict] = {"image_size": SIDE}  # pictext.config: bounds a file's config must keep
    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    # "shortest": resize the short side, then center crop (bicubic: OpenAI's); "squash": resize to a square;
    # "crop": the centred square of the short side, then resize (bilinear: ruCLIP's RandomResizedCrop with scale
    # and ratio 1, which always falls back to that crop)
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")

    def resize_crop(self, image: Image.Image) -> Image.Image:
        s = self.image_size
        if self.resize_mode == "squash":
            return image.resize((s, s), Image.Resampling.BICUBIC)
        if self.resize_mode == "crop":
            w, h = image.size
            side = min(w, h)
            top, left = (h - side) // 2, (w - side) // 2  # torchvision's fallback crop: floor division
            square = image.crop((left, top, left + side, top + side))  # crop first: a resize's filter stays inside
            return square.resize((s, s), Image.Resampling.BILINEAR)
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)  # torchvision's rounding, for parity
        image = image.resize((s, new_long) if w <= h else (new_long, s), Image.Resampling.BICUBIC)
        return center_crop(image, s)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:  # -> (3, S, S) float32, normalized
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub(mean).div(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize_crop(image))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:  # -> (B, 3, S, S)
        return torch.stack([self(im) for im in images])


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Center crop to size x size, padding with black first when the image is smaller (as torchvision does)."""
    w, h = image.size
    if w < size or h < size:
        padded = Image.new(image.mode, (max(w, size), max(h, size)))
        padded.paste(image, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        image, (w, h) = padded, padded.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))
