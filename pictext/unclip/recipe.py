"""The default unCLIP's recipe: its prior, decoder and optional upsampler, their sizes, data and schedules;
`build` runs the prior and decoder from nothing (resuming)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pictext import training
from pictext.clip.model import CLIP
from pictext.data.phrasings import TRAIN_PHRASINGS
from pictext.unclip.decoder import DiffusionDecoder
from pictext.unclip.diffusion import DiffusionConfig
from pictext.unclip.prior import DiffusionPrior
from pictext.unclip.train import (
    PairDataset,
    UnclipTrainConfig,
    embed_dataset,
    train_decoder,
    train_prior,
    train_upsampler,
)
from pictext.unclip.upsampler import DiffusionUpsampler


@dataclass(frozen=True)
class UnclipRecipe:
    """The default unCLIP: a prior and a 32 px decoder in the `default` CLIP's space, trained on the shapes world
    (held-out colour-shape combinations never seen) and Google's emoji."""

    # the default CLIP knows emoji and shapes, and names small held-out shapes better than `shapes`
    # (docs/measurements.md)
    clip: str = "default"
    prior_width: int = 256
    prior_heads: int = 4
    prior_layers: int = 4
    decoder_channels: tuple[int, ...] = (32, 64, 64)
    resolution: int = 32
    decoder_prediction: str = "v_prediction"
    # the decoder trains twice as long as the prior's steps suggest: its variations keep far more (docs/measurements.md)
    prior_train: UnclipTrainConfig = UnclipTrainConfig(steps=1500, batch_size=128, lr=3e-4)
    decoder_train: UnclipTrainConfig = UnclipTrainConfig(steps=8000, batch_size=32, lr=3e-4)
    shapes_length: int = 20_000
    emoji_repeats: int = 1  # Google's 3,083 training emoji, once, beside the 20,000 shapes scenes; 0: shapes alone
    # the shapes world's captions: their language(s) and phrasings (pictext.data.phrasings)
    language: str = "en"
    phrasings: tuple[str, ...] = ("caption",)
    # The optional upsampler (`pictext train unclip-upsampler`), 32 -> 64 px, on the same scenes drawn at 64 px;
    # not part of `pictext models build unclip` nor of the shipped file
    upsampler_resolution: int = 64
    upsampler_channels: tuple[int, ...] = (32, 64, 64)
    upsampler_train: UnclipTrainConfig = UnclipTrainConfig(steps=2000, batch_size=16, lr=3e-4, condition_dropout=0.0)


# `unclip-ru`: the unCLIP that reads Russian. The default one lives in the default CLIP's space, whose locked text
# tower (all-MiniLM-L6-v2) reads English only; this one lives in the `shapes` CLIP's, which was trained on captions
# in both languages, and learns from the shapes world captioned in both, in the phrasings the other models train
# on. The shapes CLIP knows no emoji, so it trains on shapes alone. `pictext generate --method unclip` draws a
# Russian caption with it, and an English one naming a shapes-world colour and shape (pictext.generate.unclip).
RUSSIAN = replace(UnclipRecipe(), clip="shapes", emoji_repeats=0, language="both", phrasings=TRAIN_PHRASINGS)
RECIPES = {"unclip": UnclipRecipe(), "unclip-ru": RUSSIAN}


def recipe_data(recipe: UnclipRecipe, size: int | None = None, home: Path | None = None) -> PairDataset:
    """The recipe's shapes world, drawn at the decoder's resolution or at `size`, and its emoji (built under
    `home`, the pictext cache, on first use)."""
    from pictext.data.emoji import beside_emoji
    from pictext.data.shapes import ShapesWorld

    shapes = ShapesWorld(size=size or recipe.resolution, max_shapes=2, grey_fraction=0.1,
                         length=recipe.shapes_length, seed=recipe.prior_train.seed, language=recipe.language,
                         phrasings=recipe.phrasings)  # fmt: skip
    return beside_emoji(shapes, recipe.emoji_repeats, recipe.prior_train.seed, home)  # type: ignore[return-value]


def build(
    recipe: UnclipRecipe,
    data: PairDataset,
    clip: CLIP,
    run_dir: str | Path | None = None,
    stages: tuple[str, ...] = ("prior", "decoder"),
) -> tuple[DiffusionPrior, DiffusionDecoder]:
    """The recipe's prior and decoder on `data` in `clip`'s space, each resumable in its own run folder."""
    from pictext.unclip.decoder import DecoderConfig
    from pictext.unclip.prior import PriorConfig

    run = Path(run_dir) if run_dir else None
    embedded = embed_dataset(clip, data, cache=run)
    E, T = clip.config.embed_dim, clip.config.text.context_length
    training.seed_everything(recipe.prior_train.seed)
    prior = DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=recipe.prior_width, heads=recipe.prior_heads,
                                       layers=recipe.prior_layers))  # fmt: skip
    diffusion = DiffusionConfig(prediction=recipe.decoder_prediction, clip_sample=True)
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=recipe.resolution,
                                             channels=recipe.decoder_channels, diffusion=diffusion))  # fmt: skip
    if "prior" in stages:
        train_prior(prior, embedded, recipe.prior_train, run / "prior" if run else None)
    if "decoder" in stages:
        train_decoder(decoder, data, embedded, recipe.decoder_train, run / "decoder" if run else None)
    return prior.eval(), decoder.eval()


def build_upsampler(recipe: UnclipRecipe, data: PairDataset, run_dir: str | Path | None = None,
                           low: int | None = None) -> DiffusionUpsampler:  # fmt: skip
    """The recipe's upsampler (from `low`, default the recipe's decoder size) on `data`, resumable in
    run_dir/upsampler. It needs no CLIP: it learns to enlarge pictures, whatever they show."""
    from pictext.unclip.upsampler import UpsamplerConfig

    training.seed_everything(recipe.upsampler_train.seed)
    upsampler = DiffusionUpsampler(UpsamplerConfig(low=low or recipe.resolution, resolution=recipe.upsampler_resolution,
                                                   channels=recipe.upsampler_channels))  # fmt: skip
    train_upsampler(upsampler, data, recipe.upsampler_train, Path(run_dir) / "upsampler" if run_dir else None)
    return upsampler.eval()
