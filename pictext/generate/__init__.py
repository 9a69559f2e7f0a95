"""Text to image on top of the model families: VQGAN+CLIP, DALL-E with CLIP reranking, and unCLIP, each a
`Generator` (generate/base.py), and the outputs every one writes.

result = pictext.generate("a red circle", method="vqgan-clip", vqgan="my-vqgan.safetensors", seed=3)
result = pictext.generate("a red circle", method="dalle", samples=16, keep=4, guidance_scale=3)
result.image.save("red-circle.png"); result.clip_score
"""

from __future__ import annotations

from typing import Any

from pictext.generate import base
from pictext.generate.base import (
    METHODS,
    Callback,
    Generated,
    GenerationError,
    Generator,
    ModelCache,
    Step,
)
from pictext.generate.vqgan_clip import Prompt, VQGANCLIPSettings, parse_prompts


def prepare(name: str, prompt: str | None = None, cache: ModelCache | None = None, **models: Any) -> Generator:
    """The generator of method `name` with its models loaded: those given (names, files or models; None: the
    default), the method's defaults for `prompt` for the rest."""
    cls = base.method(name)
    known = {m.name for m in cls.MODELS}
    given = {k: v for k, v in models.items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise GenerationError(
            f"{', '.join(unknown)}: not models of method {name} (it takes {', '.join(sorted(known))})"
        )
    return cls.load(cache, **cls.models_for(prompt, given))


def generate(
    prompt: str,
    method: str = "vqgan-clip",
    *,
    callback: Callback | None = None,
    cache: ModelCache | None = None,
    **kwargs: Any,
) -> Generated:
    """Draw `prompt` with `method` ("vqgan-clip", "dalle" or "unclip") and return the picture(s), their CLIP scores
    and how they were made (`records`).

    kwargs are the method's models (vqgan-clip: clip, vqgan; dalle: dalle, clip; unclip: unclip; each a local
    name, a file or a loaded model, default as the method says), its settings (the fields of VQGANCLIPSettings,
    DALLESettings or UnclipSettings; `preset` names a set of them, as "classic", which a published VQGAN gets
    by default), and its input pictures (vqgan-clip: init_image, image_prompts; dalle: prime).
    `callback(step, picture)` sees each step or picture (picture None: progress), and returning False stops.
    """
    cls = base.method(method)
    cls.check_prompt(prompt)
    models = {m.name: kwargs.pop(m.name) for m in cls.MODELS if m.name in kwargs}
    inputs = {k: kwargs.pop(k) for k in cls.INPUTS if k in kwargs}
    preset = kwargs.pop("preset", None) or cls.preset_for(cls.models_for(prompt, models))
    settings = cls.Settings.build(kwargs, preset)  # names what is neither a model, an input nor a setting
    return prepare(method, prompt, cache, **models)(prompt, settings, callback, **inputs)


__all__ = ["METHODS", "Generated", "GenerationError", "Generator", "ModelCache", "Prompt", "Step",
           "VQGANCLIPSettings", "generate", "parse_prompts", "prepare"]  # fmt: skip
