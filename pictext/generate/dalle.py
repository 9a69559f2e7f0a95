"""Text to image with a DALL-E: draw `samples` pictures, keep the `keep` a CLIP scores highest.

The prompt takes the syntax of VQGAN+CLIP's ('a blue cross | a cross:0.5 | red:-1'): the first part is the
caption, drawn and reranked by; each further part guides the drawing with its weight (composable guidance,
`pictext/dalle/sampling.py`), a negative one away from itself. A shapes-world caption naming one colour and one
shape, given alone, is also guided by its shape alone at half its weight ('a blue cross | a cross:0.5': at
guidance 3, 2 for the caption and 1 for the shape), unless `shape_prompt` is off: it keeps a right picture
more often (docs/measurements.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from pictext.clip.model import CLIP
from pictext.dalle.pipeline import DALLEPipeline
from pictext.dalle.sampling import SamplingConfig
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
from pictext.generate.rerank import rerank
from pictext.generate.vqgan_clip import parse_prompts

SHAPE_PROMPT_WEIGHT = 0.5  # the shape alone's weight against the caption's 1 (module doc)


# ruDALL-E's own sampling (its README and `rudalle.pipelines.generate_images`): top-k 2,048, top-p 0.995, no
# classifier-free guidance (Malevich was not trained to draw without its caption), and no English shape guide.
RUDALLE = {"top_k": 2048, "top_p": 0.995, "guidance_scale": 1.0, "shape_prompt": False}


@dataclass(frozen=True)
class DALLESettings(Settings):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"rudalle": RUDALLE}
    samples: int = setting(16, "pictures drawn", low=1, high=4096, page=64)
    keep: int = setting(1, "pictures kept, best CLIP score first", low=1, page=8)
    guidance_scale: float = setting(3.0, "classifier-free guidance scale, 1: none", low=0.0, high=100.0, page=10.0,
                                    flag="--guidance")  # fmt: skip
    temperature: float = setting(1.0, "softmax temperature; lower is more conservative", low=1e-3, high=100.0)
    top_k: int | None = setting(None, "sample among the k most likely tokens", low=1)
    top_p: float | None = setting(None, "sample among the most likely tokens summing to p", low=1e-6, high=1.0)
    seed: int = setting(0, "the same seed and settings give the same pictures", low=0, high=MAX_SEED, parse=read_seed)
    prime_rows: int | None = setting(None, "with a prime image: its top token rows kept (default: half)", low=1,
                                     cli=False, page=False)  # fmt: skip
    batch_size: int = setting(16, "pictures drawn at once", low=1, high=4096, cli=False, page=False)
    shape_prompt: bool = setting(True, "guide a lone shapes-world caption by its shape alone too ('a blue cross | a "
                                 "cross:0.5')", flag="--no-shape-prompt")  # fmt: skip

    def check(self) -> None:
        if self.keep > self.samples:
            raise GenerationError(f"keep must be between 1 and samples ({self.samples}), got {self.keep}")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.guidance_scale)


# the published ruCLIP a ruDALL-E model is reranked by unless another CLIP is given (`pictext models fetch` it)
RUDALLE_RERANKER = "ruclip/vit-base-patch32-384"


def is_rudalle(spec: object) -> bool:
    """True for a ruDALL-E model: a registry name of that format, or a folder of its files."""
    from pictext import published
    from pictext.dalle.convert import rudalle_files

    return published.is_format(spec, "rudalle", lambda path: rudalle_files(path) is not None)


def guides_for(prompt: str, settings: DALLESettings = DALLESettings()) -> tuple[str, list[tuple[str, float]]]:
    """(the caption, the further captions that guide with it and their weights relative to it) for `prompt`."""
    from pictext.data.phrasings import Described, noun_phrase
    from pictext.data.shapes import prompt_language, prompt_target

    parts = parse_prompts(prompt)
    if parts[0].weight <= 0:
        raise GenerationError(f"the first part of the prompt is the caption drawn; its weight must be positive, "
                              f"got {parts[0].weight:g}")  # fmt: skip
    caption = parts[0].text or ""
    guides = [(p.text or "", p.weight / parts[0].weight) for p in parts[1:]]
    target = prompt_target(caption)
    if not guides and settings.shape_prompt and target is not None:  # the shape alone, in the prompt's language
        shape = noun_phrase(Described(target[1]), prompt_language(caption))
        guides = [(shape, SHAPE_PROMPT_WEIGHT)]
    return caption, guides


def generate_dalle(
    prompt: str,
    pipeline: DALLEPipeline,
    clip: CLIP | Sequence[CLIP],
    settings: DALLESettings = DALLESettings(),
    prime: Image.Image | None = None,
    callback: Callback | None = None,
) -> Generated:
    """The kept pictures (best first) with their CLIP scores (summed over several CLIPs). `callback(step, None)`
    sees every token drawn (step.terms["total"]: how many there are), then `callback(step, picture)` each kept
    picture, ranked, with its score; returning False stops the drawing (Generated.stopped_early)."""
    caption, guides = guides_for(prompt, settings)
    try:
        for text in [caption, *(g for g, _ in guides)]:
            pipeline.text(text)
    except ValueError as e:
        raise GenerationError(str(e)) from e
    batches = -(-settings.samples // settings.batch_size)
    check = progress_check(callback, batches * pipeline.model.config.image_len)
    try:
        drawn = pipeline.draw(caption, settings.samples, settings.sampling(), settings.seed, prime,
                              settings.prime_rows, settings.batch_size, guides, check=check)  # fmt: skip
    except Cancelled:
        return Generated(Image.new("RGB", (pipeline.resolution,) * 2), [], stopped_early=True)
    ranked = rerank(drawn, caption, clip, settings.keep)
    result = Generated(ranked.images[0], [], samples=ranked.images, scores=ranked.scores, all_scores=ranked.all_scores)
    if callback is not None:
        for rank, (image, score, index) in enumerate(zip(ranked.images, ranked.scores, ranked.indices)):
            if callback(Step(rank, float("nan"), score, {"sample": index}), image) is False:
                result.stopped_early = True
                break
    return result


class DALLEGenerator(Generator):
    """DALL-E: the caption's tokens, then the image's, drawn by one transformer; the drawn pictures reranked by CLIP.
    The prompt takes VQGAN+CLIP's syntax: its first part is the caption, further parts guide with their weights."""

    method = "dalle"
    Settings = DALLESettings
    INPUTS = ("prime",)
    MODELS = (
        ModelArg("dalle", "DALL-E file or local name"),
        ModelArg("clip", "reranking CLIP (file or local name); several: their cosines summed", many=True),
    )

    def __init__(self, pipeline: DALLEPipeline, clips: list[CLIP], names: dict) -> None:
        super().__init__(names)
        self.pipeline, self.clips = pipeline, clips

    @classmethod
    def check_prompt(cls, prompt: str) -> None:
        guides_for(prompt)

    @classmethod
    def defaults(cls, prompt: str | None) -> dict:
        """The default DALL-E, reranked by the default CLIP, and for a caption naming one shapes-world colour and
        shape by the `shapes` CLIP too (their cosines summed; docs/measurements.md has what each reranker kept).
        A Russian caption is reranked by the `shapes` CLIP alone: the default CLIP's text tower reads English."""
        from pictext.data.shapes import prompt_language, prompt_target

        caption = guides_for(prompt)[0] if prompt is not None and prompt.strip() else None
        if caption is not None and prompt_language(caption) == "ru":
            return {"dalle": "dalle", "clip": ["shapes"]}
        shapes = caption is not None and prompt_target(caption) is not None
        return {"dalle": "dalle", "clip": ["shapes", "default"] if shapes else ["default"]}

    @classmethod
    def models_for(cls, prompt: str | None, given: dict[str, Any]) -> dict[str, Any]:
        """As the defaults say, except that a ruDALL-E model is reranked by ruCLIP (`RUDALLE_RERANKER`, as
        ruDALL-E's own notebooks rerank) where no CLIP is given: the default CLIPs read no Russian."""
        models = super().models_for(prompt, given)
        if "clip" not in given and is_rudalle(given.get("dalle")):
            models["clip"] = [RUDALLE_RERANKER]
        return models

    @classmethod
    def preset_for(cls, models: dict[str, Any]) -> str | None:
        """ "rudalle" (ruDALL-E's own top-k, top-p and no guidance) for a ruDALL-E model; None for pictext's own."""
        return "rudalle" if is_rudalle(models.get("dalle")) else None

    @classmethod
    def load(cls, cache: ModelCache | None = None, **models: ModelSpec) -> DALLEGenerator:
        from pictext.generate.models import load_clip_model, load_dalle_model

        cache = cache or ModelCache()
        specs = list(models["clip"]) if isinstance(models["clip"], list | tuple) else [models["clip"]]
        if not specs:
            raise GenerationError("dalle reranks with at least one CLIP; pass one or several, or none for the default")
        clips = [cache.get("clip", spec, load_clip_model) for spec in specs]
        pipeline = cache.get("dalle", models["dalle"], load_dalle_model)
        return cls(pipeline, clips, {"dalle": model_name(models["dalle"]), "clip": model_name(specs)})

    def __call__(self, prompt: str, settings: DALLESettings, callback: Callback | None = None, *,
                 prime: Image.Image | None = None) -> Generated:  # fmt: skip
        caption, guides = guides_for(prompt, settings)
        result = generate_dalle(prompt, self.pipeline, self.clips, settings, prime, callback)
        record = self.record(prompt, settings) | {"caption": caption, "guides": guides}
        result.records = [record | {"rank": rank + 1, "clip_score": score} for rank, score in enumerate(result.scores)]
        return result
