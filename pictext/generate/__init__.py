"""Text-to-image generation on top of the model families: VQGAN+CLIP, DALL-E with CLIP reranking, and the
outputs every generator writes.

result = pictext.generate("a red circle", method="vqgan-clip", vqgan="my-vqgan.safetensors", seed=3)
result = pictext.generate("a red circle", method="dalle", samples=16, keep=4, guidance_scale=3)
result.image.save("red-circle.png"); result.clip_score
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PIL import Image

from pictext.clip.model import CLIP
from pictext.dalle.io import DALLEPipeline
from pictext.generate.vqgan_clip import (
    GenerateConfig,
    Generated,
    GenerationError,
    Prompt,
    Step,
    generate_vqgan_clip,
    parse_prompts,
)
from pictext.vqgan.model import VQGAN

if TYPE_CHECKING:  # unCLIP brings diffusers (2.7 s to import): loaded when an unCLIP is asked for
    from pictext.unclip.pipeline import UnclipPipeline

METHODS = ("vqgan-clip", "dalle", "unclip")
ModelSpec = str | os.PathLike | None


def default_clip_for(prompt: str) -> str:
    """The CLIP that guides by default: the `shapes` model for a shapes-world prompt, else the default model."""
    from pictext.data.shapes import prompt_target

    return "shapes" if prompt_target(prompt) is not None else "default"


def default_rerankers_for(prompt: str) -> list[str]:
    """The CLIPs that rerank DALL-E's samples by default: for a shapes-world prompt the `shapes` and the default
    CLIP together, else the default CLIP. (bench/dalle.py, held-out shapes captions, DALL-E's defaults: the best
    of 16 was right for 84.4% reranked by both, 84.4% by the default CLIP alone, 77.8% by the shapes CLIP alone;
    the sum was chosen with an earlier model, where it gave 77.8% against 75.6% for either alone.)"""
    return ["shapes", "default"] if default_clip_for(prompt) == "shapes" else ["default"]


def default_vqgan_for(prompt: str) -> str:
    """The VQGAN that draws by default: for a shapes-world prompt the default DALL-E's image tokenizer (32 px,
    trained on the shapes world: VQGAN+CLIP drew 51.1% of seen and 66.7% of held-out shapes prompts right with it;
    the 64 px default VQGAN 3 of its first 24 runs, its cutouts being fragments of the picture;
    bench/vqgan_clip.py), else the default VQGAN."""
    from pictext.data.shapes import prompt_target

    return "dalle" if prompt_target(prompt) is not None else "vqgan"


def generate(
    prompt: str,
    method: str = "vqgan-clip",
    *,
    clip: CLIP | ModelSpec | Sequence[CLIP | ModelSpec] = None,
    vqgan: VQGAN | ModelSpec = None,
    dalle: DALLEPipeline | ModelSpec = None,
    unclip: UnclipPipeline | ModelSpec = None,
    prime: Image.Image | None = None,
    image_prompts: Sequence[Image.Image] = (),
    init_image: Image.Image | None = None,
    callback: Callable[[Step, Image.Image], bool | None] | None = None,
    **settings: object,
) -> Generated:
    """Draw `prompt` and return the picture, its CLIP score and how it was made.

    vqgan-clip ('a red apple:1 | green:-0.5'): clip is one or several CLIPs (models, files or names) whose
    losses are summed (default: see default_clip_for); vqgan the VQGAN whose latent is optimized (default:
    see default_vqgan_for); settings are GenerateConfig's fields (steps, size, seed, cutouts, lr, drawer, init, ...);
    `callback(step, frame)` sees every step, and returning False stops.
    dalle: dalle is the DALL-E (default: 'dalle'), clip the CLIP or CLIPs that rerank, their cosines summed
    (default: see default_rerankers_for); settings are DALLESettings'
    fields (samples, keep, guidance_scale, temperature, top_k, top_p, seed); `prime` completes the lower part
    of an image; `callback` sees each kept picture with its score.
    unclip: unclip is the unCLIP (default: 'unclip'), which draws in its own CLIP's space; settings are
    UnclipSettings' fields (samples, guidance_scale, prior_guidance, steps, seed).
    """
    if method not in METHODS:
        raise GenerationError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dalle":
        return _generate_dalle(prompt, clip, dalle, prime, callback, settings)
    if method == "unclip":
        from pictext.generate.unclip import generate_unclip

        if clip is not None:
            raise GenerationError("unclip draws in the space of the CLIP its file names; pass no clip")
        return generate_unclip(prompt, load_unclip_model(unclip), settings, callback)
    unknown = set(settings) - {f.name for f in dataclasses.fields(GenerateConfig)}
    if unknown:
        raise GenerationError(f"unknown settings {sorted(unknown)}; known: GenerateConfig's fields")
    if isinstance(settings.get("size"), int):
        settings["size"] = (settings["size"], settings["size"])
    config = GenerateConfig(**settings)  # type: ignore[arg-type]
    prompts = parse_prompts(prompt) + [Prompt(1.0, image=image) for image in image_prompts]
    clips = [_clip(c) for c in (clip if isinstance(clip, list | tuple) else [clip or default_clip_for(prompt)])]
    model = _vqgan(vqgan or default_vqgan_for(prompt)) if config.drawer == "vqgan" else None
    return generate_vqgan_clip(prompts, clips, model, config, init_image=init_image, callback=callback)


def _generate_dalle(prompt, clip, dalle, prime, callback, settings) -> Generated:  # noqa: ANN001
    from pictext.generate.dalle import DALLESettings, generate_dalle, guides_for

    unknown = set(settings) - {f.name for f in dataclasses.fields(DALLESettings)}
    if unknown:
        raise GenerationError(f"unknown settings {sorted(unknown)} for dalle; known: DALLESettings' fields")
    config = DALLESettings(**settings)  # type: ignore[arg-type]
    caption = guides_for(prompt, config)[0]
    specs = clip if isinstance(clip, list | tuple) else [clip] if clip is not None else default_rerankers_for(caption)
    if not specs:
        raise GenerationError("dalle reranks with at least one CLIP; pass one or several, or none for the default")
    pipeline = load_dalle_model(dalle)
    return generate_dalle(prompt, pipeline, [_clip(c) for c in specs], config, prime, callback)


def load_dalle_model(spec: DALLEPipeline | ModelSpec) -> DALLEPipeline:
    from pictext import hub
    from pictext.checkpoint import CheckpointError
    from pictext.dalle.io import load_dalle

    if isinstance(spec, DALLEPipeline):
        return spec
    try:
        return load_dalle(hub.resolve(spec or "dalle"))
    except CheckpointError as e:
        raise GenerationError(f"DALL-E model {spec or 'dalle'}: {e}") from e


def load_unclip_model(spec: UnclipPipeline | ModelSpec) -> UnclipPipeline:
    from pictext import hub
    from pictext.checkpoint import CheckpointError
    from pictext.unclip.io import load_unclip
    from pictext.unclip.pipeline import UnclipPipeline

    if isinstance(spec, UnclipPipeline):
        return spec
    try:
        return load_unclip(hub.resolve(spec or "unclip"))
    except CheckpointError as e:
        raise GenerationError(f"unCLIP model {spec or 'unclip'}: {e}") from e


def _clip(spec: CLIP | ModelSpec) -> CLIP:
    from pictext.api import load

    if isinstance(spec, CLIP):
        return spec.eval().requires_grad_(False)
    model = load(spec)
    if not isinstance(model, CLIP):
        raise GenerationError(f"{spec} is not a CLIP model")
    return model.requires_grad_(False)


def _vqgan(spec: VQGAN | ModelSpec) -> VQGAN:
    from pictext import hub
    from pictext.vqgan.io import load_vqgan

    if isinstance(spec, VQGAN):
        return spec.eval()
    return load_vqgan(hub.resolve(spec or "vqgan"))


__all__ = ["GenerateConfig", "Generated", "GenerationError", "Prompt", "Step", "generate", "parse_prompts"]
