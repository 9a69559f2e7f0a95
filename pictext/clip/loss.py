"""Contrastive losses for CLIP, the all-gather that makes them exact across ranks, and GradCache.

- `clip_loss`: symmetric InfoNCE (Radford et al. 2021).
- `SigLIPLoss`: pairwise sigmoid loss with learnable temperature and bias (Zhai et al. 2023).
- `gather_features`: features of every rank, with gradients flowing back to the rank that made them,
  so N ranks compute the loss of the concatenated batch (as open_clip's gather_with_grad).
- `gradcache_backward`: exact gradients of a big-batch contrastive loss from micro-batches
  (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (Radford et al. 2021): pair i is the positive for row i and column i.

    image, text: (B, E) L2-normalized features; logit_scale: log inverse temperature, clamped at ln(100).
    """
    logits = logit_scale.exp().clamp(max=100) * image @ text.T  # (B, B)
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class SigLIPLoss(torch.nn.Module):
    """Sigmoid loss: every (image, text) pair is its own binary problem, positive on the diagonal.

    Temperature t = exp(t') and bias b are learned, initialised as in the paper (t' = log 10, b = -10)
    so that the many negatives do not swamp the first steps. Normalised by the batch size, as in the paper.
    """

    def __init__(self, init_temperature: float = 10.0, init_bias: float = -10.0) -> None:
        super().__init__()
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.logit_bias = torch.nn.Parameter(torch.tensor(init_bias))

    def forward(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logit_scale.exp() * image @ text.T + self.logit_bias  # (B, B); the model's scale is unused
        signs = 2 * torch.eye(len(image), device=image.device, dtype=logits.dtype) - 1  # +1 diagonal, -1 elsewhere
        return -F.logsigmoid(signs * logits).sum() / len(image)


def gather_features(image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's features in rank order; gradients flow back to their own rank.

    Each rank then computes the same full-batch loss; the all-gather's backward sums the ranks'
    gradients, and DDP's averaging divides by the world size: together, the gradient of one process
    on the concatenated batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return image, text
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated for a private successor; still torch's public autograd gather
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(image)), torch.cat(all_gather(text))


def gradcache_backward(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    pixels: Sequence[torch.Tensor],
    tokens: Sequence[torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Backward the loss of the whole batch, holding activations of one micro-batch at a time.

    1. Embed every micro-batch without a graph; 2. the full-batch loss on those embeddings, backward to
    the embeddings only (and to loss parameters such as logit_scale); 3. re-embed each micro-batch with
    a graph and backward the cached embedding gradients through it. The model must be deterministic
    between the two passes (no dropout). Returns the loss (detached).
    """
    with torch.no_grad():
        image = torch.cat([encode_image(p) for p in pixels])
        text = torch.cat([encode_text(t) for t in tokens])
    image.requires_grad_(True)
    text.requires_grad_(True)
    loss = loss_fn(*gather_features(image, text))
    loss.backward()
    image_grads = image.grad.split([len(p) for p in pixels])
    text_grads = text.grad.split([len(t) for t in tokens])
    for p, g in zip(pixels, image_grads):
        encode_image(p).backward(g)
    for t, g in zip(tokens, text_grads):
        encode_text(t).backward(g)
    return loss.detach()
