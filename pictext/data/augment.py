"""Augmentation that keeps a caption true: crops, margins, pale backgrounds, blur and noise, never a flip or a
change of hue, because captions here name directions ("a red circle left of a blue square") and colours.

Written here rather than taken from torchvision or kornia: their pipelines are built from flips and colour
jitter, which are exactly what these captions forbid, and what is left is a few lines of PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Augment:
    crop: float = 0.85  # a crop keeps at least this share of each side (then is resized back)
    margin: float = 0.25  # or the picture is drawn smaller, inside a margin of up to this share of a side
    background: float = 0.5  # probability of a pale tint in place of a white background
    blur: float = 0.2  # probability of a slight Gaussian blur
    noise: float = 0.02  # standard deviation of pixel noise, as a share of the 0-255 range

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A changed copy of `image` (RGB); the same `rng` state gives the same picture."""
        image = image.convert("RGB")
        w, h = image.size
        if rng.random() < 0.5:
            side = rng.uniform(self.crop, 1.0)
            cw, ch = max(1, round(w * side)), max(1, round(h * side))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            image = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
        else:
            grow = 1.0 + rng.uniform(0.0, self.margin)
            cw, ch = round(w * grow), round(h * grow)
            canvas = Image.new("RGB", (cw, ch), image.getpixel((0, 0)))  # the corner's colour: the background
            canvas.paste(image, (int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))))
            image = canvas.resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.asarray(image, dtype=np.float32)
        if rng.random() < self.background:
            tint = 255.0 * (1.0 - rng.uniform(0.0, 0.15, size=3)) * rng.uniform(0.85, 1.0)  # pale: near grey-white
            white = np.clip((pixels.min(-1, keepdims=True) - 235.0) / 20.0, 0.0, 1.0)  # 1 on white, 0 below 235
            pixels = pixels * (1.0 - white) + tint * white
        if self.noise:
            pixels = pixels + rng.normal(0.0, 255.0 * self.noise, size=pixels.shape)
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
        if rng.random() < self.blur:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
        return image
