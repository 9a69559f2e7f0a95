"""Preprocessing equals open_clip's; decoding handles orientation, modes, and bad files with clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from pictext.images import ImageError, Preprocess, decode_image, load_images


@pytest.fixture(scope="module")
def open_clip_preprocess():
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    return preprocess


@pytest.mark.parametrize(
    "size,mode",
    [
        ((224, 224), "RGB"),
        ((300, 200), "RGB"),
        ((200, 451), "RGB"),
        ((100, 80), "RGB"),
        ((640, 480), "L"),
        ((225, 224), "L"),
        ((1000, 7), "RGB"),
        ((33, 999), "RGB"),
    ],
)
def test_preprocess_equals_open_clip(open_clip_preprocess, size, mode):
    rng = np.random.default_rng(sum(size))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    diff = (Preprocess()(image) - open_clip_preprocess(image)).abs().max().item()
    assert diff <= 1e-6


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_modes_convert_correctly(tmp_path):
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(transparent).getpixel((0, 0)) == (255, 255, 255)  # over white, not black
    la = Image.new("LA", (4, 4), (0, 0))
    assert decode_image(la).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    assert decode_image(palette).getpixel((0, 0)) == (10, 200, 30)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert decode_image(cmyk).getpixel((0, 0)) == (255, 0, 0)
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    sixteen.save(tmp_path / "16.png")
    assert decode_image(tmp_path / "16.png").getpixel((0, 0)) == (255, 255, 255)
    half = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert decode_image(half).getpixel((0, 0)) == (128, 128, 128)  # scaled, not clipped to 255


def test_bad_files_name_themselves(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="empty file"):
        decode_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(tmp_path / "text.jpg")
    with pytest.raises(ImageError, match="no such file"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(tmp_path / "truncated.png")
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(good, max_pixels=10)
    names = ["empty.png", "good.png", "text.jpg", "truncated.png"]
    images, errors = load_images([tmp_path / n for n in names])
    assert [i for i, _ in images] == [1]
    assert sorted(e.source.name for e in errors) == ["empty.png", "text.jpg", "truncated.png"]


def test_draft_decoding_shrinks_jpegs_but_never_below_the_model_input(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (10, 200, 30)).save(path, quality=90)
    small = decode_image(path, draft=64)
    assert min(small.size) >= 64 and small.size[0] < 640
    assert decode_image(path).size == (640, 480)
    assert np.abs(np.asarray(small, float).mean((0, 1)) - (10, 200, 30)).max() < 3
    png = tmp_path / "photo.png"
    Image.new("RGB", (640, 480)).save(png)
    assert decode_image(png, draft=64).size == (640, 480)  # only JPEG has a draft mode


def test_the_pixel_limit_is_the_documented_one(tmp_path):
    from pictext.images.decode import MAX_PIXELS

    under = tmp_path / "under.png"
    Image.new("1", (9_500, 9_500)).save(under)  # 90 Mpixel: over PIL's own warning level, under pictext's 100 M
    assert decode_image(under).size == (9_500, 9_500)
    over = tmp_path / "over.png"
    Image.new("1", (10_001, 10_000)).save(over)
    with pytest.raises(ImageError, match=f"over the limit of {MAX_PIXELS}"):
        decode_image(over)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14_000, 14_000)).save(bomb)  # past twice PIL's limit: PIL refuses before we can look
    with pytest.raises(ImageError, match=f"over the limit of {MAX_PIXELS}"):
        decode_image(bomb)
