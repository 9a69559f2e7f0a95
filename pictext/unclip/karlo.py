"""Karlo (Kakao Brain's public DALL-E 2) from a folder in diffusers' unCLIP layout, run by pictext.

The folder is what `UnCLIPPipeline.save_pretrained` writes (kakaobrain/karlo-v1-alpha on the Hugging Face Hub),
or `UnCLIPImageVariationPipeline`'s (kakaobrain/karlo-v1-alpha-image-variations: no prior, an image encoder).
Its networks are diffusers' own classes, built from each part's config.json on the meta device, checked against
the weights and loaded as float32 (a `.bin` is read as data, never unpickled as code): the `PriorTransformer`
with its CLIP statistics, the `UnCLIPTextProjModel`, the 64 px decoder `UNet2DConditionModel`, the two
`UNet2DModel` super-resolution stages to 256 px (the first for every step but the last) and the
`UnCLIPScheduler`s. The text encoder (and the image encoder) becomes pictext's CLIP through its Hugging Face
import, and the tokenizer folder pictext's CLIP tokenizer (the same ids).

What pictext writes is the sampling, the order of every random draw the same as diffusers' pipelines (the same
`torch.Generator` seed gives the same picture), with two changes that save time. The prior is a causal
transformer whose first 78 tokens (the caption's hidden states and its embedding) are the same at every step,
so their keys and values are computed once per picture instead of once per step; each step runs the 3 tokens
that change (pictext.unclip.prior's `condition_cache`, the cache pictext's own prior samples with). And the
decoder runs in channels-last layout (`use_channels_last`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pictext import checkpoint
from pictext.clip.model import CLIP
from pictext.errors import UsageError
from pictext.unclip.prior import condition_cache, forward_cached

Check = Callable[[], None] | None  # called between steps; raises pictext.errors.Cancelled to stop
PRIOR_GUIDANCE, DECODER_GUIDANCE = 4.0, 8.0  # UnCLIPPipeline's defaults
PRIOR_STEPS, DECODER_STEPS, SUPER_RES_STEPS = 25, 25, 7
_MODELS = {
    "prior": "PriorTransformer",
    "text_proj": "UnCLIPTextProjModel",
    "decoder": "UNet2DConditionModel",
    "super_res_first": "UNet2DModel",
    "super_res_last": "UNet2DModel",
}
_SCHEDULERS = ("prior_scheduler", "decoder_scheduler", "super_res_scheduler")


def is_karlo_folder(path: str | os.PathLike) -> bool:
    """A folder holding a diffusers unCLIP pipeline (its model_index.json names one)."""
    index = Path(path) / "model_index.json"
    try:
        return index.is_file() and checkpoint.read_json_config(index).get("_class_name") in _PIPELINES
    except checkpoint.CheckpointError:
        return False


_PIPELINES = ("UnCLIPPipeline", "UnCLIPImageVariationPipeline")


@dataclass
class Condition:
    """What Karlo's stages are conditioned on, per picture: the captions' text embeddings (B, E), last hidden
    states (B, T, W) and mask (B, T); with guidance the empty caption's rows first, as diffusers batches them."""

    embeds: torch.Tensor
    hidden: torch.Tensor
    mask: torch.Tensor
    guided: bool


@dataclass
class KarloPipeline:
    """Karlo's parts and pictext's CLIP (the text encoder's tower, and the image encoder's when the folder has
    one). `prior` is None for an image-variation folder, which draws variations and interpolations only."""

    clip: CLIP
    text_proj: Any  # diffusers UnCLIPTextProjModel
    decoder: Any  # diffusers UNet2DConditionModel
    super_res_first: Any  # diffusers UNet2DModel
    super_res_last: Any
    decoder_scheduler: Any  # diffusers UnCLIPScheduler (a fresh copy runs each call)
    super_res_scheduler: Any
    prior: Any = None  # diffusers PriorTransformer
    prior_scheduler: Any = None
    super_res_steps: int = SUPER_RES_STEPS
    prior_steps: int = PRIOR_STEPS
    layout: torch.memory_format = torch.contiguous_format  # the decoder's (use_channels_last)

    @property
    def resolution(self) -> int:
        return int(self.super_res_first.config.sample_size)

    def use_channels_last(self, on: bool = True) -> KarloPipeline:
        """Run the UNets in channels-last layout where it keeps diffusers' numbers (load_karlo's default):
        oneDNN's convolutions skip their layout conversions, about 1.2x on the decoder and on the
        super-resolution network at 256 px on a CPU (bench/karlo.py). The same arithmetic within 1e-5 but for
        one step: the first super-resolution step divides the network's output by sqrt(alpha_bar) at t=999,
        where a 1e-6 rounding difference grows past 1e-2, so that step runs in the usual layout and
        super_res_first is switched for the steps after it (`super_resolve`)."""
        self.layout = torch.channels_last if on else torch.contiguous_format
        for unet in (self.decoder, self.super_res_last, self.super_res_first):
            unet.to(memory_format=self.layout if unet is not self.super_res_first else torch.contiguous_format)
        return self

    def _laid_out(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.layout)

    def total_steps(self, steps: int, upsample: bool = True) -> int:
        """The diffusion steps one caption costs: the prior's, the decoder's `steps`, the super-resolution's."""
        return self.prior_steps + steps + self.super_res_steps

    # ---- the three stages, in diffusers' order of random draws --------------------------------------------------

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text embeddings (B, E), last hidden states (B, T, W), mask (B, T)): what CLIPTextModelWithProjection
        gives the pipeline (the projected EOT state, every token's final state) and the tokenizer's mask."""
        tokens = self.clip.tokenizer(prompts)  # type: ignore[misc]
        hidden, real = self.clip.text_sequence(tokens)
        pooled = hidden[torch.arange(hidden.shape[0]), real.sum(-1) - 1]
        return self.clip.project_text(pooled), hidden, real

    def _condition(self, prompts: list[str], guided: bool) -> Condition:
        """The captions' condition; with guidance the empty caption's first (uncond then cond, as diffusers)."""
        embeds, hidden, mask = self.encode_text(prompts)
        if guided:
            u_embeds, u_hidden, u_mask = self.encode_text([""])
            n = len(prompts)
            embeds = torch.cat([u_embeds.expand(n, -1), embeds])
            hidden = torch.cat([u_hidden.expand(n, -1, -1), hidden])
            mask = torch.cat([u_mask.expand(n, -1), mask])
        return Condition(embeds, hidden, mask, guided)

    @torch.no_grad()
    def image_embeddings_for(
        self,
        c: Condition,
        guidance: float,
        steps: int,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
        check: Check = None,
    ) -> torch.Tensor:
        """The prior: (B, E) CLIP image embeddings for the condition (`_condition`), in the CLIP's own scale."""
        if self.prior is None:
            raise UsageError(
                "this Karlo folder has no prior (an image-variation folder): it draws variations and "
                "interpolations of pictures, not captions; use kakaobrain/karlo-v1-alpha"
            )
        cache = condition_cache(self.prior, c.hidden, c.embeds, c.mask)

        def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
            out = forward_cached(self.prior, torch.cat([x, x]) if c.guided else x, t, cache)
            if c.guided:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            return out

        shape = (c.embeds.shape[0] // (2 if c.guided else 1), self.prior.config.embedding_dim)
        x = _denoise(self.prior_scheduler, steps, shape, generator, latents, predict, check)
        return self.prior.post_process_latents(x)

    @torch.no_grad()
    def decode(
        self,
        image_embeddings: torch.Tensor,
        c: Condition,
        guidance: float,
        steps: int,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
        check: Check = None,
    ) -> torch.Tensor:
        """The 64 px decoder: (B, 3, 64, 64) pixels in [-1, 1] for the image embeddings and the condition."""
        context, added = self.text_proj(
            image_embeddings=image_embeddings,
            prompt_embeds=c.embeds,
            text_encoder_hidden_states=c.hidden,
            do_classifier_free_guidance=c.guided,
        )
        context_mask = F.pad(c.mask, (self.text_proj.clip_extra_context_tokens, 0), value=True)

        def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
            both = self._laid_out(torch.cat([x, x]) if c.guided else x)
            out = self.decoder(
                sample=both, timestep=t, encoder_hidden_states=context, class_labels=added, attention_mask=context_mask
            ).sample
            if c.guided:
                uncond, cond = out.chunk(2)
                uncond, _ = uncond.split(x.shape[1], dim=1)
                cond, variance = cond.split(x.shape[1], dim=1)
                out = torch.cat([uncond + guidance * (cond - uncond), variance], dim=1)
            return out

        size, channels = self.decoder.config.sample_size, self.decoder.config.in_channels
        x = _denoise(self.decoder_scheduler, steps, (len(image_embeddings), channels, size, size), generator,
                     latents, predict, check)  # fmt: skip
        return x.clamp(-1, 1)

    @torch.no_grad()
    def super_resolve(
        self,
        small: torch.Tensor,
        steps: int,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
        check: Check = None,
    ) -> torch.Tensor:
        """The super-resolution stages: (B, 3, 256, 256) pixels in [0, 1] from the decoder's 64 px ones."""
        c = self.super_res_first.config
        size = c.sample_size
        low = F.interpolate(small, size=[size, size], mode="bicubic", align_corners=False, antialias=True)

        def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
            unet = self.super_res_last if i == steps - 1 else self.super_res_first
            sample = torch.cat([x, low], dim=1)
            if i == 1 and unet is self.super_res_first:  # past t=999: the fast layout (use_channels_last)
                unet.to(memory_format=self.layout)
            return unet(sample=self._laid_out(sample) if i > 0 else sample, timestep=t).sample

        try:
            x = _denoise(self.super_res_scheduler, steps, (len(small), c.in_channels // 2, size, size), generator,
                         latents, predict, check)  # fmt: skip
        finally:
            self.super_res_first.to(memory_format=torch.contiguous_format)  # for the next picture's first step
        return (x * 0.5 + 0.5).clamp(0, 1)

    # ---- what users call -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def text_to_pixels(
        self,
        prompts: list[str],
        prior_guidance: float = PRIOR_GUIDANCE,
        decoder_guidance: float = DECODER_GUIDANCE,
        prior_steps: int = PRIOR_STEPS,
        decoder_steps: int = DECODER_STEPS,
        super_res_steps: int = SUPER_RES_STEPS,
        generator: torch.Generator | None = None,
        prior_latents: torch.Tensor | None = None,
        decoder_latents: torch.Tensor | None = None,
        super_res_latents: torch.Tensor | None = None,
        check: Check = None,
    ) -> torch.Tensor:
        """(B, 3, 256, 256) in [0, 1]: `UnCLIPPipeline(prompts, ...)` with output_type "pt", the same numbers."""
        if any(not p.strip() for p in prompts):
            raise UsageError("the prompt is empty; Karlo draws a caption, e.g. 'a photo of a cat'")
        guided = prior_guidance > 1.0 or decoder_guidance > 1.0  # as diffusers: both stages batch the empty caption
        c = self._condition(prompts, guided)
        image = self.image_embeddings_for(c, prior_guidance, prior_steps, generator, prior_latents, check)
        small = self.decode(image, c, decoder_guidance, decoder_steps, generator, decoder_latents, check)
        return self.super_resolve(small, super_res_steps, generator, super_res_latents, check)

    @torch.no_grad()
    def embeddings_to_pixels(
        self,
        image_embeddings: torch.Tensor,
        decoder_guidance: float = DECODER_GUIDANCE,
        decoder_steps: int = DECODER_STEPS,
        super_res_steps: int = SUPER_RES_STEPS,
        generator: torch.Generator | None = None,
        decoder_latents: torch.Tensor | None = None,
        super_res_latents: torch.Tensor | None = None,
        check: Check = None,
    ) -> torch.Tensor:
        """(B, 3, 256, 256) in [0, 1] for CLIP image embeddings, with the empty caption:
        `UnCLIPImageVariationPipeline(image_embeddings=...)`, the same numbers."""
        guided = decoder_guidance > 1.0
        c = self._condition([""] * image_embeddings.shape[0], guided)
        small = self.decode(image_embeddings, c, decoder_guidance, decoder_steps, generator, decoder_latents, check)
        return self.super_resolve(small, super_res_steps, generator, super_res_latents, check)

    def generate(
        self,
        prompt: str,
        n: int = 1,
        prior_guidance: float = PRIOR_GUIDANCE,
        guidance_scale: float = DECODER_GUIDANCE,
        steps: int = DECODER_STEPS,
        seed: int = 0,
        eta: float = 1.0,
        upsample: bool = True,
        check: Check = None,
    ) -> list[Image.Image]:
        """`n` pictures of `prompt` (pictext's unCLIP interface; `eta` and `upsample` have no say: Karlo's
        scheduler draws fresh noise at every step, and its pictures are the super-resolution stage's)."""
        g = torch.Generator().manual_seed(seed)
        pixels = self.text_to_pixels(
            [prompt] * n, prior_guidance, guidance_scale, self.prior_steps, steps, self.super_res_steps, g, check=check
        )
        return to_pil(pixels)

    def vary(
        self,
        image: Image.Image,
        n: int = 4,
        guidance_scale: float = DECODER_GUIDANCE,
        steps: int = DECODER_STEPS,
        seed: int = 0,
        eta: float = 1.0,
        upsample: bool = True,
        check: Check = None,
    ) -> list[Image.Image]:
        """Variations: the picture's CLIP image embedding decoded from `n` noises."""
        embedding = self.image_embedding(image).expand(n, -1)
        g = torch.Generator().manual_seed(seed)
        return to_pil(self.embeddings_to_pixels(embedding, guidance_scale, steps, self.super_res_steps, g, check=check))

    def interpolate(
        self,
        a: Image.Image,
        b: Image.Image,
        n: int = 8,
        guidance_scale: float = DECODER_GUIDANCE,
        steps: int = DECODER_STEPS,
        seed: int = 0,
        upsample: bool = True,
        check: Check = None,
    ) -> list[Image.Image]:
        """`n` pictures along the great circle between the two pictures' CLIP image embeddings (kept at their
        norm), each from the same starting noises, so that only the embedding changes along the way."""
        from pictext.unclip.pipeline import slerp

        ea, eb = self.image_embedding(a)[0], self.image_embedding(b)[0]
        norm = (ea.norm() + eb.norm()) / 2
        embeddings = torch.stack([slerp(ea, eb, float(w)) * norm for w in np.linspace(0, 1, n)])
        g = torch.Generator().manual_seed(seed)
        c, s = self.decoder.config, self.super_res_first.config
        decoder_latents = torch.randn((1, c.in_channels, c.sample_size, c.sample_size), generator=g).expand(
            n, -1, -1, -1
        )
        super_res_latents = torch.randn((1, s.in_channels // 2, s.sample_size, s.sample_size), generator=g)
        pixels = self.embeddings_to_pixels(
            embeddings,
            guidance_scale,
            steps,
            self.super_res_steps,
            g,
            decoder_latents,
            super_res_latents.expand(n, -1, -1, -1),
            check,
        )
        return to_pil(pixels)

    def image_embedding(self, image: Image.Image) -> torch.Tensor:
        """(1, E) the picture's CLIP image embedding, unnormalized (what CLIPVisionModelWithProjection gives)."""
        with torch.no_grad():
            return self.clip.encode_image(self.clip.preprocess(image.convert("RGB"))[None])


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """Pictures from (B, 3, H, W) in [0, 1], rounded as diffusers rounds them."""
    array = (pixels.permute(0, 2, 3, 1).float().numpy() * 255).round().astype("uint8")
    return [Image.fromarray(a) for a in array]


def _denoise(template: Any, steps: int, shape: tuple, generator: torch.Generator | None,
             latents: torch.Tensor | None, predict: Callable, check: Check) -> torch.Tensor:  # fmt: skip
    """diffusers' unCLIP loop: the latents drawn from `generator` (or given) times the initial sigma, then at
    each step `predict(x, t, i)` and the scheduler's step to the next timestep (its noise from `generator`)."""
    scheduler = _fresh(template)  # set_timesteps changes a scheduler, and a pipeline may serve several calls
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    x = _latents(shape, generator, latents, scheduler)
    for i, t in enumerate(timesteps):
        if check is not None:
            check()
        previous = None if i + 1 == len(timesteps) else timesteps[i + 1]
        x = scheduler.step(predict(x, t, i), t, x, prev_timestep=previous, generator=generator).prev_sample
    return x


def _fresh(scheduler: Any) -> Any:
    """A scheduler of the same config: set_timesteps changes one, and a pipeline may serve several calls."""
    return type(scheduler).from_config(scheduler.config)


def _latents(shape: tuple, generator: torch.Generator | None, given: torch.Tensor | None, scheduler: Any):
    """diffusers' prepare_latents: drawn from `generator` unless given, times the scheduler's initial sigma."""
    if given is None:
        given = torch.randn(shape, generator=generator)
    elif tuple(given.shape) != shape:
        raise UsageError(f"latents of shape {tuple(given.shape)} given where {shape} are drawn")
    return given * scheduler.init_noise_sigma


# ---- loading -----------------------------------------------------------------------------------------------------


def load_karlo(folder: str | os.PathLike) -> KarloPipeline:
    """A KarloPipeline from a folder written by `UnCLIPPipeline.save_pretrained` (or the image-variation
    pipeline's); every part checked against its config before it is built, float32, eval mode."""
    import diffusers

    folder = Path(folder)
    index = checkpoint.read_json_config(folder / "model_index.json")
    if index.get("_class_name") not in _PIPELINES:
        raise checkpoint.CheckpointError(
            f"{folder}/model_index.json names {index.get('_class_name')!r}, not one of "
            f"diffusers' unCLIP pipelines {_PIPELINES}"
        )
    parts: dict[str, Any] = {}
    for name, cls_name in _MODELS.items():
        if (folder / name).is_dir():
            parts[name] = _model(folder / name, _diffusers_class(cls_name))
        elif name != "prior":
            raise checkpoint.CheckpointError(f"{folder} has no {name}/ folder; a Karlo folder holds {sorted(_MODELS)}")
    for name in _SCHEDULERS:
        if (folder / name).is_dir():
            config = checkpoint.read_json_config(folder / name / "scheduler_config.json")
            parts[name] = diffusers.UnCLIPScheduler.from_config(config)
        elif name != "prior_scheduler" or "prior" in parts:
            raise checkpoint.CheckpointError(f"{folder} has no {name}/ folder")
    return KarloPipeline(clip=karlo_clip(folder), **parts).use_channels_last()


def _diffusers_class(name: str) -> type:
    import diffusers

    if name == "UnCLIPTextProjModel":  # kept with diffusers' deprecated unCLIP pipelines, not exported at the top
        from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

        return UnCLIPTextProjModel
    return getattr(diffusers, name)


def karlo_clip(folder: Path) -> CLIP:
    """pictext's CLIP from the folder's text_encoder/ (CLIPTextModelWithProjection), image_encoder/
    (CLIPVisionModelWithProjection) and tokenizer/. Without an image encoder the CLIP has a text tower only: its
    image tower is a small stand-in of zeros that refuses to encode (`has_image_tower` False)."""
    from pictext.clip.convert import clip_from_hf, hf_preprocess, read_foreign
    from pictext.text.tokenizer import ClipBPETokenizer

    text_sd, text_config, _ = read_foreign(folder / "text_encoder")
    image = folder / "image_encoder"
    vision_sd, vision_config = read_foreign(image)[:2] if image.is_dir() else (None, None)
    clip = clip_from_hf(*hf_towers(text_sd, text_config or {}, vision_sd, vision_config))
    clip.has_image_tower = image.is_dir()
    if clip.has_image_tower:
        clip.preprocess = hf_preprocess(folder / "feature_extractor", clip.config.vision.image_size)
    clip.tokenizer = ClipBPETokenizer.from_hf_folder(folder / "tokenizer", clip.config.text.context_length)
    return clip


def hf_towers(text_sd: dict, text_config: dict, vision_sd: dict | None = None,
              vision_config: dict | None = None) -> tuple[dict, dict]:  # fmt: skip
    """(a CLIPModel state dict, its config) from the two towers' own models (CLIPTextModelWithProjection,
    CLIPVisionModelWithProjection), what pictext's Hugging Face import reads; without the image tower, a stand-in.
    The towers' files hold no logit scale: CLIP's initial one stands in (unused by Karlo)."""
    if vision_sd is None:
        vision_sd, vision_config = _stand_in_image_tower(text_sd, text_config)
    sd = {"logit_scale": torch.tensor(math.log(1 / 0.07))} | text_sd | vision_sd
    return sd, {"text_config": text_config, "vision_config": vision_config or {}}


def _stand_in_image_tower(text_sd: dict, text_config: dict) -> tuple[dict, dict]:
    """A one-block 32 px image tower of zeros in Hugging Face's names, for a CLIP built from a text encoder."""
    width, embed = 64, text_sd["text_projection.weight"].shape[0]
    config = {
        "image_size": 32,
        "patch_size": 32,
        "hidden_size": width,
        "num_attention_heads": 1,
        "num_hidden_layers": 1,
        "intermediate_size": width,
        "hidden_act": text_config.get("hidden_act", "quick_gelu"),
    }
    shapes = {
        "embeddings.class_embedding": (width,),
        "embeddings.patch_embedding.weight": (width, 3, 32, 32),
        "embeddings.position_embedding.weight": (2, width),
        "pre_layrnorm.weight": (width,),
        "pre_layrnorm.bias": (width,),
        "post_layernorm.weight": (width,),
        "post_layernorm.bias": (width,),
    }
    layer = "encoder.layers.0."
    for name in (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.out_proj",
        "mlp.fc1",
        "mlp.fc2",
    ):
        shapes |= {f"{layer}{name}.weight": (width, width), f"{layer}{name}.bias": (width,)}
    for name in ("layer_norm1", "layer_norm2"):
        shapes |= {f"{layer}{name}.weight": (width,), f"{layer}{name}.bias": (width,)}
    sd = {f"vision_model.{k}": torch.zeros(s) for k, s in shapes.items()}
    return sd | {"visual_projection.weight": torch.zeros(embed, width)}, config


def _model(folder: Path, cls: type) -> Any:
    """A diffusers model from its folder: built from config.json on the meta device, checked against the weights
    name for name and shape for shape, then loaded (checkpoint.build_loaded)."""
    config = checkpoint.read_json_config(folder / "config.json")
    tensors = _weights(folder)
    try:
        return checkpoint.build_loaded(lambda: cls.from_config(config), tensors, folder)
    except (TypeError, ValueError, KeyError) as e:
        if isinstance(e, checkpoint.CheckpointError):
            raise
        raise checkpoint.CheckpointError(f"{folder}/config.json does not describe a {cls.__name__} ({e})") from e


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a diffusers model folder: diffusion_pytorch_model.safetensors or .bin (read as data), or
    the shards an index.json lists."""
    from pictext.clip.convert import read_foreign

    stem = "diffusion_pytorch_model"
    for suffix in (".safetensors", ".bin"):
        index = folder / f"{stem}{suffix}.index.json"
        if index.is_file():
            files = sorted(set(checkpoint.read_json_config(index).get("weight_map", {}).values()))
            if not files or any(Path(f).name != f for f in files):
                raise checkpoint.CheckpointError(f"{index} does not list shard files of its own folder")
            tensors: dict[str, torch.Tensor] = {}
            for f in files:
                tensors |= read_foreign(folder / f)[0]
            return tensors
        if (folder / f"{stem}{suffix}").is_file():
            return read_foreign(folder / f"{stem}{suffix}")[0]
    raise checkpoint.CheckpointError(f"{folder} holds no {stem}.safetensors or {stem}.bin")
