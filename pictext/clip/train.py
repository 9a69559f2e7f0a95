"""Contrastive training of CLIP, as one explicit loop (the built-in models' recipes are in recipes.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictext import training
from pictext.clip.loss import SigLIPLoss, clip_loss, gather_features, gradcache_backward
from pictext.clip.model import CLIP
from pictext.data.augment import Augment
from pictext.errors import UsageError

PairDataset = Sequence[tuple[Image.Image, str]]


@dataclass(frozen=True)
class CLIPTrainConfig(training.TrainConfig):
    """CLIP's training run: the driver's fields (steps, batch_size, lr, warmup, ...) and its own."""

    steps: int = 1000
    batch_size: int = 128  # pairs per step; each pair's negatives are the other B-1
    lr: float = 1e-3  # peak AdamW learning rate, reached after `warmup` steps
    weight_decay: float = 0.1  # on matrices only; gains, biases, embeddings, logit_scale are not decayed
    warmup: int = 50
    checkpoint_every: int = 200
    loss: str = "clip"  # "clip" (InfoNCE) or "siglip" (sigmoid, learned temperature and bias)
    micro_batch: int | None = None  # GradCache: exact gradients of batch_size, activations of micro_batch per rank
    lock: tuple[str, ...] = ()  # towers kept frozen, projections still trained: ("text",) is LiT; also "image"
    grad_checkpointing: bool = False  # recompute transformer blocks in backward: less memory, more time
    augment: bool = False  # caption-safe augmentation (pictext/data/augment.py): crops, margins, backgrounds, no flips

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("clip", "siglip"):
            raise UsageError(f"loss must be 'clip' or 'siglip', got {self.loss!r}")
        if set(self.lock) - {"text", "image"}:
            raise UsageError(f"lock takes 'text' and/or 'image', got {list(self.lock)}")


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


def train_clip(
    model: CLIP,
    data: PairDataset,
    cfg: CLIPTrainConfig,
    run_dir: str | Path | None = None,
    device: torch.device | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    """Train `model` on (image, caption) pairs; returns the loss of every step run.

    With `run_dir`, a state is saved every `cfg.checkpoint_every` steps and at the end, and a run with
    the same run_dir resumes from it exactly: batches depend only on (seed, step).
    """
    if model.tokenizer is None:
        raise UsageError("model.tokenizer is not set; train_clip tokenizes captions with it")
    model.train()
    locked = {n for n, _ in model.text_parameters()} if "text" in cfg.lock else set()
    locked |= {n for n, _ in model.image_parameters()} if "image" in cfg.lock else set()
    for name, p in model.named_parameters():
        p.requires_grad_(name not in locked)
    if "image" in cfg.lock:
        model.visual.eval()  # frozen BatchNorm statistics too
    _set_grad_checkpointing(model, cfg.grad_checkpointing)
    siglip = SigLIPLoss() if cfg.loss == "siglip" else None
    extra = list(siglip.parameters()) if siglip is not None else []
    optimizer = torch.optim.AdamW(training.param_groups(model, cfg.weight_decay, extra), lr=cfg.lr,
                                  betas=(0.9, 0.98), eps=1e-6)  # fmt: skip
    modules = {"model": model} | ({"siglip": siglip} if siglip is not None else {})
    step = _ContrastiveStep(model, siglip, data, cfg)
    logs = training.fit(step, modules, {"optimizer": optimizer}, len(data), cfg, run_dir=run_dir,
                        config=model.config, desc="train clip", device=device, on_step=on_step)  # fmt: skip
    return [log["loss"] for log in logs]


class _ContrastiveStep:
    """One step of contrastive training on this rank's share of the batch: features gathered from every rank
    (with gradients), the loss of the whole batch; with `micro_batch`, GradCache's exact gradients."""

    def __init__(self, model: CLIP, siglip: SigLIPLoss | None, data: PairDataset, cfg: CLIPTrainConfig) -> None:
        self.model, self.siglip, self.data, self.cfg = model, siglip, data, cfg
        self.text_cache: LockedTextCache | None = None

    def loss(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if self.siglip is not None:
            return self.siglip(image, text)
        return clip_loss(image, text, self.model.logit_scale)

    def encode_text(self, texts: torch.Tensor) -> torch.Tensor:  # token ids, or a locked tower's cached outputs
        if self.text_cache is not None:
            return self.model.project_text(texts, normalize=True)
        return self.model.encode_text(texts, normalize=True)

    def __call__(self, batch: training.Batch) -> training.StepResult:
        model, cfg = self.model, self.cfg
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(batch.step * cfg.batch_size // len(self.data))
        pairs = training.read_batch(self.data, batch.indices)
        images = [image for image, _ in pairs]
        if cfg.augment:  # each picture's changes a function of (seed, step, its place in the batch): exact resume
            first = batch.share.start
            images = [
                AUGMENT(im, np.random.default_rng([cfg.seed, batch.step, first + i])) for i, im in enumerate(images)
            ]
        pixels = model.preprocess.batch(images).to(batch.device)
        captions = [caption for _, caption in pairs]
        if "text" in cfg.lock:  # a locked tower's output is a pure function of the caption: compute each once
            if self.text_cache is None:
                self.text_cache = LockedTextCache(model, batch.device, batch.precision)
            texts = self.text_cache(captions)
        else:
            assert model.tokenizer is not None
            texts = model.tokenizer(captions, truncate=True).to(batch.device)
        micro = min(cfg.micro_batch or len(pairs), len(pairs))
        if micro < len(pairs):
            encode_image = lambda x: model.encode_image(x, normalize=True)  # noqa: E731
            loss = gradcache_backward(
                encode_image, self.encode_text, pixels.split(micro), texts.split(micro), self.loss
            )
            return training.StepResult({"optimizer": loss.item()}, {"loss": loss.item()})
        image, text = model.encode_image(pixels, normalize=True), self.encode_text(texts)
        loss = self.loss(*gather_features(image, text))
        return training.StepResult({"optimizer": loss}, {"loss": loss.item()})
