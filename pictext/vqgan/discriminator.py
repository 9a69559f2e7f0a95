"""PatchGAN discriminator (Isola et al. 2017, pix2pix), as VQGAN trains with it (taming's NLayerDiscriminator):
strided 4x4 convolutions with BatchNorm and LeakyReLU, one logit per overlapping patch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 3
    ndf: int = 64  # filters of the first layer; doubled per layer up to 8x
    n_layers: int = 3  # strided layers: patches of 70 px at 3 layers


class PatchDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        ndf, layers = config.ndf, [nn.Conv2d(config.in_channels, config.ndf, 4, stride=2, padding=1)]
        layers.append(nn.LeakyReLU(0.2, True))
        mult = 1
        for n in range(1, config.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < config.n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # pix2pix's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, h, w) patch logits
        return self.main(x)
