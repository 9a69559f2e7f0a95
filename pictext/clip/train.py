"""Contrastive training of CLIP, as one explicit loop (the built-in models' recipes are in recipes.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pictext import training
from pictext.clip.loss import SigLIPLoss, clip_loss, gather_features, gradcache_backward
from pictext.clip.model import CLIP
from pictext.data.augment import Augment

PairDataset = Sequence[tuple[Image.Image, str]]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 128  # pairs per step; each pair's negatives are the other B-1
    lr: float = 1e-3  # peak AdamW learning rate, reached after `warmup` steps
    weight_decay: float = 0.1  # on matrices only; gains, biases, embeddings, logit_scale are not decayed
    warmup: int = 50
    precision: str = "auto"  # "auto" (bf16 where the hardware does it natively), "fp32" or "bf16"
    seed: int = 0
    checkpoint_every: int = 200  # steps between resumable states in run_dir
    loss: str = "clip"  # "clip" (InfoNCE) or "siglip" (sigmoid, learned temperature and bias)
    micro_batch: int | None = None  # GradCache: exact gradients of batch_size, activations of micro_batch per rank
    lock: tuple[str, ...] = ()  # towers kept frozen, projections still trained: ("text",) is LiT; also "image"
    grad_checkpointing: bool = False  # recompute transformer blocks in backward: less memory, ~30% more time
    augment: bool = False  # caption-safe augmentation (pictext/data/augment.py): crops, margins, backgrounds, no flips


AUGMENT = Augment()


class LockedTextCache:
    """Outputs of a locked text tower by caption, so each distinct caption runs through it once per run."""

    def __init__(self, model: CLIP, device: torch.device, precision: str, limit: int = 200_000) -> None:
        self.model, self.device, self.precision, self.limit = model, device, precision, limit
        self.features: dict[str, torch.Tensor] = {}

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(c for c in captions if c not in self.features))
        if len(self.features) + len(missing) > self.limit:
            self.features.clear()  # open-ended caption sets (the shapes world) would otherwise grow without end
            missing = list(dict.fromkeys(captions))
        assert self.model.tokenizer is not None
        with torch.no_grad(), training.autocast(self.precision, self.device):
            for start in range(0, len(missing), 256):
                chunk = missing[start : start + 256]
                tokens = self.model.tokenizer(chunk, truncate=True).to(self.device)
                self.features.update(zip(chunk, self.model.text_tower(tokens).float()))
        return torch.stack([self.features[c] for c in captions])


def _set_grad_checkpointing(model: CLIP, enabled: bool) -> None:
    for module in model.modules():
        if hasattr(module, "grad_checkpointing"):
            module.grad_checkpointing = enabled


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "embedding" in name or name == "logit_scale"
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_clip(
    model: CLIP,
    data: PairDataset,
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    device: torch.device | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `model` on (image, caption) pairs; returns the loss of every step run.

    With `run_dir`, a state is saved every `cfg.checkpoint_every` steps and at the end, and a run with
    the same run_dir resumes from it exactly: batches depend only on (seed, step).
    """
    if model.tokenizer is None:
        raise ValueError("model.tokenizer is not set; train_clip tokenizes captions with it")
    if cfg.loss not in ("clip", "siglip"):
        raise ValueError(f"loss must be 'clip' or 'siglip', got {cfg.loss!r}")
    if set(cfg.lock) - {"text", "image"}:
        raise ValueError(f"lock takes 'text' and/or 'image', got {list(cfg.lock)}")
    rank, world = training.init_distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over {world} ranks; use a multiple of {world}")
    device = device or training.default_device()
    precision = training.train_precision(cfg.precision, device)
    model.to(device).train()
    locked = {n for n, _ in model.text_parameters()} if "text" in cfg.lock else set()
    locked |= {n for n, _ in model.image_parameters()} if "image" in cfg.lock else set()
    for name, p in model.named_parameters():
        p.requires_grad_(name not in locked)
    if "image" in cfg.lock:
        model.visual.eval()  # frozen BatchNorm statistics too
    _set_grad_checkpointing(model, cfg.grad_checkpointing)
    siglip = SigLIPLoss().to(device) if cfg.loss == "siglip" else None
    params = [p for p in model.parameters() if p.requires_grad] + (list(siglip.parameters()) if siglip else [])
    groups = param_groups(model, cfg.weight_decay)
    if siglip is not None:
        groups[1]["params"] += list(siglip.parameters())
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    parts = {"model": model, "optimizer": optimizer} | ({"siglip": siglip} if siglip is not None else {})
    state_file, state = training.resume(run_dir, parts, model.config)
    start, losses = (state["step"], list(state["losses"])) if state else (0, [])
    training.seed_everything(cfg.seed)
    bar = training.progress(cfg.steps, "train clip", initial=start)
    local = cfg.batch_size // world
    micro = min(cfg.micro_batch or local, local)

    def loss_fn(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return siglip(image, text) if siglip is not None else clip_loss(image, text, model.logit_scale)

    text_cache = LockedTextCache(model, device, precision) if "text" in cfg.lock else None

    def encode_text(texts: torch.Tensor) -> torch.Tensor:  # token ids, or a locked tower's cached outputs
        if text_cache is not None:
            return model.project_text(texts, normalize=True)
        return model.encode_text(texts, normalize=True)

    for step, indices in training.batches(len(data), cfg.batch_size, cfg.seed, start):
        if step >= cfg.steps:
            break
        began = time.perf_counter()
        if hasattr(data, "set_epoch"):
            data.set_epoch(step * cfg.batch_size // len(data))
        pairs = training.read_batch(data, indices[rank * local : (rank + 1) * local])  # this rank's shard
        images = [image for image, _ in pairs]
        if cfg.augment:  # each picture's changes a function of (seed, step, its place in the batch): exact resume
            images = [
                AUGMENT(im, np.random.default_rng([cfg.seed, step, rank * local + i])) for i, im in enumerate(images)
            ]
        pixels = model.preprocess.batch(images).to(device)
        captions = [caption for _, caption in pairs]
        if text_cache is not None:  # a locked tower's output is a pure function of the caption: compute each once
            texts = text_cache(captions)
        else:
            texts = model.tokenizer(captions, truncate=True).to(device)
        for group in optimizer.param_groups:
            group["lr"] = training.cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        optimizer.zero_grad(set_to_none=True)
        with training.autocast(precision, device):
            if micro < local:
                loss = gradcache_backward(
                    lambda x: model.encode_image(x, normalize=True),
                    encode_text,
                    pixels.split(micro),
                    texts.split(micro),
                    loss_fn,
                )
            else:
                image, text = model.encode_image(pixels, normalize=True), encode_text(texts)
                loss = loss_fn(*gather_features(image, text))
                loss.backward()
        training.average_gradients(params, world)
        optimizer.step()
        losses.append(loss.item())
        rate = cfg.batch_size / (time.perf_counter() - began)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", samples_s=f"{rate:.0f}")
        bar.update(1)
        done = step + 1
        if rank == 0 and state_file is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            state = training.run_state(
                model.config, model=model.state_dict(), optimizer=optimizer.state_dict(), step=done, losses=losses
            )
            training.save_state(state_file, state | ({"siglip": siglip.state_dict()} if siglip else {}))
        if on_step is not None:
            on_step(step, losses[-1])
    bar.close()
    return losses[start:]
