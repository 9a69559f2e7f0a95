"""Drawing image tokens from a DALL-E: a KV cache, temperature, top-k, top-p, classifier-free guidance, priming.

Each step feeds one token through the transformer and reuses the keys and values of every earlier position
(`KVCache`), so drawing N image tokens costs N one-position passes instead of N passes over the whole stream.
Classifier-free guidance (Ho & Salimans 2022; for DALL-E as in DALLE-pytorch's `cond_scale`) runs the
conditional stream and the unconditional one (the empty caption) as one batch of 2B, and mixes their logits:
uncond + scale * (cond - uncond). Scale 1 is the conditional model, and skips the unconditional stream.

Further captions can guide too (composable guidance, Liu et al. 2022, "Compositional Visual Generation with
Composable Diffusion Models", here on a transformer's logits): each runs as one more stream of the batch, and
the logits are uncond + scale * sum_i w_i (cond_i - uncond) / (the sum of the positive weights), the caption
weighing 1. One caption is plain guidance; a negative weight steers away from its caption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pictext.dalle.model import DALLE, KVCache


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # logits are divided by it; lower is more conservative
    top_k: int | None = None  # keep only the k most likely tokens
    top_p: float | None = None  # keep the fewest most likely tokens whose probabilities sum to at least top_p
    guidance_scale: float = 1.0  # classifier-free guidance; 1 is the plain conditional model
    use_cache: bool = True  # False recomputes the whole prefix each step (slow; for checking the cache)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance scale must be >= 0 (1 is no guidance), got {self.guidance_scale}")


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, image_grid, image_grid) image tokens
    logits: torch.Tensor | None = None  # (B, N, image_vocab) guided logits each token was drawn from, if asked


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return cond  # exactly, not cond up to rounding
    return uncond + scale * (cond - uncond)


def composed_logits(
    conds: list[torch.Tensor], weights: list[float], uncond: torch.Tensor, scale: float
) -> torch.Tensor:
    """uncond + scale * sum_i w_i (cond_i - uncond) / sum of the positive w_i; one caption is `guided_logits`."""
    if len(conds) == 1:
        return guided_logits(conds[0], uncond, scale)
    total = sum(w for w in weights if w > 0)
    return uncond + scale * sum((w / total) * (c - uncond) for c, w in zip(conds, weights))


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """(B, V) logits / temperature, with everything outside top-k and top-p set to -inf."""
    logits = logits / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        # The k-th largest as the smallest of an unsorted top-k: the same value, much faster on CPU than sorting
        # (bench/README.md)
        kth = torch.topk(logits, cfg.top_k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens more likely than each one
        drop_sorted = before >= cfg.top_p  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model: DALLE,
    text: torch.Tensor,
    cfg: SamplingConfig = SamplingConfig(),
    generator: torch.Generator | None = None,
    prime: torch.Tensor | None = None,
    return_logits: bool = False,
    guides: Sequence[tuple[torch.Tensor, float]] = (),
    check: Callable[[], None] | None = None,
) -> Samples:
    """Image tokens for each caption of `text` (B, text_len tokenizer ids; repeat a caption for several
    samples). `prime` (B, m) fixes the first m image tokens (raster order) and draws the rest. `guides`: further
    captions (B, text_len) with their weights, guiding with `text` (weight 1) as the module doc says. `check` is
    called before every token (it raises `pictext.errors.Cancelled` to stop the drawing)."""
    c = model.config
    device = next(model.parameters()).device
    B, text = text.shape[0], text.to(device)
    m = 0 if prime is None else prime.shape[1]
    if prime is not None and (prime.shape[0] != B or not 0 <= m < c.image_len):
        raise ValueError(f"prime must be ({B}, m) with m < {c.image_len} image tokens, got {tuple(prime.shape)}")
    for guide, weight in guides:
        if guide.shape != text.shape or not math.isfinite(weight):
            raise ValueError(f"a guide must be {tuple(text.shape)} token ids with a finite weight, got "
                             f"{tuple(guide.shape)} and {weight}")  # fmt: skip
    captions = [text, *(guide.to(device) for guide, _ in guides)]
    weights = [1.0, *(float(w) for _, w in guides)]
    guided = cfg.guidance_scale != 1.0 or len(captions) > 1
    if guided:
        captions.append(model.null_text(B, device))
    stream = model.text_tokens(torch.cat(captions))  # (S * B, L): the caption, the guides, then the empty caption
    streams = len(captions)
    dtype = next(model.parameters()).dtype
    run = _Cached(model, stream.shape[0], device, dtype) if cfg.use_cache else _Uncached(model)
    tokens = torch.zeros(B, c.image_len, dtype=torch.long, device=device)
    if prime is not None:
        tokens[:, :m] = prime.to(device)
    h = run.start(stream, tokens[:, :m].repeat(streams, 1))  # (S * B, C): the hidden state that predicts token m
    kept = []
    for q in range(m, c.image_len):
        if check is not None:
            check()
        logits = model.image_logits(h).float()
        if guided:
            parts = logits.split(B)
            logits = composed_logits(list(parts[:-1]), weights, parts[-1], cfg.guidance_scale)
        if return_logits:
            kept.append(logits)
        probs = filter_logits(logits, cfg).softmax(-1)
        tokens[:, q] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        if q + 1 < c.image_len:
            h = run.step(tokens[:, q : q + 1].repeat(streams, 1), q)
    grid = tokens.view(B, c.image_grid, c.image_grid)
    return Samples(grid, torch.stack(kept, 1) if return_logits else None)


class _Cached:
    """One position per step through a KV cache."""

    def __init__(self, model: DALLE, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.cache = model, KVCache(model.config, batch, device, dtype)

    def start(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.model.embed(text, image if image.shape[1] else None)
        return self.model.hidden(x, self.cache)[:, -1]

    def step(self, token: torch.Tensor, index: int) -> torch.Tensor:
        x = self.model.embed(None, token, start=self.model.config.text_len + index)
        return self.model.hidden(x, self.cache)[:, -1]


class _Uncached:
    """The whole prefix through the model at every step: what the cache must reproduce."""

    def __init__(self, model: DALLE) -> None:
        self.model = model

    def start(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        self.text, self.image = text, image
        return self._last()

    def step(self, token: torch.Tensor, index: int) -> torch.Tensor:
        self.image = torch.cat([self.image, token], dim=1)
        return self._last()

    def _last(self) -> torch.Tensor:
        x = self.model.embed(self.text, self.image if self.image.shape[1] else None)
        return self.model.hidden(x)[:, -1]
