"""Contrastive training of CLIP, as one explicit loop; and the recipe for the default shapes model."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pictext import training
from pictext.clip.io import save_clip
from pictext.clip.lit import lit_model
from pictext.clip.loss import SigLIPLoss, clip_loss, gather_features, gradcache_backward
from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig
from pictext.data.shapes import ShapesWorld
from pictext.text.tokenizer import train_bpe_tokenizer

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
    state_file, state = training.resume(run_dir, parts)
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
        pixels = model.preprocess.batch([image for image, _ in pairs]).to(device)
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
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done, "losses": losses}
            training.save_state(state_file, state | ({"siglip": siglip.state_dict()} if siglip else {}))
        if on_step is not None:
            on_step(step, losses[-1])
    bar.close()
    return losses[start:]


@dataclass(frozen=True)
class ShapesRecipe:
    """A small ViT CLIP for the CPU. The defaults are the shapes model: trained from scratch on the shapes world
    (held-out combos excluded). `DEFAULT_RECIPE` below is the default model: LiT on emoji plus shapes."""

    data: str = "shapes"  # "shapes", or "emoji+shapes": the emoji set's training split and the shapes world
    text: str = "scratch"  # "scratch": a small causal tower, BPE trained on the captions; "minilm": LiT's tower
    image_size: int = 32  # rendered at 64 px, resized: 16 patches of 8 px
    patch_size: int | None = 8  # None: a ModifiedResNet image tower with `vision_layers_rn` blocks
    vision_layers_rn: tuple[int, ...] = (1, 1, 1, 1)
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    embed_dim: int = 128
    vocab_size: int = 320
    context_length: int = 20
    max_shapes: int = 2
    grey_fraction: float = 0.5  # form-only shapes captioned by form alone: teaches shape apart from colour
    unnamed_colors: bool = True  # form-only shapes in random unnamed hues, not greys: 82% held-out, from 63%
    emoji_repeats: int = 4  # "emoji+shapes": each emoji counted this often against `shapes_length` shapes
    shapes_length: int = 12_000
    train: TrainConfig = TrainConfig(steps=900, batch_size=128, lr=2e-3)


DEFAULT_RECIPE = ShapesRecipe(
    data="emoji+shapes",
    text="minilm",
    image_size=48,
    context_length=32,
    train=TrainConfig(steps=900, batch_size=128, lr=2e-3, lock=("text",)),
)
RECIPES = {"default": DEFAULT_RECIPE, "shapes": ShapesRecipe()}


def recipe_data(recipe: ShapesRecipe, home: Path | None = None) -> PairDataset:
    """The recipe's training pairs; the emoji set is built under `home` (the pictext cache) on first use."""
    if recipe.data not in ("shapes", "emoji+shapes"):
        raise ValueError(f"recipe data must be 'shapes' or 'emoji+shapes', got {recipe.data!r}")
    world = ShapesWorld(
        size=64,
        max_shapes=recipe.max_shapes,
        grey_fraction=recipe.grey_fraction,
        unnamed_colors=recipe.unnamed_colors,
        length=1_000_000 if recipe.data == "shapes" else recipe.shapes_length,
        seed=recipe.train.seed,
    )
    if recipe.data == "shapes":
        return world
    from pictext import hub
    from pictext.data.emoji import ensure_emoji
    from pictext.data.pairs import FolderPairs, MixedPairs

    emoji = FolderPairs(ensure_emoji(home or hub.home()) / "train", seed=recipe.train.seed)
    return MixedPairs([(emoji, recipe.emoji_repeats), (world, 1)])


def build_shapes_model(recipe: ShapesRecipe, world: PairDataset) -> CLIP:
    """A fresh model of the recipe's size: LiT's pretrained text tower, or a small one with a BPE trained on up
    to 4,000 of the data's captions."""
    vision = VisionConfig(
        image_size=recipe.image_size,
        layers=recipe.vision_layers if recipe.patch_size else recipe.vision_layers_rn,
        width=recipe.vision_width,
        patch_size=recipe.patch_size,
        head_width=32,
    )
    training.seed_everything(recipe.train.seed)
    if recipe.text == "minilm":
        model = lit_model(vision, recipe.embed_dim, context_length=recipe.context_length)
    elif recipe.text == "scratch":
        caption_lists = getattr(world, "caption_lists", None)  # file datasets: captions without decoding images
        if caption_lists is not None:
            captions = [c for cs in caption_lists()[:4000] for c in cs]
        else:
            captions = [world[i][1] for i in range(min(len(world), 4000))]
        tokenizer = train_bpe_tokenizer(captions, recipe.vocab_size, recipe.context_length)
        text = TextConfig(
            context_length=recipe.context_length,
            vocab_size=tokenizer.vocab_size,
            width=recipe.text_width,
            heads=recipe.text_width // 32,
            layers=recipe.text_layers,
            eot_token_id=tokenizer.eot_token_id,
        )
        model = CLIP(CLIPConfig(embed_dim=recipe.embed_dim, vision=vision, text=text, activation="gelu"))
        model.tokenizer = tokenizer
    else:
        raise ValueError(f"recipe text must be 'scratch' or 'minilm', got {recipe.text!r}")
    model.preprocess = dataclasses.replace(
        model.preprocess, image_size=recipe.image_size, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    return model


def train_shapes(recipe: ShapesRecipe, out: str | Path | None = None, run_dir: str | Path | None = None) -> CLIP:
    """Train the recipe's model on its own data from nothing (resuming from run_dir); save to `out` if given."""
    return train_on(recipe, recipe_data(recipe), out, run_dir)


def train_on(
    recipe: ShapesRecipe, data: PairDataset, out: str | Path | None = None, run_dir: str | Path | None = None
) -> CLIP:
    """A model of the recipe's size trained on `data` (resuming from run_dir); saved to `out` by rank 0."""
    model = build_shapes_model(recipe, data)
    train_clip(model, data, recipe.train, run_dir=run_dir)
    model.eval()
    if out is not None and int(os.environ.get("RANK", 0)) == 0:  # under torchrun, rank 0 writes
        save_clip(model, out)
    return model
