"""pictext: multimodal networks that run on a laptop CPU and scale up without a rewrite.

>>> import pictext
>>> model = pictext.load()                       # the default model (shipped in the package)
>>> probs = pictext.classify(["a.png"], ["red circle", "blue square"], model=model)
"""

from pictext.api import classify, encode_images, encode_texts, load, tokenize
from pictext.clip.io import load_clip, save_clip
from pictext.clip.model import CLIP, CLIPConfig
from pictext.generate import generate
from pictext.published import fetch
from pictext.search import Index

__version__ = "0.1.0"
__all__ = [
    "CLIP",
    "CLIPConfig",
    "Index",
    "classify",
    "encode_images",
    "encode_texts",
    "fetch",
    "generate",
    "load",
    "load_clip",
    "save_clip",
    "tokenize",
]
