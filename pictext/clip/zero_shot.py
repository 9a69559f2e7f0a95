"""Zero-shot classification: class names become text embeddings through prompt templates.

Each class embedding is the mean of its templates' normalized text embeddings,
renormalized (the prompt ensemble of Radford et al. 2021, section 3.1.4).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import torch

from pictext.clip.model import CLIP
from pictext.errors import UsageError
from pictext.text.tokenizer import TextTooLongError

DEFAULT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "{}")
# ruCLIP's own (its Predictor's): for Russian labels with a CLIP that reads Russian
RUSSIAN_TEMPLATES = ("{}", "фото, на котором изображено {}", "изображение с {}", "картинка с {}", "фото с {}",
                     "на фото видно {}")  # fmt: skip


@lru_cache
def imagenet_templates() -> tuple[str, ...]:
    """The 80 prompt templates OpenAI used for ImageNet."""
    text = resources.files("pictext.clip").joinpath("imagenet_templates.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


def check_labels(labels: Sequence[str]) -> list[str]:
    labels = [label.strip() if isinstance(label, str) else label for label in labels]
    if not labels:
        raise UsageError("the label list is empty; give at least one label, e.g. --labels 'cat,dog'")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise UsageError(f"label {i + 1} is empty; every label needs text")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label.lower() in seen:
            raise UsageError(f"label {label!r} is given twice (positions {seen[label.lower()] + 1} and {i + 1})")
        seen[label.lower()] = i
    return labels


def _name_the_long_label(model: CLIP, labels: Sequence[str], templates: Sequence[str]) -> None:
    """Raise TextTooLongError naming the first label whose prompt does not fit the model's context."""
    assert model.tokenizer is not None
    for i, label in enumerate(labels):
        for template in templates:
            try:
                model.tokenizer([template.format(label)], truncate=False)
            except TextTooLongError as e:
                shown = label if len(label) <= 40 else label[:40] + "..."
                raise TextTooLongError(
                    f"label {i + 1} ({shown!r}) is too long: in the prompt {template!r} it is over the model's "
                    f"context of {model.tokenizer.context_length} tokens; shorten the label"
                ) from e


@torch.no_grad()
def class_embeddings(model: CLIP, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """(C, E) normalized class embeddings, one per label, averaged over templates."""
    if model.tokenizer is None:
        raise UsageError("model has no tokenizer; load it with pictext.load")
    labels = check_labels(labels)
    device = model.text_projection.device
    prompts = [template.format(label) for label in labels for template in templates]
    try:
        tokens = model.tokenizer(prompts, truncate=False).to(device)
    except TextTooLongError:
        _name_the_long_label(model, labels, templates)
        raise
    emb = model.encode_text(tokens, normalize=True).view(len(labels), len(templates), -1)
    return torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)


@torch.no_grad()
def zero_shot_probs(model: CLIP, image_features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, C) probabilities from normalized image features and class embeddings."""
    logits = model.logit_scale.exp().clamp(max=100) * image_features @ classes.T
    return logits.softmax(dim=-1)
