"""Text to image with unCLIP: the prior draws CLIP image embeddings for the caption, the decoder draws pixels.
Variations and interpolations take pictures instead of a caption; their settings are here too, so that the CLI
and the server check them alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from pictext.errors import Cancelled
from pictext.generate.base import (
    MAX_SEED,
    Callback,
    Generated,
    GenerationError,
    Generator,
    ModelArg,
    ModelCache,
    ModelSpec,
    Settings,
    Step,
    model_name,
    progress_check,
    read_seed,
    setting,
)
from pictext.generate.rerank import clip_scores
from pictext.unclip import DECODER_GUIDANCE

if TYPE_CHECKING:  # unCLIP brings diffusers (seconds to import): loaded when an unCLIP is asked for
    from pictext.unclip.pipeline import UnclipPipeline

# Karlo's own defaults (diffusers' UnCLIPPipeline): the preset a Karlo model calls for. One picture by default:
# each 256 px picture costs minutes on a laptop CPU (README, Published weights).
KARLO = {"prior_guidance": 4.0, "guidance_scale": 8.0, "steps": 25}


def is_karlo(spec: object) -> bool:
    """True for a Karlo model: a registry name of that format, or a folder in diffusers' unCLIP layout."""
    from pictext import published

    def is_folder(path: str | os.PathLike) -> bool:  # imports diffusers: only for a path, not a registry name
        from pictext.unclip.karlo import is_karlo_folder

        return is_karlo_folder(path)

    if not isinstance(spec, str | os.PathLike):
        return type(spec).__name__ == "KarloPipeline"
    return published.is_format(spec, "diffusers-unclip", is_folder)


def _guidance(default: float, help: str, flag: str | None = None) -> float:
    return setting(default, help, low=0.0, high=100.0, page=10.0, flag=flag)


def _decoder_steps() -> int:
    return setting(50, "the decoder's DDIM steps", low=1, high=1000, page=200)


def _seed() -> int:
    return setting(0, "the same seed and settings give the same pictures", low=0, high=MAX_SEED, parse=read_seed)


def _upsample() -> bool:
    return setting(True, "through the file's upsampler, when it has one", flag="--no-upsample")


@dataclass(frozen=True)
class UnclipSettings(Settings):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"karlo": KARLO | {"samples": 1}}
    samples: int = setting(4, "pictures drawn", low=1, high=1024, page=8)
    guidance_scale: float = _guidance(DECODER_GUIDANCE, "the decoder's classifier-free guidance, 1: none", "--guidance")
    prior_guidance: float = _guidance(1.0, "the prior's classifier-free guidance, 1: none")
    steps: int = _decoder_steps()
    eta: float = setting(1.0, "DDIM's fresh noise per step: 0 deterministic, 1 DDPM-like", low=0.0, high=1.0)
    seed: int = _seed()
    upsample: bool = _upsample()


@dataclass(frozen=True)
class VarySettings(Settings):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"karlo": {"guidance_scale": 8.0, "steps": 25, "n": 1}}
    n: int = setting(4, "variations", low=1, high=1024, page=8, flag="-n")
    guidance_scale: float = _guidance(DECODER_GUIDANCE, "the decoder's guidance, 1: none", "--guidance")
    steps: int = _decoder_steps()
    eta: float = setting(1.0, "DDIM's fresh noise per step: 0 deterministic, 1 DDPM-like", low=0.0, high=1.0)
    seed: int = _seed()
    upsample: bool = _upsample()


@dataclass(frozen=True)
class InterpolateSettings(Settings):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"karlo": {"guidance_scale": 8.0, "steps": 25, "n": 4}}
    n: int = setting(8, "pictures, both ends included", low=2, high=1024, page=12, flag="-n")
    guidance_scale: float = _guidance(DECODER_GUIDANCE, "the decoder's guidance, 1: none", "--guidance")
    steps: int = _decoder_steps()
    seed: int = _seed()
    upsample: bool = _upsample()


def generate_unclip(
    prompt: str, pipeline: UnclipPipeline, settings: UnclipSettings, callback: Callback | None = None
) -> Generated:
    """The drawn pictures in order, each with its CLIP score (the pipeline's CLIP). `callback(step, None)` sees each
    diffusion step (prior, decoder, upsampler), then `callback(step, picture)` each picture; False stops."""
    if not prompt.strip():
        raise GenerationError("the prompt is empty; unCLIP draws a caption, e.g. 'a red circle'")
    s = settings
    check = progress_check(callback, pipeline.total_steps(s.steps, s.upsample))
    try:
        images = pipeline.generate(prompt, s.samples, s.prior_guidance, s.guidance_scale, s.steps, s.seed, s.eta,
                                   upsample=s.upsample, check=check)  # fmt: skip
    except Cancelled:
        return Generated(Image.new("RGB", (pipeline.resolution,) * 2), [], stopped_early=True)
    # a Karlo text-to-image folder has no image encoder: its pictures get no CLIP score
    scores = [float(x) for x in clip_scores(images, prompt, pipeline.clip)] if pipeline.clip.has_image_tower else []
    result = Generated(images[0], [], samples=images, scores=scores, all_scores=scores)
    if callback is not None:
        for i, image in enumerate(images):
            if callback(Step(i, float("nan"), scores[i] if scores else float("nan"), {}), image) is False:
                result.stopped_early = True
                break
    return result


class UnclipGenerator(Generator):
    """unCLIP (DALL-E 2): a diffusion prior from the caption to a CLIP image embedding, a diffusion decoder from
    that embedding to pixels, in the space of the CLIP the file names."""

    method = "unclip"
    Settings = UnclipSettings
    MODELS = (
        ModelArg("unclip", "unCLIP file or local name (it draws in the space of the CLIP it names)"),
        ModelArg("clip", "the CLIP the unCLIP file was trained with, when that is a file (default: the one it names)"),
    )

    def __init__(self, pipeline: UnclipPipeline, names: dict) -> None:
        super().__init__(names)
        self.pipeline = pipeline

    @classmethod
    def defaults(cls, prompt: str | None) -> dict:
        """`unclip-ru` (the `shapes` CLIP's space, trained on the shapes world in English and Russian) for a
        Russian prompt, whose words the default CLIP's English text tower cannot read, and for an English one
        naming a shapes-world colour and shape, which it draws right more often (docs/measurements.md); else
        (emoji, anything else, and variations, which have no prompt) the default unCLIP, in the default CLIP's
        space, which knows emoji."""
        from pictext.data.shapes import prompt_language, prompt_target

        shapes = prompt is not None and (prompt_language(prompt) == "ru" or prompt_target(prompt) is not None)
        return {"unclip": "unclip-ru" if shapes else "unclip"}

    @classmethod
    def preset_for(cls, models: dict[str, Any]) -> str | None:
        """ "karlo" (Karlo's own guidance and steps) for a Karlo model; None for pictext's own unCLIP."""
        return "karlo" if is_karlo(models.get("unclip")) else None

    @classmethod
    def load(cls, cache: ModelCache | None = None, **models: ModelSpec) -> UnclipGenerator:
        from pictext.generate.models import load_unclip_model

        clip = models.get("clip")
        if isinstance(clip, list | tuple):  # the CLI's --clip is repeatable (for the other methods)
            if len(clip) != 1:
                raise GenerationError(f"unclip draws in the space of one CLIP; {len(clip)} were given")
            clip = clip[0]
        kind = "unclip" if clip is None else f"unclip with the CLIP {model_name(clip)}"
        pipeline = (cache or ModelCache()).get(kind, models["unclip"], lambda spec: load_unclip_model(spec, clip))
        names = {"unclip": model_name(models["unclip"])} | ({} if clip is None else {"clip": model_name(clip)})
        return cls(pipeline, names)

    def __call__(self, prompt: str, settings: UnclipSettings, callback: Callback | None = None) -> Generated:
        result = generate_unclip(prompt, self.pipeline, settings, callback)
        record = self.record(prompt, settings)
        result.records = [record | {"clip_score": score} for score in result.scores] or [record] * len(result.samples)
        return result
