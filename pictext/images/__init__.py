"""Image inputs: safe decoding and CLIP preprocessing."""

from pictext.images.decode import ImageError, decode_image, load_images
from pictext.images.transforms import Preprocess

__all__ = ["ImageError", "Preprocess", "decode_image", "load_images"]
