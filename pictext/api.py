"""The public API for people with files and strings: load, tokenize, encode, classify."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from pictext import hub
from pictext.clip.io import load_clip
from pictext.clip.model import CLIP
from pictext.clip.zero_shot import DEFAULT_TEMPLATES, class_embeddings, zero_shot_probs
from pictext.images.decode import ImageError, ImageInput, load_images
from pictext.training import autocast, resolve_precision

logger = logging.getLogger(__name__)


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    activation: str | None = None,
    device: str | None = None,
    precision: str = "auto",
) -> CLIP:
    """A CLIP model in eval mode: a native file, a foreign checkpoint, a local model name, or the default (None).

    precision: what encode_images, encode_texts, classify and Index run it in: "fp32", "bf16" (autocast), or
    "auto": bf16 where the CPU (AVX512-BF16 or AMX) or GPU multiplies bf16 natively, fp32 elsewhere. The
    weights stay float32 either way; bf16 embeddings agree with fp32 to a cosine of about 0.9999.
    """
    model = load_clip(hub.resolve(name_or_path or hub.DEFAULT_MODEL), activation=activation)
    model = model.to(device) if device else model
    model.precision = resolve_precision(precision, model.text_projection.device)
    logger.info("CLIP inference in %s", model.precision)
    return model


def unit_rows(features: torch.Tensor) -> np.ndarray:
    """(N, E) float32 rows of length 1: normalized in float32, also after a bf16 forward pass."""
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


@contextmanager
def inference(model: CLIP, precision: str | None = None) -> Iterator[None]:
    """No gradients, and bf16 autocast when `precision` (default: the model's) says so."""
    device = model.text_projection.device
    chosen = resolve_precision(precision, device) if precision else model.precision
    with torch.inference_mode(), autocast(chosen, device):
        yield


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
    model: CLIP, sources: Sequence[ImageInput], batch_size: int = 64, precision: str | None = None
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
        with inference(model, precision):
            chunks.append(unit_rows(model.encode_image(pixels)))
        indices.extend(start + i for i, _ in decoded)
    dim = model.config.embed_dim
    return indices, (np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)), errors


def encode_images(
    images: ImageInput | Sequence[ImageInput],
    model: CLIP | None = None,
    batch_size: int = 64,
    precision: str | None = None,
) -> np.ndarray:
    """(N, E) normalized float32 embeddings of image paths or PIL images; ImageError names every bad input.
    precision: "auto", "fp32" or "bf16" for this call (default: the model's, see `load`)."""
    sources = [images] if isinstance(images, (str, os.PathLike)) or hasattr(images, "mode") else list(images)
    if not sources:
        raise ValueError("no images given")
    _, features, errors = embed_images(_model(model), sources, batch_size, precision)  # type: ignore[arg-type]
    if errors:
        raise ImageError(", ".join(str(e.source) for e in errors), "; ".join(e.reason for e in errors))
    return features


def encode_texts(
    texts: str | Sequence[str], model: CLIP | None = None, truncate: bool = False, precision: str | None = None
) -> np.ndarray:
    """(N, E) normalized float32 text embeddings; text over the context raises unless truncate=True."""
    model = _model(model)
    tokens = tokenize(texts, truncate=truncate, model=model).to(model.text_projection.device)
    with inference(model, precision):
        return unit_rows(model.encode_text(tokens))


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
