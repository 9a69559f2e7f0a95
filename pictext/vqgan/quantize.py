"""Vector quantizers: nearest-code lookup with a straight-through gradient, and the Gumbel-softmax relaxation.

VQ-VAE (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937) as VQGAN uses it (Esser et al. 2021,
https://arxiv.org/abs/2012.09841; taming-transformers' `VectorQuantizer` and `GumbelQuantize`): parameter
names follow taming's, so its checkpoints load by name. Written here rather than taken from
vector-quantize-pytorch: that library keeps its codebook in its own buffers (`_codebook.embed`, EMA state)
and computes the commitment loss its own way, so taming's checkpoints and the `legacy` beta placement would
need a translation layer larger than this file; the EMA update and dead-code restart it offers are small
enough to have here, each tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pictext.training import all_gather_rows, all_reduce_sum


@dataclass
class Quantized:
    """What a quantizer returns for a (B, D, H, W) input."""

    z_q: torch.Tensor  # (B, D, H, W) codebook vectors; gradients pass straight through to the input
    loss: torch.Tensor  # () codebook + commitment loss (Gumbel: the KL term)
    indices: torch.Tensor  # (B, H, W) code of each position
    perplexity: torch.Tensor  # () exp(entropy) of the batch's code usage: how many codes are in use


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization to an `n_embed` x `embed_dim` codebook.

    loss = ||sg[z_q] - z||^2 + beta ||z_q - sg[z]||^2 when `legacy` (taming's placement, which every released
    taming checkpoint was trained with), else the paper's ||sg[z] - z_q||^2 + beta ||z - sg[z_q]||^2, where beta
    weighs the commitment term. With `ema_decay`, the codebook is not learned by gradient but follows an
    exponential moving average of the encoder outputs assigned to each code, and only the commitment term
    remains. With `restart_after`, a code unused for that many training steps is moved onto a random encoder
    output of the current batch.
    """

    def __init__(
        self,
        *,
        n_embed: int,
        embed_dim: int,
        beta: float = 0.25,
        legacy: bool = True,
        ema_decay: float = 0.0,
        restart_after: int = 0,
    ) -> None:
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.ema_decay, self.restart_after = ema_decay, restart_after
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if ema_decay:
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_count", torch.ones(n_embed))
            self.register_buffer("ema_sum", self.embedding.weight.detach().clone())
        if restart_after:
            self.register_buffer("idle_steps", torch.zeros(n_embed, dtype=torch.long))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,) index of the nearest code
        codebook = self.embedding.weight
        distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()  # (N, K)
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> Quantized:
        with torch.autocast(device_type=z.device.type, enabled=False):  # codes are chosen and updated in fp32
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> Quantized:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B*H*W, D)
        indices = self.nearest(flat.detach())
        if self.training and self.ema_decay:
            self._ema_update(flat.detach(), indices)
        if self.training and self.restart_after:
            self._restart_dead(flat.detach(), indices)
        z_q = self.embedding(indices).view(b, h, w, d).permute(0, 3, 1, 2)  # (B, D, H, W)
        codebook_term = F.mse_loss(z_q, z.detach())  # moves codes towards encoder outputs
        commitment = F.mse_loss(z, z_q.detach())  # keeps encoder outputs near their codes
        if self.ema_decay:
            loss = self.beta * commitment
        elif self.legacy:
            loss = commitment + self.beta * codebook_term
        else:
            loss = codebook_term + self.beta * commitment
        usage = torch.bincount(indices, minlength=self.n_embed).float() / indices.numel()
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        z_q = z + (z_q - z).detach()  # straight-through: the decoder's gradient reaches the encoder unchanged
        return Quantized(z_q, loss, indices.view(b, h, w), perplexity)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:  # (B, H, W) -> (B, D, H, W)
        return self.embedding(indices).permute(0, 3, 1, 2)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        one_hot = F.one_hot(indices, self.n_embed).type_as(flat)  # (N, K)
        # under torchrun, the statistics of the whole batch (every rank's share): the codebooks stay one
        counts, sums = all_reduce_sum(one_hot.sum(0)), all_reduce_sum(one_hot.t() @ flat)
        self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
        self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.n_embed * 1e-5) * n  # Laplace smoothing: no division by 0
        self.embedding.weight.copy_(self.ema_sum / count[:, None])

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        flat = all_gather_rows(flat)  # under torchrun: every rank's encodings, so all ranks restart alike
        uses = torch.zeros(self.n_embed, device=flat.device)
        uses[indices] = 1.0
        used = all_reduce_sum(uses) > 0
        self.idle_steps.add_(1).masked_fill_(used, 0)
        dead = (self.idle_steps >= self.restart_after).nonzero().flatten()
        if len(dead) == 0:
            return
        picks = torch.randint(len(flat), (len(dead),), device=flat.device)
        self.embedding.weight[dead] = flat[picks]
        if self.ema_decay:
            self.ema_sum[dead] = flat[picks]
            self.ema_count[dead] = 1.0
        self.idle_steps[dead] = 0


class GumbelQuantizer(nn.Module):
    """Gumbel-softmax relaxation (taming's `GumbelQuantize`, as in DALL-E's dVAE): logits over the codebook at
    each position, a relaxed one-hot mix of codes while training (hard one-hot with `straight_through`), the
    argmax in eval. The loss is `kl_weight` times the KL divergence from the uniform prior over codes."""

    def __init__(
        self,
        *,
        in_channels: int,
        n_embed: int,
        embed_dim: int,
        kl_weight: float = 5e-4,
        temperature: float = 1.0,
        straight_through: bool = True,
    ) -> None:
        super().__init__()
        self.n_embed, self.kl_weight, self.temperature = n_embed, kl_weight, temperature
        self.straight_through = straight_through
        self.proj = nn.Conv2d(in_channels, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        logits = self.proj(z)  # (B, K, H, W)
        if self.training:
            soft = F.softmax((logits + _gumbel_noise(logits, generator)) / self.temperature, dim=1)
            if self.straight_through:
                hard = F.one_hot(soft.argmax(1), self.n_embed).permute(0, 3, 1, 2).type_as(soft)
                soft = hard + soft - soft.detach()
        else:
            soft = F.one_hot(logits.argmax(1), self.n_embed).permute(0, 3, 1, 2).type_as(logits)
        z_q = torch.einsum("bkhw,kd->bdhw", soft, self.embed.weight)
        q = F.softmax(logits, dim=1)
        loss = self.kl_weight * (q * torch.log(q * self.n_embed + 1e-10)).sum(1).mean()
        indices = logits.argmax(1)
        usage = torch.bincount(indices.flatten(), minlength=self.n_embed).float() / indices.numel()
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        return Quantized(z_q, loss, indices, perplexity)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:  # (B, H, W) -> (B, D, H, W)
        return self.embed(indices).permute(0, 3, 1, 2)


def _gumbel_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    exponential = -torch.log(u.clamp(1e-10, 1.0))  # Exp(1) draws
    return -torch.log(exponential.clamp_min(1e-10))  # Gumbel(0, 1) draws
