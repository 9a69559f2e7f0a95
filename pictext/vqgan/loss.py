"""VQGAN's losses (taming's VQLPIPSWithDiscriminator without the LPIPS term; see `train.py` for why).

Generator: L1 reconstruction + codebook loss + lambda * (-D(x_hat)), where the adaptive weight lambda balances
the two gradients at the decoder's last layer: ||grad nll|| / (||grad g|| + 1e-4), clamped to [0, 1e4].
Discriminator: the hinge loss on real and reconstructed images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """The weight that makes the adversarial gradient as large as the reconstruction gradient at `last_layer`."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """(B,) peak signal-to-noise ratio in dB of images in [-1, 1] (clamped), on the 0-255 scale's definition."""
    a, b = (images.clamp(-1, 1) + 1) / 2, (reconstructions.clamp(-1, 1) + 1) / 2
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
