"""Diffusion as unCLIP uses it, on diffusers' schedulers: training targets, the loss, and DDPM/DDIM sampling with
classifier-free guidance.

The noise schedules, q_sample (`add_noise`), the velocity target and the reverse steps are diffusers'
(`DDPMScheduler`, `DDIMScheduler`); written here is only the glue they lack: drawing training timesteps and
noise from a seeded generator, the target for each parametrisation, and a sampling loop that runs the
conditional and unconditional inputs as one batch and mixes them, uncond + scale * (cond - uncond).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from pictext.training import Share

PREDICTIONS = ("epsilon", "sample", "v_prediction")  # diffusers' names for eps, x0 and v parametrisations
SCHEDULES = ("squaredcos_cap_v2", "linear")

# model(x_t, t, condition) -> prediction of the configured kind; condition is whatever the model takes
Denoiser = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


@dataclass(frozen=True)
class DiffusionConfig:
    LIMITS: ClassVar[dict] = {"timesteps": (1, 10_000)}  # pictext.config: bounds a file's config must keep
    timesteps: int = 1000
    schedule: str = "squaredcos_cap_v2"  # the cosine schedule (Nichol & Dhariwal 2021), or "linear" (DDPM's)
    prediction: str = "epsilon"  # what the network predicts: "epsilon", "sample" (x0) or "v_prediction"
    clip_sample: bool = False  # clamp predicted x0 to [-1, 1] when sampling (for pixels; not for embeddings)

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


def make_scheduler(cfg: DiffusionConfig, sampler: str = "ddpm") -> DDPMScheduler | DDIMScheduler:
    common = dict(num_train_timesteps=cfg.timesteps, beta_schedule=cfg.schedule, prediction_type=cfg.prediction,
                  clip_sample=cfg.clip_sample)  # fmt: skip
    if sampler == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    if sampler == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, **common)
    raise ValueError(f"sampler must be ddpm or ddim, got {sampler!r}")


def training_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return x0
    return scheduler.get_velocity(x0, noise, t)


def diffusion_loss(
    model: Denoiser,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    condition: object,
    generator: torch.Generator,
    share: Share | None = None,
) -> torch.Tensor:
    """MSE between the model's prediction at a random timestep and the true target, for a batch x0 (B, ...);
    `share`: x0 is these rows of a larger batch (a rank's), whose timesteps and noise are drawn whole."""
    share = share or Share.whole(x0.shape[0])
    t = share.randint(scheduler.config.num_train_timesteps, generator)
    noise = share.randn(x0.shape, generator).to(x0)
    x_t = scheduler.add_noise(x0, noise, t.to(x0.device))
    return F.mse_loss(model(x_t, t.to(x0.device), condition).float(), training_target(scheduler, x0, noise, t).float())


@torch.no_grad()
def sample(
    model: Denoiser,
    scheduler: DDPMScheduler | DDIMScheduler,
    shape: tuple[int, ...],
    condition: torch.Tensor,
    null_condition: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    steps: int = 50,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    x_T: torch.Tensor | None = None,
    check: Callable[[], None] | None = None,
) -> torch.Tensor:
    """x0 of shape `shape` by the scheduler's reverse process over `steps` steps. With a guidance scale other
    than 1, `null_condition` (the dropped condition) runs in the same batch as `condition`."""
    if guidance_scale < 0:
        raise ValueError(f"guidance scale must be >= 0 (1 is no guidance), got {guidance_scale}")
    guided = guidance_scale != 1.0
    if guided and null_condition is None:
        raise ValueError("guidance needs the unconditional input (null_condition)")
    x = torch.randn(shape, generator=generator) if x_T is None else x_T.clone()
    x = x.to(condition.device)
    scheduler.set_timesteps(steps)
    both = torch.cat([condition, null_condition]) if guided else condition  # type: ignore[list-item]
    for t in scheduler.timesteps:
        if check is not None:
            check()  # raises pictext.errors.Cancelled to stop between steps
        t_batch = torch.full((both.shape[0],), int(t), dtype=torch.long, device=x.device)
        out = model(torch.cat([x, x]) if guided else x, t_batch, both)
        if guided:
            cond, uncond = out.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)
        kwargs = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
        x = scheduler.step(out, t, x, generator=generator, **kwargs).prev_sample
    return x
