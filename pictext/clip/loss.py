"""Contrastive losses for CLIP."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (Radford et al. 2021): pair i is the positive for row i and column i.

    image, text: (B, E) L2-normalized features; logit_scale: log inverse temperature, clamped at ln(100).
    """
    logits = logit_scale.exp().clamp(max=100) * image @ text.T  # (B, B)
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
