"""Training unCLIP's prior, decoder and upsampler on the training driver; their CLIP embeddings computed once.

Both stages live in the CLIP's embedding space, so CLIP runs once over the dataset (a progress bar), and the
embeddings are kept beside the run in `embeddings-KEY.pt`, KEY the CLIP's fingerprint and the dataset's: the
prior and the decoder, and any rerun, read them instead of running CLIP again. The weights kept and saved are
an exponential moving average (the driver's `ema_decay`, diffusers' `EMAModel`), as the paper does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from pictext import training
from pictext.clip.model import CLIP
from pictext.images.tensors import to_pixels
from pictext.unclip.decoder import DiffusionDecoder
from pictext.unclip.prior import DiffusionPrior, TextCondition
from pictext.unclip.upsampler import DiffusionUpsampler

PairDataset = Sequence[tuple[Image.Image, str]]
OnStep = Callable[[int, dict[str, float]], None] | None


@dataclass(frozen=True)
class UnclipTrainConfig(training.TrainConfig):
    """A prior's, decoder's or upsampler's training run: the driver's fields and its own."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4  # AdamW peak; linear warmup, cosine decay
    warmup: int = 100
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999  # the weights kept and saved are the moving average, as the paper's
    condition_dropout: float = 0.1  # share of pairs trained without their condition (for guidance)


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


def train_prior(prior: DiffusionPrior, embedded: Embedded, cfg: UnclipTrainConfig, run_dir: str | Path | None = None,
                on_step: OnStep = None) -> list[float]:  # fmt: skip
    """Fit the prior to (text condition -> image embedding); returns the loss of each step run; resumable."""

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator, batch: training.Batch) -> torch.Tensor:
        device = batch.device  # the cached embeddings stay on the CPU; a batch moves
        return prior.loss(embedded.image[rows].to(device), embedded.text.index(rows).to(device), g, drop.to(device),
                          batch.part)  # fmt: skip

    return _train(prior, len(embedded.image), step_loss, cfg, run_dir, "train unclip prior", on_step)


def train_decoder(decoder: DiffusionDecoder, data: PairDataset, embedded: Embedded, cfg: UnclipTrainConfig,
                  run_dir: str | Path | None = None, on_step: OnStep = None) -> list[float]:  # fmt: skip
    """Fit the decoder to (image embedding -> pixels of that image); returns each step's loss; resumable."""

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator, batch: training.Batch) -> torch.Tensor:
        pairs = training.read_batch(data, rows.tolist())
        pixels = to_pixels([image for image, _ in pairs], decoder.config.resolution).to(batch.device)
        return decoder.loss(pixels, embedded.image[rows].to(batch.device), g, drop.to(batch.device), batch.part)

    return _train(decoder, len(data), step_loss, cfg, run_dir, "train unclip decoder", on_step)


def train_upsampler(upsampler: DiffusionUpsampler, data: PairDataset, cfg: UnclipTrainConfig,
                    run_dir: str | Path | None = None, on_step: OnStep = None) -> list[float]:  # fmt: skip
    """Fit the upsampler to (a picture's corrupted small version -> the picture); needs no CLIP; resumable."""

    def step_loss(rows: torch.Tensor, drop: torch.Tensor, g: torch.Generator, batch: training.Batch) -> torch.Tensor:
        pairs = training.read_batch(data, rows.tolist())
        pixels = to_pixels([image for image, _ in pairs], upsampler.config.resolution)
        return upsampler.loss(pixels.to(batch.device), g, batch.part)

    return _train(upsampler, len(data), step_loss, cfg, run_dir, "train unclip upsampler", on_step)


def _train(model: torch.nn.Module, n: int, step_loss, cfg: UnclipTrainConfig, run_dir, desc: str,
           on_step: OnStep) -> list[float]:  # fmt: skip
    """What the three stages share: AdamW, condition dropout drawn for the whole batch, the driver (with its EMA)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(batch: training.Batch) -> training.StepResult:
        g = batch.generator(3)  # noise, timesteps and dropout: a function of (seed, step), drawn whole
        drop = (torch.rand(batch.size, generator=g) < cfg.condition_dropout)[batch.share]
        loss = step_loss(torch.as_tensor(batch.indices), drop, g, batch)
        return training.StepResult({"opt": loss}, {"loss": loss.item()})

    logs = training.fit(step, {"model": model}, {"opt": opt}, n, cfg, run_dir=run_dir, config=model.config, desc=desc,
                        on_step=on_step)  # fmt: skip
    model.eval()
    return [log["loss"] for log in logs]
