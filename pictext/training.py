"""What every trainer needs, in one driver (`fit`): ranks under torchrun, batches, precision, the learning-rate
schedule, gradient averaging and clipping, an EMA of the weights, the progress bar, and rank-0 checkpoints that
resume exactly. A family supplies its modules, its optimizers and one function: the loss of one step."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pictext.config import to_dict
from pictext.errors import PictextError, UsageError
from pictext.files import atomic_write


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lr(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warmup to base_lr over `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise UsageError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


TRAIN_PRECISION_ENV = "PICTEXT_TRAIN_PRECISION"


def train_precision(requested: str, device: torch.device) -> str:
    """The precision a training run uses: $PICTEXT_TRAIN_PRECISION (fp32|bf16|auto) when set, else `requested`.

    The variable forces every training run of a process tree (tests included) to one precision, so a suite can
    be proven on both paths on one machine; bf16 still runs where it is emulated, only slowly.
    """
    forced = os.environ.get(TRAIN_PRECISION_ENV)
    if forced:
        if forced not in ("auto", "fp32", "bf16"):
            raise UsageError(f"{TRAIN_PRECISION_ENV} must be auto, fp32 or bf16, got {forced!r}")
        requested = forced
    return resolve_precision(requested, device)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: int) -> None:
    """What DDP does after backward: every rank ends with the mean of the ranks' gradients, in one all-reduce.

    Why not torch's DistributedDataParallel: its hooks fire inside backward, once per backward pass and module
    call, and the loops here run several backward passes a step (GradCache's micro-batches), two optimizers over
    one module (the VQGAN's generator step back-propagates through the discriminator) and frozen towers. After
    backward, one all-reduce of the gradients gives exactly what DDP gives; on 2 CPU ranks nothing is lost by
    not overlapping it with the backward pass."""
    if world == 1:
        return
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= world
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over the ranks (in place); itself when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """(world * N, ...): every rank's (N, ...) rows, rank 0's first (the order of one process's whole batch)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def param_groups(
    model: torch.nn.Module, weight_decay: float, extra: Iterable[torch.nn.Parameter] = ()
) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay on matrices only; never on norms, biases, embeddings or CLIP's logit_scale.
    `extra` parameters (a loss's own, say) join the undecayed group."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "embed" in name or name == "logit_scale"
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay + list(extra), "weight_decay": 0.0}]


def progress(total: int, desc: str, initial: int = 0) -> tqdm:
    """A progress bar on stderr; silent when PICTEXT_QUIET is set (for logs and tests) and on ranks other than 0."""
    quiet = bool(os.environ.get("PICTEXT_QUIET")) or int(os.environ.get("RANK", 0)) != 0
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=quiet)


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Training state (model, optimizer, step, RNG) written atomically; read back with `load_state`."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def check_writable(folder: Path) -> None:
    """Create `folder` if needed; CheckpointError now if it cannot hold checkpoints."""
    from pictext.checkpoint import CheckpointError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints to {folder}: {e.strerror or e}") from e
    if not os.access(folder, os.W_OK):
        raise CheckpointError(f"cannot write checkpoints to {folder}: the folder is read-only")


class ResumeError(PictextError, ValueError):
    pass


def resume(
    run_dir: str | os.PathLike | None, parts: dict[str, Any], config: Any = None
) -> tuple[Path | None, dict[str, Any] | None]:
    """(the run's state file, its saved state or None): the folder is checked writable now, not at the first
    checkpoint, and each of `parts` (a name in the state -> a module or optimizer) is loaded from a saved state.

    `config`, the model's dataclass config, is what the state must have been saved with (`run_state` records
    it): a run folder left by another architecture or parametrisation is refused, not silently continued (a
    decoder switched from epsilon to v prediction has the same weight shapes, so loading alone cannot tell)."""
    if run_dir is None:
        return None, None
    state_file = Path(run_dir) / "state.pt"
    check_writable(state_file.parent)
    if not state_file.exists():
        return state_file, None
    state = load_state(state_file)
    saved, now = state.get("config"), to_dict(config) if config is not None else None
    if now is not None and saved is not None and saved != now:
        differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ResumeError(
            f"{state_file} is a run of another model config (differs in {differ}); "
            f"delete {Path(run_dir)} to start afresh, or give another run folder"
        )
    for name, part in parts.items():
        if name not in state:
            raise ResumeError(f"{state_file} holds no {name!r} (saved by an older pictext); delete {Path(run_dir)} "
                              "to start afresh, or give another run folder")  # fmt: skip
        part.load_state_dict(state[name])
    return state_file, state


def run_state(config: Any, **state: Any) -> dict[str, Any]:
    """A training state to save, with the model config `resume` checks it against."""
    return {"config": to_dict(config) if config is not None else None, **state}


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state with torch's weights-only unpickler: tensors and containers, no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def batches(n_items: int, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[int, np.ndarray]]:
    """(step, indices) forever from `start_step`; indices depend only on (seed, step), so resume is exact.

    Indices within a batch are distinct when the data allows it: a repeated pair would be its own negative.
    """
    step = start_step
    while True:
        rng = np.random.default_rng([seed, step])
        yield step, rng.choice(n_items, size=batch_size, replace=n_items < batch_size)
        step += 1


def read_batch(data: Sequence[tuple[Any, str]], indices: Iterable[int]) -> list[tuple[Any, str]]:
    """The (image, caption) pairs at `indices`. An unreadable image is skipped with a message naming it and the
    next readable item takes its place, so every batch (and every rank's shard, which all-gather needs) keeps
    its size."""
    from pictext.images.decode import ImageError

    pairs = []
    for i in indices:
        for attempt in range(len(data)):
            j = (int(i) + attempt) % len(data)
            try:
                pairs.append(data[j])
                break
            except ImageError as e:
                print(f"pictext: skipping {e}", file=sys.stderr)
        else:
            raise ImageError(data, "no image in the dataset can be read")
    return pairs


# ---- the driver ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """What `fit` needs of a training run; each family's training config extends it with its own fields."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 64  # items per step, all ranks together
    lr: float = 1e-3  # peak learning rate, reached after `warmup` steps
    warmup: int = 100  # steps of linear warmup
    schedule: str = "cosine"  # after the warmup: "cosine" (decays to zero at `steps`) or "constant"
    weight_decay: float = 0.0  # on matrices only (param_groups)
    grad_clip: float | None = None  # the largest gradient norm of each optimizer's parameters
    ema_decay: float | None = None  # keep an exponential moving average of the weights; it is what the run returns
    precision: str = "auto"  # "auto" (bf16 where the hardware does it natively), "fp32" or "bf16"
    seed: int = 0
    checkpoint_every: int = 250  # steps between resumable states in the run folder

    def __post_init__(self) -> None:

        if self.schedule not in ("cosine", "constant"):
            raise UsageError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name, low in (("steps", 0), ("batch_size", 1), ("checkpoint_every", 1)):  # 0 steps: the initial model
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr}")

    def lr_at(self, step: int) -> float:
        if self.schedule == "cosine":
            return cosine_lr(step, self.steps, self.warmup, self.lr)
        return self.lr * min(1.0, (step + 1) / max(1, self.warmup))


@dataclass(frozen=True)
class Share:
    """This rank's rows (`rows`) of a step's batch of `size` items. What is drawn at random per item is drawn
    for the whole batch, then cut to `rows`, so N ranks draw exactly what one process draws."""

    rows: slice
    size: int

    def randn(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        return torch.randn((self.size, *shape[1:]), generator=generator)[self.rows]

    def rand(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        return torch.rand((self.size, *shape[1:]), generator=generator)[self.rows]

    def randint(self, high: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, high, (self.size,), generator=generator)[self.rows]

    @staticmethod
    def whole(n: int) -> Share:
        return Share(slice(0, n), n)


@dataclass
class Batch:
    """One step's share of work for this rank: `indices` are its items of the step's `size` (all ranks)."""

    step: int
    indices: np.ndarray  # this rank's items, a contiguous slice of the step's batch
    size: int  # the step's items over all ranks
    rank: int
    world: int
    device: torch.device
    precision: str
    seed: int

    @property
    def share(self) -> slice:
        """Where this rank's items sit in the step's batch."""
        local = self.size // self.world
        return slice(self.rank * local, (self.rank + 1) * local)

    @property
    def part(self) -> Share:
        return Share(self.share, self.size)

    def rng(self, stream: int) -> np.random.Generator:
        """A generator that depends only on (seed, step, stream): the same on every rank and after a resume."""
        return np.random.default_rng([self.seed, self.step, stream])

    def generator(self, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.rng(stream).integers(2**62)))


Loss = torch.Tensor | float | Callable[[], torch.Tensor]


@dataclass
class StepResult:
    """What a family's step returns: per optimizer (by name, taken in the optimizers' order) the loss to
    back-propagate; a float when the step has back-propagated itself (GradCache); or a function that computes it
    once the optimizers before it have stepped (the discriminator's, after the generator's). And the numbers to
    log (such a function may add to them)."""

    losses: dict[str, Loss]
    logs: dict[str, float] = field(default_factory=dict)


def fit(
    step: Callable[[Batch], StepResult],
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    n_items: int,
    cfg: TrainConfig,
    *,
    run_dir: str | os.PathLike | None = None,
    config: Any = None,
    desc: str = "train",
    device: torch.device | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Run `step` for cfg.steps steps over `n_items` items and return the logs of the steps run.

    Under torchrun every rank takes its contiguous share of each batch, gradients are averaged over the ranks and
    logs too, so N ranks follow one process on the whole batch. `modules` and `optimizers` (by name) are what a
    resumable state holds; `config` is the model config a state must have been saved with. The torch RNG is
    seeded from (seed, step) at every step, so what a step draws from it is the same on every rank and on resume.
    """
    rank, world = init_distributed()
    if cfg.batch_size % world:
        raise UsageError(f"batch_size {cfg.batch_size} does not split over {world} ranks; use a multiple of {world}")
    device = device or default_device()
    precision = train_precision(cfg.precision, device)
    for module in modules.values():
        module.to(device)
    ema = _ema(optimizers, cfg.ema_decay)
    state_file, state = resume(run_dir, {**modules, **optimizers} | ({"ema": ema} if ema else {}), config)
    start, logs = (state["step"], list(state["logs"])) if state else (0, [])
    bar = progress(cfg.steps, desc, initial=start)
    local = cfg.batch_size // world
    for index, indices in batches(n_items, cfg.batch_size, cfg.seed, start):
        if index >= cfg.steps:
            break
        began = time.perf_counter()
        torch.manual_seed(int(np.random.default_rng([cfg.seed, index, 0]).integers(2**62)))
        batch = Batch(index, indices[rank * local : (rank + 1) * local], cfg.batch_size, rank, world, device,
                      precision, cfg.seed)  # fmt: skip
        _start(optimizers, cfg.lr_at(index))
        with autocast(precision, device):
            result = step(batch)
        _update(result, optimizers, world, cfg.grad_clip, lambda: autocast(precision, device))
        if ema is not None:
            ema.step(_parameters(optimizers))
        logs.append(_mean_over_ranks(result.logs, world))
        bar.set_postfix(
            {k: f"{v:.4g}" for k, v in logs[-1].items()}
            | {"items_s": f"{cfg.batch_size / (time.perf_counter() - began):.0f}"}
        )
        bar.update(1)
        done = index + 1
        if rank == 0 and state_file is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _save(state_file, config, modules | optimizers | ({"ema": ema} if ema else {}), done, logs)
        if on_step is not None:
            on_step(index, logs[-1])
    bar.close()
    if ema is not None:
        ema.copy_to(_parameters(optimizers))  # what the run keeps: the averaged weights
    return logs[start:]


def _start(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)


def _save(state_file: Path, config: Any, parts: dict[str, Any], step: int, logs: list) -> None:
    """A resumable state: every module's, optimizer's and the EMA's state, the step and the logs so far."""
    save_state(state_file, run_state(config, **{name: part.state_dict() for name, part in parts.items()}, step=step,
                                     logs=logs))  # fmt: skip


def _update(result: StepResult, optimizers: dict[str, torch.optim.Optimizer], world: int, clip: float | None,
            precision_scope: Callable[[], contextlib.AbstractContextManager]) -> None:  # fmt: skip
    """Back-propagate each optimizer's loss in turn (its gradients cleared first: an earlier loss may have reached
    its parameters, as the VQGAN's generator loss reaches the discriminator's), average over ranks, clip, step.
    A loss given as a closure runs under the step's precision (autocast), as the step itself did."""
    unknown = set(result.losses) - set(optimizers)
    assert not unknown, f"losses for optimizers that do not exist: {sorted(unknown)}"
    for name, optimizer in optimizers.items():
        if name not in result.losses:
            continue  # this optimizer sits this step out (the discriminator before it starts)
        loss = result.losses[name]
        if callable(loss):
            with precision_scope():
                loss = loss()
        if isinstance(loss, torch.Tensor):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        average_gradients(params, world)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()


def _parameters(optimizers: dict[str, torch.optim.Optimizer]) -> list[torch.nn.Parameter]:
    return [p for optimizer in optimizers.values() for group in optimizer.param_groups for p in group["params"]]


def _ema(optimizers: dict[str, torch.optim.Optimizer], decay: float | None):
    if decay is None:
        return None
    from diffusers.training_utils import EMAModel  # diffusers' EMA, as unCLIP's other parts are diffusers'

    return EMAModel(_parameters(optimizers), decay=decay)


def _mean_over_ranks(logs: dict[str, float], world: int) -> dict[str, float]:
    """The step's logs averaged over the ranks: each rank saw its share, the log is the whole batch's."""
    if world == 1 or not logs:
        return {k: float(v) for k, v in logs.items()}
    values = all_reduce_sum(torch.tensor([float(v) for v in logs.values()], dtype=torch.float64))
    return {k: float(v) / world for k, v in zip(logs, values)}
