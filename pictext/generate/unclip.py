"""Text to image with unCLIP: the prior draws CLIP image embeddings for the caption, the decoder draws pixels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from pictext.generate.rerank import clip_scores
from pictext.generate.vqgan_clip import Generated, GenerationError, Step
from pictext.unclip.pipeline import DECODER_GUIDANCE, UnclipPipeline


@dataclass(frozen=True)
class UnclipSettings:
    samples: int = 4  # pictures drawn
    guidance_scale: float = DECODER_GUIDANCE  # the decoder's classifier-free guidance (see DECODER_GUIDANCE)
    prior_guidance: float = 1.0  # the prior's
    steps: int = 50  # the decoder's DDIM steps (the prior takes 64)
    eta: float = 1.0  # DDIM's fresh noise per step: 0 deterministic, 1 DDPM-like (see UnclipPipeline.generate)
    seed: int = 0
    upsample: bool = True  # through the file's upsampler, when it has one

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise GenerationError(f"samples must be at least 1, got {self.samples}")
        if self.steps < 1:
            raise GenerationError(f"steps must be at least 1, got {self.steps}")
        if not 0 <= self.eta <= 1:
            raise GenerationError(f"eta must be between 0 (deterministic DDIM) and 1 (DDPM-like), got {self.eta}")
        for name in ("guidance_scale", "prior_guidance"):
            if getattr(self, name) < 0:
                raise GenerationError(f"{name} must be >= 0 (1 is no guidance), got {getattr(self, name)}")


def generate_unclip(
    prompt: str,
    pipeline: UnclipPipeline,
    settings: dict[str, object],
    callback: Callable[[Step, Image.Image], bool | None] | None = None,
) -> Generated:
    """The drawn pictures in order, each with its CLIP score (the pipeline's CLIP); `callback` sees each."""
    unknown = set(settings) - {f.name for f in dataclasses.fields(UnclipSettings)}
    if unknown:
        raise GenerationError(f"unknown settings {sorted(unknown)} for unclip; known: UnclipSettings' fields")
    s = UnclipSettings(**settings)  # type: ignore[arg-type]
    if not prompt.strip():
        raise GenerationError("the prompt is empty; unCLIP draws a caption, e.g. 'a red circle'")
    images = pipeline.generate(prompt, s.samples, s.prior_guidance, s.guidance_scale, s.steps, s.seed, s.eta,
                               upsample=s.upsample)  # fmt: skip
    scores = [float(x) for x in clip_scores(images, prompt, pipeline.clip)]
    if callback is not None:
        for i, (image, score) in enumerate(zip(images, scores)):
            if callback(Step(i, float("nan"), score, {}), image) is False:
                break
    return Generated(images[0], [], samples=images, scores=scores, all_scores=scores)
