"""A CLIP at work on files and strings: load one by name, embed pictures and texts, in the precision it runs in.

Every function here takes the model; `pictext.api` adds the default model for people who pass none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from pictext import hub
from pictext.clip.io import load_clip
from pictext.clip.model import CLIP
from pictext.images.decode import ImageError, ImageInput, load_images
from pictext.training import autocast, resolve_precision

logger = logging.getLogger(__name__)


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    activation: str | None = None,
    device: str | None = None,
    precision: str = "auto",
    fetch: bool | None = None,
) -> CLIP:
    """A CLIP model in eval mode: a native file, a foreign checkpoint, a local model name, a published model's
    name (`pictext models list --published`; `fetch=True` downloads it if it is not here yet), or the default.

    precision: what encode_images, encode_texts, classify and Index run it in: "fp32", "bf16" (autocast), or
    "auto": bf16 where the CPU (AVX512-BF16 or AMX) or GPU multiplies bf16 natively, fp32 elsewhere. The
    weights stay float32 either way; bf16 embeddings agree with fp32 to a cosine of about 0.9999.
    """
    from pictext import published

    name = name_or_path or hub.DEFAULT_MODEL
    item = published.entry(str(name))
    activation = activation or (item.activation if item is not None else None)  # the registry knows it
    model = load_clip(hub.resolve(name, fetch=fetch), activation=activation)
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
    model: CLIP, images: Sequence[ImageInput], batch_size: int = 64, precision: str | None = None
) -> np.ndarray:
    """(N, E) normalized float32 embeddings of image paths or PIL images; ImageError names every bad input."""
    if not images:
        raise ImageError("images", "no images given")
    _, features, errors = embed_images(model, images, batch_size, precision)
    if errors:
        raise ImageError(", ".join(str(e.source) for e in errors), "; ".join(e.reason for e in errors))
    return features


def encode_texts(model: CLIP, texts: Sequence[str], truncate: bool = False, precision: str | None = None) -> np.ndarray:
    """(N, E) normalized float32 text embeddings; text over the context raises unless truncate=True."""
    assert model.tokenizer is not None
    tokens = model.tokenizer(list(texts), truncate=truncate).to(model.text_projection.device)
    with inference(model, precision):
        return unit_rows(model.encode_text(tokens))


def model_fingerprint(model: CLIP) -> str:
    """A hash of the architecture, preprocessing and every weight: two models share it only if they embed alike."""
    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps(dataclasses.asdict(model.config), sort_keys=True).encode())
    h.update(repr(model.preprocess).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
