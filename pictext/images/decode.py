"""Decode image files into RGB `PIL.Image`s safely and correctly.

EXIF orientation is applied; transparency is composited on white (what a viewer
shows, not the arbitrary colour under transparent pixels); 16-bit images are
scaled, not clipped; a pixel limit stops decompression bombs. A bad file raises
`ImageError` naming it; `load_images` keeps going past bad files.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pictext.errors import PictextError

MAX_PIXELS = 100_000_000  # 10k x 10k; above this decoding is refused
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}

ImageInput = str | os.PathLike | Image.Image


class ImageError(PictextError, ValueError):
    def __init__(self, source: object, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


class ImageTooLargeError(ImageError):
    """A picture with more pixels than the limit it was decoded under (a decompression-bomb guard)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha over white, palette expanded, 16/32-bit scaled to 8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode_image(source: ImageInput, max_pixels: int = MAX_PIXELS, draft: int | None = None) -> Image.Image:
    """Open `source` (path or PIL image) as an RGB image, or raise ImageError saying what is wrong.

    draft=S lets a JPEG decode at a reduced scale (1/2 to 1/8, in the DCT) while both sides stay >= S: several
    times faster for photos much larger than the model's input, and slightly different pixels after resizing.
    """
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    path = Path(source)
    if not path.exists():
        raise ImageError(path, "no such file")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file")
    return _decode(path, path, max_pixels, draft)


def decode_bytes(data: bytes, name: object, max_pixels: int = MAX_PIXELS, draft: int | None = None) -> Image.Image:
    """Decode an encoded image held in memory (a file already read, an upload); errors name `name`; `draft` as
    `decode_image`'s."""
    if not data:
        raise ImageError(name, "empty file")
    return _decode(io.BytesIO(data), name, max_pixels, draft)


def _decode(fp: Path | io.BytesIO, name: object, max_pixels: int, draft: int | None = None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            with Image.open(fp) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(name, f"{width}x{height} pixels is over the limit of {max_pixels}")
                if draft is not None and image.format == "JPEG":
                    image.draft("RGB", (draft, draft))
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses over twice its own limit before we can look
        raise ImageTooLargeError(
            name, f"too many pixels: over the limit of {max_pixels} (a decompression-bomb guard)"
        ) from e
    except UnidentifiedImageError as e:
        raise ImageError(name, f"not a readable image ({e.__class__.__name__})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(name, f"corrupt or truncated image ({e})") from e


def load_images(sources: Iterable[ImageInput]) -> tuple[list[tuple[int, Image.Image]], list[ImageError]]:
    """Decode each source; returns ([(index, image)], [errors]) so a batch goes on past bad files."""
    images, errors = [], []
    for i, source in enumerate(sources):
        try:
            images.append((i, decode_image(source)))
        except ImageError as e:
            errors.append(e)
    return images, errors


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand directories (recursively, hidden entries skipped) into image files, sorted; files pass through."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    Path(root) / f
                    for f in sorted(files)
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
                )
        else:
            found.append(p)
    return found
