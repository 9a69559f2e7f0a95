"""VQGAN+CLIP: draw a prompt by optimizing a latent so that CLIP scores the decoded picture as matching it.

As popularised by Katherine Crowson's notebook, nerdyrodent/VQGAN-CLIP and Pixray: start from a grid of
codes, decode it, cut the picture into randomly sized and augmented cutouts, embed them with CLIP, and move
the latent down the spherical distance to the prompts' embeddings. Each step quantizes the latent to the
nearest codes with a straight-through gradient, clamps pixels with a pass-through gradient, and keeps the
latent inside the codebook's range. One seeded `torch.Generator` drives the initial codes, the cutouts and
the augmentations, so a seed reproduces its picture exactly on the same machine.

Drawers: `vqgan` (the latent is a VQGAN code grid) and `pixel` (a small grid of coloured cells, no VQGAN).
Extra losses: smoothness (total variation), saturation, symmetry (left-right), palette (pull colours towards
a few given ones).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image

from pictext.clip.model import CLIP
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
    read_seed,
    read_size,
    setting,
)
from pictext.vqgan.model import VQGAN

DRAWERS = ("vqgan", "pixel")


@dataclass(frozen=True)
class Prompt:
    """A weighted target: text, or an image; a negative weight pushes the picture away from it."""

    weight: float
    text: str | None = None
    image: Image.Image | None = None


def parse_prompts(text: str) -> list[Prompt]:
    """'a red apple:1 | green:-0.5' -> [Prompt(1, 'a red apple'), Prompt(-0.5, 'green')] (Pixray's syntax)."""
    prompts = []
    for part in text.split("|"):
        body, weight = part.strip(), 1.0
        head, colon, tail = body.rpartition(":")
        if colon and tail.strip() and " " not in tail.strip():  # 'text:WEIGHT'; a colon inside text stays text
            try:
                weight = float(tail)
            except ValueError:
                raise GenerationError(f"prompt {body!r}: the weight after ':' must be a number, got {tail!r}") from None
            if not math.isfinite(weight):
                raise GenerationError(f"prompt {body!r}: the weight must be a finite number")
            body = head.strip()
        if not body:
            raise GenerationError("a prompt is empty; give text such as 'a red circle' (several: 'a | b:0.5')")
        prompts.append(Prompt(weight, text=body))
    if not any(p.weight > 0 for p in prompts):
        raise GenerationError("at least one prompt needs a positive weight; negative ones only push away")
    return prompts


@dataclass(frozen=True)
class VQGANCLIPSettings(Settings):
    steps: int = setting(200, "optimizer steps", low=1, page=500)
    size: tuple[int, int] | None = setting(
        None, "N or WxH pixels, multiples of the VQGAN's factor (default: the side the VQGAN trained at; the pixel "
        "drawer: 64)", parse=read_size, page=128)  # fmt: skip
    lr: float = setting(0.1, "Adam's learning rate on the latent (docs/measurements.md: how 0.1 was chosen)", low=1e-6,
                        high=10.0)  # fmt: skip
    lr_drops: tuple[float, ...] = setting((0.75,), "fractions of the run after which lr is divided by 10", cli=False,
                                          page=False)  # fmt: skip
    cutouts: int = setting(48, "random crops per step, each embedded by every CLIP", low=1, high=1024, page=128)
    cut_power: float = setting(1.0, "> 1 favours small cutouts, < 1 large ones (none below the CLIP's input)",
                               low=0.05, high=20.0, cli=False, page=False)  # fmt: skip
    augment: bool = setting(True, "flips, affine, perspective and noise on the cutouts (kornia)", cli=False,
                            page=False)  # fmt: skip
    init: str = setting("random", "random codes, noise pixels, or image (an init image)", cli=False, page=False,
                        choices=("random", "noise", "image"))  # fmt: skip
    drawer: str = setting("vqgan", "vqgan: the latent is a VQGAN code grid; pixel: a grid of coloured cells",
                          choices=DRAWERS)  # fmt: skip
    pixel_cells: int = setting(16, "the pixel drawer's cells per side", low=1, high=1024, cli=False, page=False)
    seed: int = setting(0, "the same seed and settings give the same picture", low=0, high=MAX_SEED, parse=read_seed)
    smoothness: float = setting(0.0, "weight of total variation", low=0.0, high=1000.0)
    saturation: float = setting(0.0, "weight of a penalty on over-saturated colours", low=0.0, high=1000.0)
    symmetry: float = setting(0.0, "weight of the left-right difference", low=0.0, high=1000.0)
    palette: tuple[tuple[int, int, int], ...] = setting((), "colours to pull pixels towards", cli=False, page=False)
    palette_weight: float = setting(0.0, "weight of the palette loss", low=0.0, high=1000.0, cli=False, page=False)
    frame_every: int = setting(10, "steps between saved frames, 0: none", low=0)
    precision: str = setting("fp32", "fp32, or bf16: the VQGAN's decoder and the CLIPs under bf16 autocast, about "
                             "twice as fast at published sizes on CPUs that multiply bf16 natively (bench/README.md, "
                             "real_size); the picture is not the fp32 one",
                             choices=("fp32", "bf16"), page=False)  # fmt: skip

    # "classic": the settings of the VQGAN+CLIP notebooks as nerdyrodent/VQGAN-CLIP's generate.py gives them,
    # which Pixray builds on: 500 steps, 32 cutouts of cut power 1, Adam at 0.1 held constant; the size stays the
    # VQGAN's own (256 px for taming's: nerdyrodent's 512 wants a GPU, README's Published weights). The default
    # for a published VQGAN; the shapes world's own defaults are for the miniature models.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "classic": {"steps": 500, "cutouts": 32, "cut_power": 1.0, "lr": 0.1, "lr_drops": ()}
    }

    def check(self) -> None:
        if isinstance(self.size, int) and not isinstance(self.size, bool):
            object.__setattr__(self, "size", (self.size, self.size))  # generate(size=64): a square
        if self.size is not None:
            if not (isinstance(self.size, tuple) and len(self.size) == 2 and all(
                    isinstance(x, int) and 0 < x <= 4096 for x in self.size)):  # fmt: skip
                raise GenerationError(f"size must be N or (width, height) in pixels up to 4096, got {self.size!r}")


def generate_vqgan_clip(
    prompts: Sequence[Prompt],
    clips: Sequence[CLIP],
    vqgan: VQGAN | None,
    config: VQGANCLIPSettings = VQGANCLIPSettings(),
    init_image: Image.Image | None = None,
    callback: Callable[[Step, Image.Image], bool | None] | None = None,
) -> Generated:
    """Optimize a picture for `prompts`; `callback(step, frame)` sees each step and stops the run by returning
    False. Runs on CPU, in float32 unless `config.precision` asks for bf16 autocast of the decoder and the CLIPs
    (opt-in: it changes the picture; at published sizes it halves the step on CPUs with native bf16)."""
    if config.size is None:
        side = vqgan.config.resolution if config.drawer == "vqgan" and vqgan is not None else 64
        config = dataclasses.replace(config, size=(side, side))
    _check(prompts, clips, vqgan, config, init_image)
    g = torch.Generator().manual_seed(config.seed)
    targets = [_targets(clip, prompts) for clip in clips]  # per CLIP: (P, E) embeddings and (P,) weights
    drawer = _VQGANDrawer(vqgan, config, g, init_image) if config.drawer == "vqgan" else _PixelDrawer(config, g)
    optimizer = torch.optim.Adam(drawer.parameters(), lr=config.lr)
    drops = sorted(int(f * config.steps) for f in config.lr_drops)
    result = Generated(image=Image.new("RGB", config.size), steps=[])
    for step in range(config.steps):
        if step in drops:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        optimizer.zero_grad(set_to_none=True)
        terms = {}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            picture = drawer.picture().float()  # (1, 3, H, W) in [0, 1]
            for i, (clip, (embeddings, weights)) in enumerate(zip(clips, targets)):
                cuts = make_cutouts(picture, clip.preprocess.image_size, config, g)
                image_emb = clip.encode_image(_normalize(cuts, clip), normalize=True).float()  # (N, E)
                terms[f"clip{i}"] = spherical_loss(image_emb, embeddings, weights)
        terms |= _extra_losses(picture, config)
        loss = sum(terms.values())
        loss.backward()
        optimizer.step()
        drawer.clamp()
        with torch.no_grad():
            frame = to_image(picture)
            score = clip_score(picture, clips, targets)
        record = Step(step, loss.item(), score, {k: v.item() for k, v in terms.items()})
        result.steps.append(record)
        if config.frame_every and (step % config.frame_every == 0 or step == config.steps - 1):
            result.frames.append(frame)
        if callback is not None and callback(record, frame) is False:
            result.stopped_early = True
            break
    with torch.no_grad():
        result.image = to_image(drawer.picture())
    return result


def spherical_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted squared great-circle distance between normalized embeddings, averaged over cutouts.

    (N, E) images, (P, E) prompts, (P,) weights: sum_p w_p * mean_n 2 arcsin(|x_n - y_p| / 2)^2. A negative
    weight rewards distance, as Pixray's negative prompts do.
    """
    chord = (image_emb[:, None, :] - text_emb[None, :, :]).norm(dim=-1).div(2).clamp(max=1.0)  # (N, P)
    distance = chord.arcsin().pow(2).mul(2)
    return (distance.mean(0) * weights).sum()


def make_cutouts(picture: torch.Tensor, size: int, config: VQGANCLIPSettings, g: torch.Generator) -> torch.Tensor:
    """(N, 3, size, size) random square crops of (1, 3, H, W), sized by `cut_power`, resized and augmented."""
    _, _, h, w = picture.shape
    side = min(h, w)
    # No cutout smaller than CLIP's input, as the anchors (Crowson's notebook, nerdyrodent/VQGAN-CLIP): a picture
    # no larger than that input is always seen whole, and only the augmentations vary; smaller cutouts ask each
    # fragment for the whole prompt (docs/measurements.md)
    min_size = min(side, size)
    cuts = []
    for _ in range(config.cutouts):
        u = float(torch.rand((), generator=g))
        s = int(u**config.cut_power * (side - min_size) + min_size)
        x0 = int(torch.randint(0, w - s + 1, (), generator=g))
        y0 = int(torch.randint(0, h - s + 1, (), generator=g))
        crop = picture[:, :, y0 : y0 + s, x0 : x0 + s]
        cuts.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    batch = torch.cat(cuts)
    if not config.augment:
        return batch
    return _augment(batch, g)


def _augment(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flips, affine, perspective (kornia) and Gaussian noise, drawn from `g` so a seed reproduces them."""
    import kornia.augmentation as K

    augment = torch.nn.Sequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5, p=0.7, padding_mode="border"),
        K.RandomPerspective(distortion_scale=0.2, p=0.5),
    )
    seed = int(torch.randint(0, 2**62, (), generator=g))
    with torch.random.fork_rng(devices=[]):  # kornia draws from the global RNG: seed it from ours, then restore
        torch.manual_seed(seed)
        out = augment(batch)
    noise = torch.randn(out.shape, generator=g) * 0.05 * torch.rand((out.shape[0], 1, 1, 1), generator=g)
    return (out + noise).clamp(0, 1)


def clip_score(picture: torch.Tensor, clips: Sequence[CLIP], targets: Sequence[tuple]) -> float:
    """Mean cosine of the whole picture (resized to each CLIP's input) with the positive prompts."""
    scores = []
    for clip, (embeddings, weights) in zip(clips, targets):
        x = F.interpolate(picture, size=(clip.preprocess.image_size,) * 2, mode="bilinear", align_corners=False)
        e = clip.encode_image(_normalize(x, clip), normalize=True)[0]
        positive = weights > 0
        scores.append(float((embeddings[positive] @ e).mean()))
    return sum(scores) / len(scores)


def to_image(picture: torch.Tensor) -> Image.Image:
    array = picture[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


class _ClampWithGrad(torch.autograd.Function):
    """Clamp to [lo, hi] in the forward pass; in the backward pass let through gradients that point back
    inside, so pixels stuck at a bound can still return (the anchors' clamp_with_grad)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        outward = ((x < ctx.lo) & (grad > 0)) | ((x > ctx.hi) & (grad < 0))  # descent would push further out
        return grad * (~outward), None, None


def clamp_with_grad(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return _ClampWithGrad.apply(x, lo, hi)


class _VQGANDrawer(torch.nn.Module):
    """The latent is a (1, D, h, w) grid in codebook space; each picture snaps it to the nearest codes."""

    def __init__(self, vqgan: VQGAN, config: VQGANCLIPSettings, g: torch.Generator, init: Image.Image | None):
        super().__init__()
        self.vqgan = vqgan.eval().requires_grad_(False)
        f = vqgan.config.factor
        w, h = config.size[0] // f, config.size[1] // f
        codebook = vqgan.codebook.detach()
        self.lo, self.hi = codebook.min(0).values[None, :, None, None], codebook.max(0).values[None, :, None, None]
        if config.init == "random":
            codes = torch.randint(0, codebook.shape[0], (1, h, w), generator=g)
            z = vqgan.quantize.lookup(codes)
        else:
            if config.init == "noise":
                pixels = torch.rand((1, 3, h * f, w * f), generator=g) * 2 - 1
            else:
                from pictext.images.tensors import to_pixels

                pixels = F.interpolate(to_pixels([init], max(w, h) * f), size=(h * f, w * f), mode="bicubic")
            with torch.no_grad():
                z = vqgan.quant_conv(vqgan.encoder(pixels))
        self.z = torch.nn.Parameter(z.detach().clone())

    def picture(self) -> torch.Tensor:
        flat = self.z.permute(0, 2, 3, 1).reshape(-1, self.z.shape[1])
        codes = self.vqgan.quantize.nearest(flat.detach()) if hasattr(self.vqgan.quantize, "nearest") else None
        if codes is None:  # Gumbel codebooks: nearest code by distance too
            codes = torch.cdist(flat.detach(), self.vqgan.codebook).argmin(1)
        z_q = self.vqgan.codebook[codes].view(1, self.z.shape[2], self.z.shape[3], -1).permute(0, 3, 1, 2)
        z_q = self.z + (z_q - self.z).detach()  # straight-through
        return clamp_with_grad((self.vqgan.decode(z_q) + 1) / 2, 0.0, 1.0)

    def clamp(self) -> None:
        with torch.no_grad():
            self.z.copy_(torch.maximum(torch.minimum(self.z, self.hi), self.lo))


class _PixelDrawer(torch.nn.Module):
    """A (1, 3, cells, cells*W/H) grid of colours, shown at the output size with nearest upsampling."""

    def __init__(self, config: VQGANCLIPSettings, g: torch.Generator) -> None:
        super().__init__()
        w, h = config.size
        rows = config.pixel_cells
        cols = max(1, round(rows * w / h))
        self.size = (h, w)
        self.logits = torch.nn.Parameter(torch.randn((1, 3, rows, cols), generator=g) * 0.5)

    def picture(self) -> torch.Tensor:
        return F.interpolate(torch.sigmoid(self.logits), size=self.size, mode="nearest")

    def clamp(self) -> None:
        pass


def _targets(clip: CLIP, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
    from pictext.api import encode_images, encode_texts

    rows = []
    for p in prompts:
        if p.text is not None:
            rows.append(torch.from_numpy(encode_texts([p.text], model=clip, truncate=True, precision="fp32"))[0])
        else:
            rows.append(torch.from_numpy(encode_images([p.image], model=clip, precision="fp32"))[0])
    return torch.stack(rows), torch.tensor([p.weight for p in prompts], dtype=torch.float32)


def _normalize(x: torch.Tensor, clip: CLIP) -> torch.Tensor:  # [0, 1] pixels -> the CLIP's input statistics
    mean = torch.tensor(clip.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.preprocess.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _extra_losses(picture: torch.Tensor, config: VQGANCLIPSettings) -> dict[str, torch.Tensor]:
    terms = {}
    if config.smoothness:
        tv = (picture[..., 1:, :] - picture[..., :-1, :]).abs().mean()
        tv = tv + (picture[..., :, 1:] - picture[..., :, :-1]).abs().mean()
        terms["smoothness"] = config.smoothness * tv
    if config.saturation:
        terms["saturation"] = config.saturation * (picture.max(1).values - picture.min(1).values).pow(2).mean()
    if config.symmetry:
        terms["symmetry"] = config.symmetry * (picture - picture.flip(-1)).abs().mean()
    if config.palette and config.palette_weight:
        colors = torch.tensor(config.palette, dtype=torch.float32) / 255  # (K, 3)
        pixels = picture.permute(0, 2, 3, 1).reshape(-1, 3)
        terms["palette"] = config.palette_weight * torch.cdist(pixels, colors).min(1).values.mean()
    return terms


def _check(
    prompts: Sequence[Prompt],
    clips: Sequence[CLIP],
    vqgan: VQGAN | None,
    config: VQGANCLIPSettings,
    init_image: Image.Image | None,
) -> None:
    if not prompts:
        raise GenerationError("no prompt given; give text such as 'a red circle'")
    if not clips:
        raise GenerationError("no CLIP model given to guide the picture")
    if config.init == "image" and init_image is None:
        raise GenerationError("init='image' needs an init image")
    if config.drawer == "vqgan":
        if vqgan is None:
            raise GenerationError("the vqgan drawer needs a VQGAN model")
        if vqgan.config.wavelet:
            raise GenerationError("this VQGAN draws its pictures at twice the side it encodes (a DWT decoder); "
                                  "VQGAN+CLIP takes one that draws at its own side, as taming's do")  # fmt: skip
        f = vqgan.config.factor
        if config.size[0] % f or config.size[1] % f or min(config.size) <= 0:
            raise GenerationError(f"size {config.size} must be positive multiples of the VQGAN's factor {f}")


def round_size(size: int, factor: int) -> int:
    """The nearest positive multiple of `factor` (VQGAN grids need one)."""
    return max(factor, round(size / factor) * factor)


class VQGANCLIPGenerator(Generator):
    """VQGAN+CLIP: the prompt, with Pixray's weights ('a red apple:1 | green:-0.5'), drawn by optimizing a VQGAN's
    latent (or a grid of pixels) until the guiding CLIPs score the picture as matching it."""

    method = "vqgan-clip"
    Settings = VQGANCLIPSettings
    INPUTS = ("init_image", "image_prompts")
    MODELS = (
        ModelArg("clip", "guiding CLIP (file or local name); several: their losses summed", many=True),
        ModelArg(
            "vqgan",
            "VQGAN whose latent is optimized: a native file, a taming .ckpt, a DALL-E file (its VQGAN) or a local name",
        ),  # fmt: skip
    )

    def __init__(self, clips: list[CLIP], vqgan: ModelSpec, names: dict, cache: ModelCache) -> None:
        super().__init__(names)
        self.clips, self.vqgan_spec, self.cache = clips, vqgan, cache

    @classmethod
    def check_prompt(cls, prompt: str) -> None:
        parse_prompts(prompt)

    @classmethod
    def defaults(cls, prompt: str | None) -> dict:
        """A prompt naming one shapes-world colour and shape ('a small red circle') is guided by the `shapes` CLIP
        and drawn by the 32 px VQGAN inside the default DALL-E (trained on the shapes world); any other by the
        default CLIP and the default VQGAN (docs/measurements.md has what each drew)."""
        from pictext.data.shapes import prompt_target

        shapes = prompt is not None and prompt_target(prompt) is not None
        return {"clip": ["shapes" if shapes else "default"], "vqgan": "dalle" if shapes else "vqgan"}

    @classmethod
    def preset_for(cls, models: dict[str, Any]) -> str | None:
        """ "classic" for a published VQGAN (a registry name, or a taming .ckpt); None for pictext's own."""
        from pictext import published

        vqgan = models.get("vqgan")
        if not isinstance(vqgan, str | os.PathLike):
            return None
        item = published.entry(str(vqgan))
        return "classic" if (item is not None and item.family == "vqgan") or Path(vqgan).suffix == ".ckpt" else None

    @classmethod
    def load(cls, cache: ModelCache | None = None, **models: ModelSpec) -> VQGANCLIPGenerator:
        from pictext.generate.models import load_clip_model

        cache = cache or ModelCache()
        specs = list(models["clip"]) if isinstance(models["clip"], list | tuple) else [models["clip"]]
        clips = [cache.get("clip", spec, load_clip_model) for spec in specs]
        names = {"clip": model_name(specs), "vqgan": model_name(models["vqgan"])}
        return cls(clips, models["vqgan"], names, cache)  # the VQGAN loads when a drawing needs it

    def vqgan(self) -> VQGAN:
        from pictext.generate.models import load_vqgan_model

        return self.cache.get("vqgan", self.vqgan_spec, load_vqgan_model)

    def __call__(self, prompt: str, settings: VQGANCLIPSettings, callback: Callback | None = None, *,
                 init_image: Image.Image | None = None,
                 image_prompts: Sequence[Image.Image] = ()) -> Generated:  # fmt: skip
        prompts = parse_prompts(prompt) + [Prompt(1.0, image=image) for image in image_prompts]
        vqgan = self.vqgan() if settings.drawer == "vqgan" else None
        if init_image is not None and settings.init != "image":
            settings = dataclasses.replace(settings, init="image")
        if vqgan is not None and settings.size is not None:  # the nearest multiples of the VQGAN's factor
            f = vqgan.config.factor
            settings = dataclasses.replace(settings, size=tuple(round_size(side, f) for side in settings.size))
        result = generate_vqgan_clip(prompts, self.clips, vqgan, settings, init_image, callback)
        record = self.record(prompt, settings) | {"vqgan": self.names["vqgan"] if vqgan is not None else None}
        size = result.image.size
        result.records = [record | {"size": list(size), "clip_score_first": result.steps[0].clip_score,
                                    "clip_score": result.clip_score}]  # fmt: skip
        return result
