"""Caption-safe augmentation: what a caption says about place and colour stays true, and it is reproducible."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from pictext.data.augment import Augment


def _scene() -> Image.Image:
    """A red square on the left and a blue disc on the right, on white (a caption: "a red square left of ...")."""
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 24, 22, 38), fill=(220, 30, 30))
    draw.ellipse((42, 24, 56, 38), fill=(30, 30, 220))
    return image


def _mass(pixels: np.ndarray, channel: int) -> np.ndarray:
    other = [c for c in range(3) if c != channel]
    return (pixels[..., channel] > 150) & (pixels[..., other] < 100).all(-1)


def test_places_and_hues_survive_and_the_same_rng_gives_the_same_picture():
    augment = Augment()
    for seed in range(40):
        out = np.asarray(augment(_scene(), np.random.default_rng(seed)), dtype=np.float32)
        red, blue = _mass(out, 0), _mass(out, 2)
        assert red.sum() > 40 and blue.sum() > 40, seed  # both still there, neither recoloured away
        assert np.nonzero(red)[1].mean() < np.nonzero(blue)[1].mean(), seed  # red still left of blue: no flip
        for mask in (red, blue):
            hue = colorsys.rgb_to_hsv(*(out[mask].mean(0) / 255))[0]
            assert min(hue, 1 - hue) < 0.05 or abs(hue - 2 / 3) < 0.05, (seed, hue)  # red stays red, blue blue
        corner = out[:3, :3].reshape(-1, 3).mean(0)
        assert corner.min() > 180, seed  # a white background may turn pale, never a colour
    a = augment(_scene(), np.random.default_rng(3))
    assert np.array_equal(np.asarray(a), np.asarray(augment(_scene(), np.random.default_rng(3))))
    assert not np.array_equal(np.asarray(a), np.asarray(augment(_scene(), np.random.default_rng(4))))
