"""Reranking: draw many pictures, keep the ones a CLIP finds closest to the prompt (DALL-E's last stage).

The paper drew 512 samples per caption and kept the best by a contrastive model; any generator here can hand
its samples to `rerank`. Several CLIPs rerank together by the sum of their cosines, as VQGAN+CLIP sums their
losses: CLIPs trained apart err apart, so a picture all of them rate well is more often right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pictext.clip.model import CLIP
from pictext.errors import UsageError


@dataclass
class Ranked:
    images: list[Image.Image]  # the kept pictures, best first
    scores: list[float]  # each one's cosine with the prompt (summed over the CLIPs), in the same order
    indices: list[int]  # each one's position among the pictures given
    all_scores: list[float]  # every picture's score, in the order given


def clip_scores(images: Sequence[Image.Image], prompt: str, clip: CLIP) -> np.ndarray:
    """(N,) cosine of each picture with the prompt, computed in float32 (a ranking should not hinge on bf16)."""
    from pictext.api import encode_images, encode_texts

    text = encode_texts([prompt], model=clip, truncate=True, precision="fp32")[0]
    return encode_images(list(images), model=clip, precision="fp32") @ text


def rerank(images: Sequence[Image.Image], prompt: str, clip: CLIP | Sequence[CLIP], keep: int) -> Ranked:
    """The `keep` pictures of `images` with the highest CLIP score for `prompt` (ties keep the earlier one); with
    several CLIPs, the score is the sum of their cosines."""
    if not 1 <= keep <= len(images):
        raise UsageError(f"keep must be between 1 and the number of samples ({len(images)}), got {keep}")
    clips = [clip] if isinstance(clip, CLIP) else list(clip)
    if not clips:
        raise UsageError("rerank needs at least one CLIP")
    scores = sum(clip_scores(images, prompt, c) for c in clips)
    order = np.argsort(-scores, kind="stable")[:keep]
    return Ranked([images[i] for i in order], [float(scores[i]) for i in order], [int(i) for i in order],
                  [float(s) for s in scores])  # fmt: skip
