"""Text to image with a DALL-E: draw `samples` pictures, keep the `keep` a CLIP scores highest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from pictext.clip.model import CLIP
from pictext.dalle.io import DALLEPipeline
from pictext.dalle.sampling import SamplingConfig
from pictext.generate.rerank import rerank
from pictext.generate.vqgan_clip import Generated, GenerationError, Step


@dataclass(frozen=True)
class DALLESettings:
    samples: int = 16  # pictures drawn
    keep: int = 1  # pictures kept, best CLIP score first
    guidance_scale: float = 3.0  # classifier-free guidance; 1 is the plain conditional model
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    prime_rows: int | None = None  # with a prime image: its top token rows kept (default: half)
    batch_size: int = 16  # pictures drawn at once

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise GenerationError(f"samples must be at least 1, got {self.samples}")
        if not 1 <= self.keep <= self.samples:
            raise GenerationError(f"keep must be between 1 and samples ({self.samples}), got {self.keep}")
        try:
            self.sampling()
        except ValueError as e:
            raise GenerationError(str(e)) from e

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.guidance_scale)


def generate_dalle(
    prompt: str,
    pipeline: DALLEPipeline,
    clip: CLIP | Sequence[CLIP],
    settings: DALLESettings = DALLESettings(),
    prime: Image.Image | None = None,
    callback: Callable[[Step, Image.Image], bool | None] | None = None,
) -> Generated:
    """The kept pictures (best first) with their CLIP scores (summed over several CLIPs); `callback(step, picture)`
    sees each kept one, ranked, with its score (returning False stops the report, not the drawing, which is done
    by then)."""
    try:
        pipeline.text(prompt)
    except ValueError as e:
        raise GenerationError(str(e)) from e
    drawn = pipeline.draw(prompt, settings.samples, settings.sampling(), settings.seed, prime, settings.prime_rows,
                          settings.batch_size)  # fmt: skip
    ranked = rerank(drawn, prompt, clip, settings.keep)
    if callback is not None:
        for rank, (image, score, index) in enumerate(zip(ranked.images, ranked.scores, ranked.indices)):
            if callback(Step(rank, float("nan"), score, {"sample": index}), image) is False:
                break
    return Generated(ranked.images[0], [], samples=ranked.images, scores=ranked.scores,
                     all_scores=ranked.all_scores)  # fmt: skip
