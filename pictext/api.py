"""The public API for people with files and strings: load, tokenize, encode, classify.

Each function takes `model=`; without one it uses the default model, loaded once on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from pictext.clip import embed
from pictext.clip.embed import embed_images, inference, load, unit_rows
from pictext.clip.model import CLIP
from pictext.clip.zero_shot import DEFAULT_TEMPLATES, class_embeddings, zero_shot_probs
from pictext.images.decode import ImageInput

__all__ = ["classify", "embed_images", "encode_images", "encode_texts", "inference", "load", "tokenize", "unit_rows"]


@lru_cache(maxsize=1)
def _default_model() -> CLIP:
    return load()


def _model(model: CLIP | None) -> CLIP:
    return _default_model() if model is None else model


def tokenize(
    texts: str | Sequence[str], context_length: int | None = None, truncate: bool = False, model: CLIP | None = None
) -> torch.Tensor:
    """(N, context_length) token ids for `model` (default model if None), like `clip.tokenize`.

    Text over the context length raises unless truncate=True, which keeps EOT as the last token.
    """
    tokenizer = _model(model).tokenizer
    assert tokenizer is not None
    return tokenizer(texts, context_length=context_length, truncate=truncate)


def encode_images(
    images: ImageInput | Sequence[ImageInput],
    model: CLIP | None = None,
    batch_size: int = 64,
    precision: str | None = None,
) -> np.ndarray:
    """(N, E) normalized float32 embeddings of image paths or PIL images; ImageError names every bad input.
    precision: "auto", "fp32" or "bf16" for this call (default: the model's, see `load`)."""
    sources = [images] if isinstance(images, (str, os.PathLike)) or hasattr(images, "mode") else list(images)
    return embed.encode_images(_model(model), sources, batch_size, precision)  # type: ignore[arg-type]


def encode_texts(
    texts: str | Sequence[str], model: CLIP | None = None, truncate: bool = False, precision: str | None = None
) -> np.ndarray:
    """(N, E) normalized float32 text embeddings; text over the context raises unless truncate=True."""
    return embed.encode_texts(_model(model), [texts] if isinstance(texts, str) else list(texts), truncate, precision)


def classify(
    images: ImageInput | Sequence[ImageInput],
    labels: Sequence[str],
    model: CLIP | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    precision: str | None = None,
) -> np.ndarray:
    """(N, len(labels)) zero-shot probabilities, each row summing to 1, in the order of `labels`."""
    model = _model(model)
    with inference(model, precision):
        classes = torch.from_numpy(unit_rows(class_embeddings(model, labels, templates)))  # checks labels first
    features = torch.from_numpy(encode_images(images, model, precision=precision)).to(classes.device)
    with torch.inference_mode():
        return zero_shot_probs(model, features, classes).float().cpu().numpy()
