"""Training a VQGAN: reconstruction + codebook loss, then a PatchGAN once the autoencoder has settled
(`disc_start`), balanced by the adaptive weight. The loop itself is `training.fit`; this is the step.

The perceptual (LPIPS) term of taming's loss needs VGG16 weights from a model hub, which pictext never
downloads; without it the generator's loss is L1 + codebook + adversarial. The adversarial term is what keeps
reconstructions sharp without a perceptual loss (taming's ablation: L1 alone blurs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from pictext import training
from pictext.images.tensors import to_pixels
from pictext.vqgan.discriminator import DiscriminatorConfig, PatchDiscriminator
from pictext.vqgan.loss import adaptive_weight, generator_adversarial_loss, hinge_d_loss
from pictext.vqgan.model import VQGAN

PairDataset = Sequence[tuple[Image.Image, str]]


@dataclass(frozen=True)
class VQGANTrainConfig(training.TrainConfig):
    """A VQGAN's training run: the driver's fields and its own."""

    steps: int = 3000  # optimizer steps (generator and discriminator each)
    batch_size: int = 16
    lr: float = 2e-4  # Adam, betas (0.5, 0.9) as taming; after `warmup`, as `schedule` says
    warmup: int = 100
    schedule: str = "constant"  # "constant" (taming's), or "cosine": decays to zero at `steps`
    disc_start: int = 1000  # step from which the discriminator trains and the adversarial term counts
    disc_weight: float = 0.8  # scales the adaptive weight
    codebook_weight: float = 1.0
    flip: bool = True  # random horizontal flips (reconstruction does not care about direction)
    usage_window: int = 100  # steps over which codebook usage is counted


@dataclass
class StepLog:
    rec: float  # L1 reconstruction
    codebook: float
    g: float  # adversarial term of the generator (0 before disc_start)
    d: float  # discriminator hinge loss (0 before disc_start)
    perplexity: float
    usage: float  # share of codes used in the last `usage_window` steps


def train_vqgan(
    model: VQGAN,
    data: PairDataset,
    cfg: VQGANTrainConfig,
    discriminator: PatchDiscriminator | None = None,
    run_dir: str | Path | None = None,
    device: torch.device | None = None,
    on_step: Callable[[int, StepLog], None] | None = None,
) -> list[StepLog]:
    """Train `model` on the images of `data` (captions are ignored); returns the log of every step run.

    With `run_dir`, a state (both networks, both optimizers, step, logs) is saved every `cfg.checkpoint_every`
    steps and at the end, and a run with the same run_dir resumes from it exactly.
    """
    disc = discriminator or PatchDiscriminator(DiscriminatorConfig())
    model.train()
    disc.train()
    opt_g = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    step = _VQGANStep(model, disc, data, cfg)
    hook = (lambda i, log: on_step(i, StepLog(**log))) if on_step is not None else None
    modules = {"model": model, "discriminator": disc, "usage": step.usage}
    logs = training.fit(step, modules, {"opt_g": opt_g, "opt_d": opt_d}, len(data),
                        cfg, run_dir=run_dir, config=model.config, desc="train vqgan", device=device,
                        on_step=hook)  # fmt: skip
    return [StepLog(**log) for log in logs]


class _VQGANStep:
    """The generator's loss (L1, codebook, and from `disc_start` the adversarial term with its adaptive weight)
    and the discriminator's hinge loss on the same reconstructions."""

    def __init__(self, model: VQGAN, disc: PatchDiscriminator, data: PairDataset, cfg: VQGANTrainConfig) -> None:
        self.model, self.disc, self.data, self.cfg = model, disc, data, cfg
        self.usage = _UsageWindow(model.config.n_embed, cfg.usage_window)

    def __call__(self, batch: training.Batch) -> training.StepResult:
        model, disc, cfg = self.model, self.disc, self.cfg
        pairs = training.read_batch(self.data, batch.indices)
        flips = batch.rng(0).random(batch.size)[batch.share] < 0.5 if cfg.flip else None
        x = to_pixels([image for image, _ in pairs], model.config.resolution, flips).to(batch.device)
        out = model(x)
        rec = (x - out.reconstruction).abs().mean()
        loss = rec + cfg.codebook_weight * out.quantized.loss
        codes = training.all_gather_rows(out.quantized.indices.detach().flatten())  # the whole batch's
        self.usage.add(codes, batch.step)
        share = torch.bincount(codes, minlength=model.config.n_embed).float() / len(codes)
        perplexity = torch.exp(-(share * torch.log(share + 1e-10)).sum())  # as the quantizer's, over all ranks
        logs = {"rec": rec.item(), "codebook": out.quantized.loss.item(), "g": 0.0, "d": 0.0,
                "perplexity": perplexity.item(), "usage": self.usage.share(batch.step)}  # fmt: skip
        losses: dict[str, training.Loss] = {"opt_g": loss}
        if batch.step >= cfg.disc_start:
            disc.eval()  # the generator's step must not move the discriminator's BatchNorm statistics
            g = generator_adversarial_loss(disc(out.reconstruction))
            disc.train()
            losses["opt_g"] = loss + cfg.disc_weight * adaptive_weight(rec, g, model.last_layer()) * g
            logs["g"] = g.item()
            fake = out.reconstruction.detach()

            def discriminator_loss() -> torch.Tensor:  # after the generator's update, as taming orders them
                d = hinge_d_loss(disc(x), disc(fake))
                logs["d"] = d.item()
                return d

            losses["opt_d"] = discriminator_loss
        return training.StepResult(losses, logs)


class _UsageWindow(nn.Module):
    """Which codes were used in the last `window` steps: the codebook's health, logged each step. Kept as the step
    at which each code was last used, a buffer the run's state saves, so that a resumed run logs what the run
    that never stopped logs (a window kept in memory alone started empty again on resume)."""

    def __init__(self, n_embed: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.register_buffer("last_used", torch.full((n_embed,), -(2**62), dtype=torch.long))

    def add(self, indices: torch.Tensor, step: int) -> None:
        self.last_used[torch.unique(indices.to(self.last_used.device))] = step

    def share(self, step: int) -> float:
        return (self.last_used > step - self.window).float().mean().item()
