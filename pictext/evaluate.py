"""Evaluation of CLIP models: zero-shot accuracy on labelled images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from pictext.clip.model import CLIP
from pictext.clip.zero_shot import DEFAULT_TEMPLATES, class_embeddings


@torch.no_grad()
def zero_shot_accuracy(
    model: CLIP,
    images: Sequence[Image.Image],
    labels: Sequence[str],
    classes: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy of zero-shot classification of `images` (true class names `labels`) among `classes`."""
    model.eval()
    device = model.text_projection.device
    class_emb = class_embeddings(model, classes, templates)
    index = {c: i for i, c in enumerate(classes)}
    target = torch.tensor([index[label] for label in labels])
    hits = 0
    for start in range(0, len(images), batch_size):
        pixels = model.preprocess.batch(images[start : start + batch_size]).to(device)
        pred = (model.encode_image(pixels, normalize=True) @ class_emb.T).argmax(dim=-1).cpu()
        hits += int((pred == target[start : start + batch_size]).sum())
    return hits / len(images)
