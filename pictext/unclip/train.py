"""Training unCLIP's prior and decoder, as explicit loops; their CLIP embeddings computed once and cached.

Both stages live in the CLIP's embedding space, so CLIP runs once over the dataset (a progress bar), and the
embeddings are kept beside the run in `embeddings-KEY.pt`, KEY the CLIP's fingerprint and the dataset's: the
prior and the decoder, and any rerun, read them instead of running CLIP again. The weights kept and saved are
an exponential moving average (diffusers' `EMAModel`), as the paper does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel
from PIL import Image

from pictext import training
from pictext.clip.model import CLIP
from pictext.unclip.decoder import DiffusionDecoder
from pictext.unclip.diffusion import DiffusionConfig
from pictext.unclip.prior import DiffusionPrior, TextCondition
from pictext.unclip.upsampler import DiffusionUpsampler

PairDataset = Sequence[tuple[Image.Image, str]]


@dataclass(frozen=True)
class UnclipTrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4  # AdamW peak; linear warmup, cosine decay
    warmup: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    condition_dropout: float = 0.1  # share of pairs trained without their condition (for guidance)
    precision: str = "auto"
    seed: int = 0
    checkpoint_every: int = 250


@dataclass
class Embedded:
    """A dataset seen by a CLIP: what the prior and the decoder train on."""

    image: torch.Tensor  # (N, E) unit-norm image embeddings
    text: TextCondition  # per caption: embedding (N, E), token encodings (N, T, E) float16, mask (N, T)
    captions: list[str]


def text_condition(clip: CLIP, captions: Sequence[str]) -> TextCondition:
    """The CLIP's view of `captions`: unit-norm text embeddings and projected token encodings."""
    from pictext.clip.embed import inference

    tokens = clip.tokenizer(list(captions), truncate=True).to(clip.text_projection.device)  # type: ignore[misc]
    with inference(clip, "fp32"):
        hidden, mask = clip.text_sequence(tokens)
        pooled = hidden[torch.arange(len(tokens)), mask.sum(-1) - 1] if clip.config.text.kind == "clip" else None
        embedding = clip.encode_text(tokens) if pooled is None else clip.project_text(pooled)
        return TextCondition(F.normalize(embedding.float(), dim=-1), (hidden @ clip.text_projection).float(), mask)


def image_embeddings(clip: CLIP, images: Sequence[Image.Image]) -> torch.Tensor:
    from pictext.clip.embed import encode_images

    return torch.from_numpy(encode_images(clip, list(images), precision="fp32"))


def embed_dataset(clip: CLIP, data: PairDataset, cache: Path | None = None, batch_size: int = 256) -> Embedded:
    """Every pair's CLIP image embedding and text condition, computed once (cached in `cache`)."""
    from pictext.clip.embed import model_fingerprint

    key = hashlib.sha256(f"{model_fingerprint(clip)}|{len(data)}|{data[0][1]}|{data[len(data) - 1][1]}".encode())
    path = cache / f"embeddings-{key.hexdigest()[:16]}.pt" if cache is not None else None
    if path is not None and path.is_file():
        saved = training.load_state(path)
        text = TextCondition(saved["text_embedding"], saved["text_tokens"].float(), saved["text_mask"])
        return Embedded(saved["image"], text, list(saved["captions"]))
    images, texts, captions = [], [], []
    bar = training.progress(len(data), "CLIP embeddings")
    for start in range(0, len(data), batch_size):
        pairs = training.read_batch(data, range(start, min(start + batch_size, len(data))))
        images.append(image_embeddings(clip, [image for image, _ in pairs]))
        texts.append(text_condition(clip, [caption for _, caption in pairs]))
        captions += [caption for _, caption in pairs]
        bar.update(len(pairs))
    bar.close()
    text = TextCondition.cat(texts)
    out = Embedded(torch.cat(images), TextCondition(text.embedding, text.tokens.half(), text.mask), captions)
    if path is not None:
        training.save_state(path, {"image": out.image, "text_embedding": text.embedding, "text_tokens": out.text.tokens,
                                   "text_mask": text.mask, "captions": captions})  # fmt: skip
    out.text.tokens = out.text.tokens.float()
    return out


def train_prior(prior: DiffusionPrior, embedded: Embedded, cfg: UnclipTrainConfig,
                run_dir: str | Path | None = None) -> list[float]:  # fmt: skip
    """Fit the prior to (text condition -> image embedding); returns the loss of each step run; resumable."""

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        device = next(prior.parameters()).device  # the cached embeddings stay on the CPU; a batch moves
        return prior.loss(embedded.image[rows].to(device), embedded.text.index(rows).to(device), g, drop.to(device))

    return _train(prior, len(embedded.image), step_loss, cfg, run_dir, "train unclip prior")


def train_decoder(decoder: DiffusionDecoder, data: PairDataset, embedded: Embedded, cfg: UnclipTrainConfig,
                  run_dir: str | Path | None = None) -> list[float]:  # fmt: skip
    """Fit the decoder to (image embedding -> pixels of that image); returns each step's loss; resumable."""
    from pictext.images.tensors import to_pixels

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        device = next(decoder.parameters()).device
        pairs = training.read_batch(data, rows.tolist())
        pixels = to_pixels([image for image, _ in pairs], decoder.config.resolution).to(device)
        return decoder.loss(pixels, embedded.image[rows].to(device), g, drop.to(device))

    return _train(decoder, len(data), step_loss, cfg, run_dir, "train unclip decoder")


def train_upsampler(upsampler: DiffusionUpsampler, data: PairDataset, cfg: UnclipTrainConfig,
                    run_dir: str | Path | None = None) -> list[float]:  # fmt: skip
    """Fit the upsampler to (a picture's corrupted small version -> the picture); needs no CLIP; resumable."""
    from pictext.images.tensors import to_pixels

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        pairs = training.read_batch(data, rows.tolist())
        pixels = to_pixels([image for image, _ in pairs], upsampler.config.resolution)
        return upsampler.loss(pixels.to(next(upsampler.parameters()).device), g)

    return _train(upsampler, len(data), step_loss, cfg, run_dir, "train unclip upsampler")


def _train(model: torch.nn.Module, n: int, step_loss, cfg: UnclipTrainConfig, run_dir, desc: str) -> list[float]:  # noqa: ANN001
    """The loop both stages share: AdamW, warmup + cosine, condition dropout, EMA, exact resume."""
    device = training.default_device()
    precision = training.train_precision(cfg.precision, device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay)
    state_file, state = training.resume(run_dir, {"model": model, "opt": opt, "ema": ema}, model.config)
    start, losses = (state["step"], list(state["losses"])) if state else (0, [])
    bar = training.progress(cfg.steps, desc, initial=start)
    for step, indices in training.batches(n, cfg.batch_size, cfg.seed, start):
        if step >= cfg.steps:
            break
        began = time.perf_counter()
        g = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, step, 3]).integers(2**62)))
        rows = torch.as_tensor(indices)
        drop = torch.rand(len(rows), generator=g) < cfg.condition_dropout
        for group in opt.param_groups:
            group["lr"] = training.cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        opt.zero_grad(set_to_none=True)
        with training.autocast(precision, device):
            loss = step_loss(rows, drop, g)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.step(model.parameters())
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", pairs_s=f"{cfg.batch_size / (time.perf_counter() - began):.0f}")
        bar.update(1)
        done = step + 1
        if state_file is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            training.save_state(state_file, training.run_state(model.config, model=model.state_dict(),
                                opt=opt.state_dict(), ema=ema.state_dict(), step=done, losses=losses))  # fmt: skip
    bar.close()
    ema.copy_to(model.parameters())  # what is kept and saved: the averaged weights
    model.eval()
    return losses[start:]


# ---- the default unCLIP's recipe ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnclipRecipe:
    """The default unCLIP: a prior and a 32 px decoder in the `default` CLIP's space, trained on the shapes world
    (held-out colour-shape combinations never seen) and Google's emoji."""

    # the default CLIP knows emoji and shapes; it also names 80% of 32 px held-out single shapes zero-shot,
    # against 73% for the `shapes` CLIP the recipe used before
    clip: str = "default"
    prior_width: int = 256
    prior_heads: int = 4
    prior_layers: int = 4
    decoder_channels: tuple[int, ...] = (32, 64, 64)
    resolution: int = 32
    decoder_prediction: str = "v_prediction"
    # on 2 cores: the prior 0.5 s a step (13 minutes), the decoder 0.44 s (an hour). Decoder steps, in the shapes
    # CLIP's space on shapes alone: 4,000 kept the source's colour and shape in 75.7% of variations
    # (bench/unclip.py), 8,000 in 88.2% (eta 1, no guidance, 3 sampling seeds)
    prior_train: UnclipTrainConfig = UnclipTrainConfig(steps=1500, batch_size=128, lr=3e-4)
    decoder_train: UnclipTrainConfig = UnclipTrainConfig(steps=8000, batch_size=32, lr=3e-4)
    shapes_length: int = 20_000
    emoji_repeats: int = 1  # Google's 3,083 training emoji, once, beside the 20,000 shapes scenes; 0: shapes alone
    # The optional upsampler (`pictext train unclip-upsampler`), 32 -> 64 px, on the same scenes drawn at 64 px;
    # not part of `pictext models build unclip` nor of the shipped file
    upsampler_resolution: int = 64
    upsampler_channels: tuple[int, ...] = (32, 64, 64)
    upsampler_train: UnclipTrainConfig = UnclipTrainConfig(steps=2000, batch_size=16, lr=3e-4, condition_dropout=0.0)


def recipe_data(recipe: UnclipRecipe, size: int | None = None, home: Path | None = None) -> PairDataset:
    """The recipe's shapes world, drawn at the decoder's resolution or at `size`, and its emoji (built under
    `home`, the pictext cache, on first use)."""
    from pictext.data.emoji import beside_emoji
    from pictext.data.shapes import ShapesWorld

    shapes = ShapesWorld(size=size or recipe.resolution, max_shapes=2, grey_fraction=0.1,
                         length=recipe.shapes_length, seed=recipe.prior_train.seed)  # fmt: skip
    return beside_emoji(shapes, recipe.emoji_repeats, recipe.prior_train.seed, home)  # type: ignore[return-value]


def train_unclip(
    recipe: UnclipRecipe,
    data: PairDataset,
    clip: CLIP,
    run_dir: str | Path | None = None,
    stages: tuple[str, ...] = ("prior", "decoder"),
) -> tuple[DiffusionPrior, DiffusionDecoder]:
    """The recipe's prior and decoder on `data` in `clip`'s space, each resumable in its own run folder."""
    from pictext.unclip.decoder import DecoderConfig
    from pictext.unclip.prior import PriorConfig

    run = Path(run_dir) if run_dir else None
    embedded = embed_dataset(clip, data, cache=run)
    E, T = clip.config.embed_dim, clip.config.text.context_length
    training.seed_everything(recipe.prior_train.seed)
    prior = DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=recipe.prior_width, heads=recipe.prior_heads,
                                       layers=recipe.prior_layers))  # fmt: skip
    diffusion = DiffusionConfig(prediction=recipe.decoder_prediction, clip_sample=True)
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=recipe.resolution,
                                             channels=recipe.decoder_channels, diffusion=diffusion))  # fmt: skip
    if "prior" in stages:
        train_prior(prior, embedded, recipe.prior_train, run / "prior" if run else None)
    if "decoder" in stages:
        train_decoder(decoder, data, embedded, recipe.decoder_train, run / "decoder" if run else None)
    return prior.eval(), decoder.eval()


def train_recipe_upsampler(recipe: UnclipRecipe, data: PairDataset, run_dir: str | Path | None = None,
                           low: int | None = None) -> DiffusionUpsampler:  # fmt: skip
    """The recipe's upsampler (from `low`, default the recipe's decoder size) on `data`, resumable in
    run_dir/upsampler. It needs no CLIP: it learns to enlarge pictures, whatever they show."""
    from pictext.unclip.upsampler import UpsamplerConfig

    training.seed_everything(recipe.upsampler_train.seed)
    upsampler = DiffusionUpsampler(UpsamplerConfig(low=low or recipe.resolution, resolution=recipe.upsampler_resolution,
                                                   channels=recipe.upsampler_channels))  # fmt: skip
    train_upsampler(upsampler, data, recipe.upsampler_train, Path(run_dir) / "upsampler" if run_dir else None)
    return upsampler.eval()
