"""What every trainer needs: seeding, LR schedule, precision, progress, checkpoints that resume exactly."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pictext.config import to_dict
from pictext.errors import PictextError
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
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
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
            raise ValueError(f"{TRAIN_PRECISION_ENV} must be auto, fp32 or bf16, got {forced!r}")
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


def average_gradients(parameters: list[torch.nn.Parameter], world: int) -> None:
    """What DDP does after backward: every rank ends with the mean of the ranks' gradients."""
    if world == 1:
        return
    import torch.distributed as dist

    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


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
        part.load_state_dict(state[name])
    return state_file, state


def run_state(config: Any, **state: Any) -> dict[str, Any]:
    """A training state to save, with the model config `resume` checks it against."""
    return {"config": to_dict(config), **state}


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
