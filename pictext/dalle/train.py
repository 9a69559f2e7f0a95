"""Training a DALL-E: its step on the training driver (`training.fit`), and its image tokens computed once.

Images are turned into tokens once, before the first step (a progress bar; cached in the run folder, keyed by
the image tokenizer's weights and the dataset), so each step runs the transformer alone. A share of the
pairs (`caption_dropout`) is trained with the empty caption: the unconditional model that classifier-free
guidance needs at sampling, learnt by the same network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictext import training
from pictext.dalle.model import DALLE
from pictext.dalle.pipeline import ImageTokenizer

PairDataset = Sequence[tuple[Image.Image, str]]


@dataclass(frozen=True)
class DALLETrainConfig(training.TrainConfig):
    """A DALL-E's training run: the driver's fields and its own."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3  # AdamW peak; linear warmup, then cosine decay to zero
    warmup: int = 100
    weight_decay: float = 0.01  # on matrices only, not on norms, biases or embeddings
    grad_clip: float | None = 1.0
    caption_dropout: float = 0.1  # share of pairs trained with the empty caption (for guidance)


@dataclass
class StepLog:
    loss: float
    text_loss: float
    image_loss: float


def encode_images(
    vqgan: ImageTokenizer, data: PairDataset, batch_size: int = 64, cache: Path | None = None
) -> tuple[torch.Tensor, list[str]]:
    """((N, grid, grid) image tokens, N captions) of every pair, computed once; with `cache`, read from and
    written to cache/tokens-KEY.pt where KEY hashes the tokenizer's weights and the dataset's size and pairs."""
    from pictext.images.tensors import to_pixels

    path = cache / f"tokens-{_fingerprint(vqgan, data)}.pt" if cache is not None else None
    if path is not None and path.is_file():
        saved = training.load_state(path)
        return saved["tokens"], list(saved["captions"])
    tokens, captions = [], []
    bar = training.progress(len(data), "image tokens")
    vqgan.eval()
    device = next(vqgan.parameters()).device
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            pairs = training.read_batch(data, range(start, min(start + batch_size, len(data))))
            x = to_pixels([image for image, _ in pairs], vqgan.config.resolution).to(device)
            tokens.append(vqgan.encode(x).indices.cpu())
            captions += [caption for _, caption in pairs]
            bar.update(len(pairs))
    bar.close()
    out = torch.cat(tokens)
    if path is not None:
        training.save_state(path, {"tokens": out, "captions": captions})
    return out, captions


def _fingerprint(vqgan: ImageTokenizer, data: PairDataset) -> str:
    h = hashlib.sha256()
    for v in vqgan.state_dict().values():
        h.update(v.detach().float().cpu().numpy().tobytes())
    h.update(str(len(data)).encode())
    for i in np.linspace(0, len(data) - 1, num=min(16, len(data)), dtype=int):
        image, caption = data[int(i)]
        h.update(caption.encode())
        h.update(np.asarray(image).tobytes())
    return h.hexdigest()[:16]


def train_dalle(
    model: DALLE,
    tokens: torch.Tensor,
    texts: torch.Tensor,
    cfg: DALLETrainConfig,
    run_dir: str | Path | None = None,
    device: torch.device | None = None,
    on_step: Callable[[int, StepLog], None] | None = None,
) -> list[StepLog]:
    """Train on (N, grid, grid) image `tokens` and (N, text_len) tokenized `texts`; returns the steps run.

    With `run_dir`, a state (model, optimizer, step, logs) is saved every `cfg.checkpoint_every` steps and at
    the end, and a run with the same run_dir resumes from it exactly (batches are a function of seed and step).
    """
    model.train()
    opt = torch.optim.AdamW(training.param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    null = model.null_text(1, torch.device("cpu"))

    def step(batch: training.Batch) -> training.StepResult:
        rows = torch.as_tensor(batch.indices)
        drop = torch.as_tensor(batch.rng(7).random(batch.size) < cfg.caption_dropout)[batch.share]
        text = torch.where(drop[:, None], null, texts[rows])
        out = model(text.to(batch.device), tokens[rows].to(batch.device))
        logs = {"loss": out.loss.item(), "text_loss": out.text_loss.item(), "image_loss": out.image_loss.item()}
        return training.StepResult({"opt": out.loss}, logs)

    hook = (lambda i, log: on_step(i, StepLog(**log))) if on_step is not None else None
    logs = training.fit(step, {"model": model}, {"opt": opt}, len(tokens), cfg, run_dir=run_dir,
                        config=model.config, desc="train dalle", device=device, on_step=hook)  # fmt: skip
    model.eval()
    return [StepLog(**log) for log in logs]
