"""Pictures to pixel tensors in [-1, 1] and back: what the generators' encoders take and their decoders give."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from pictext.images.decode import to_rgb


def to_pixels(images: Sequence[Image.Image], size: int, flip: np.ndarray | None = None) -> torch.Tensor:
    """(B, 3, size, size) in [-1, 1]: RGB (alpha over white), resized by area to a square, optionally flipped."""
    out = []
    for i, image in enumerate(images):
        image = to_rgb(image)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        array = np.asarray(image, np.float32) / 127.5 - 1.0
        if flip is not None and flip[i]:
            array = array[:, ::-1]
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(out)


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB pictures."""
    array = ((pixels.float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]
