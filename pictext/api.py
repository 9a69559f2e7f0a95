"""The public API for people with files and strings: load, tokenize, encode, classify."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from pictext import hub
from pictext.clip.io import load_clip
from pictext.clip.model import CLIP
from pictext.clip.zero_shot import DEFAULT_TEMPLATES, class_embeddings, zero_shot_probs
from pictext.images.decode import ImageError, ImageInput, load_images


def load(
    name_or_path: str | os.PathLike | None = None, *, activation: str | None = None, device: str | None = None
) -> CLIP:
    """A CLIP model in eval mode: a native file, a foreign checkpoint, a local model name, or the default (None)."""
    model = load_clip(hub.resolve(name_or_path or hub.DEFAULT_MODEL), activation=activation)
    return model.to(device) if device else model


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


def embed_images(
    model: CLIP, sources: Sequence[ImageInput], batch_size: int = 64
) -> tuple[list[int], np.ndarray, list[ImageError]]:
    """(indices of good inputs, their normalized float32 embeddings, errors for the bad ones)."""
    device = model.text_projection.device
    indices, chunks, errors = [], [], []
    for start in range(0, len(sources), batch_size):
        decoded, bad = load_images(sources[start : start + batch_size])
        errors.extend(bad)
        if not decoded:
            continue
        pixels = model.preprocess.batch([image for _, image in decoded]).to(device)
        with torch.inference_mode():
            chunks.append(model.encode_image(pixels, normalize=True).float().cpu().numpy())
        indices.extend(start + i for i, _ in decoded)
    dim = model.config.embed_dim
    return indices, (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), errors


def encode_images(
    images: ImageInput | Sequence[ImageInput], model: CLIP | None = None, batch_size: int = 64
) -> np.ndarray:
    """(N, E) normalized float32 embeddings of image paths or PIL images; ImageError names every bad input."""
    sources = [images] if isinstance(images, (str, os.PathLike)) or hasattr(images, "mode") else list(images)
    if not sources:
        raise ValueError("no images given")
    _, features, errors = embed_images(_model(model), sources, batch_size)  # type: ignore[arg-type]
    if errors:
        raise ImageError(", ".join(str(e.source) for e in errors), "; ".join(e.reason for e in errors))
    return features


def encode_texts(texts: str | Sequence[str], model: CLIP | None = None, truncate: bool = False) -> np.ndarray:
    """(N, E) normalized float32 text embeddings; text over the context raises unless truncate=True."""
    model = _model(model)
    tokens = tokenize(texts, truncate=truncate, model=model).to(model.text_projection.device)
    with torch.inference_mode():
        return model.encode_text(tokens, normalize=True).float().cpu().numpy()


def classify(
    images: ImageInput | Sequence[ImageInput],
    labels: Sequence[str],
    model: CLIP | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> np.ndarray:
    """(N, len(labels)) zero-shot probabilities, each row summing to 1, in the order of `labels`."""
    model = _model(model)
    classes = class_embeddings(model, labels, templates)  # validates labels before any image work
    features = torch.from_numpy(encode_images(images, model)).to(classes.device)
    with torch.inference_mode():
        return zero_shot_probs(model, features, classes).float().cpu().numpy()
