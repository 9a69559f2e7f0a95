"""The recipes of the built-in CLIPs: `shapes` (a small ViT and text tower from scratch, on the shapes world) and
`default` (LiT: a locked all-MiniLM-L6-v2 text tower, a small ResNet image tower, on three vendors' emoji and
the shapes world). `pictext models build NAME` and `pictext train clip --recipe NAME` run them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from pictext import training
from pictext.clip.io import save_clip
from pictext.clip.lit import lit_model
from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig
from pictext.clip.train import CLIPTrainConfig, PairDataset, train_clip
from pictext.data.phrasings import TRAIN_PHRASINGS
from pictext.data.shapes import ShapesWorld
from pictext.text.tokenizer import train_bpe_tokenizer


@dataclass(frozen=True)
class CLIPRecipe:
    """A small CLIP for the CPU: its size, its data and its schedule. The defaults are the `shapes` model (a ViT
    trained from scratch on the shapes world, held-out combinations excluded); `DEFAULT_RECIPE` below is the
    `default` model (LiT on emoji and shapes)."""

    data: str = "shapes"  # "shapes"; "emoji+shapes": Google's emoji (names) and the shapes world; "open-emoji+shapes":
    # the openly licensed vendors' emoji (Google, Twitter, OpenMoji) captioned with names and keywords, and shapes
    text: str = "scratch"  # "scratch": a small causal tower, BPE trained on the captions; "minilm": LiT's tower
    image_size: int = 32  # rendered at 64 px, resized: 16 patches of 8 px
    patch_size: int | None = 8  # None: a ModifiedResNet image tower with `vision_layers_rn` blocks
    vision_layers_rn: tuple[int, ...] = (1, 1, 1, 1)
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    embed_dim: int = 128
    vocab_size: int = 640  # for both languages; the BPE stops at 542 tokens (English alone filled 320)
    context_length: int = 20
    max_shapes: int = 2
    grey_fraction: float = 0.5  # form-only shapes captioned by form alone: teaches shape apart from colour
    unnamed_colors: bool = True  # form-only shapes in random unnamed hues, not greys (docs/measurements.md)
    hard_negatives: float = 0.2  # pictures of bars, ellipses and tees ("a red bar"; ShapesWorld.hard_negatives)
    # the shapes world's captions: English and Russian, in the phrasings a model trains on (pictext.data.phrasings;
    # "imperative" and "count" held out to measure on)
    language: str = "both"
    phrasings: tuple[str, ...] = TRAIN_PHRASINGS
    emoji_repeats: int = 4  # each emoji picture counted this often against `shapes_length` shapes
    shapes_length: int = 12_000
    # 1,800 steps: the captions of two languages need twice the English recipe's (docs/measurements.md)
    train: CLIPTrainConfig = CLIPTrainConfig(steps=1800, batch_size=128, lr=2e-3)


DEFAULT_RECIPE = CLIPRecipe(
    data="open-emoji+shapes",
    emoji_repeats=2,  # three vendors' 3,083 pictures each, twice, against 12,000 shapes
    hard_negatives=0.0,
    language="en",  # its text tower, all-MiniLM-L6-v2, reads English only
    phrasings=("caption",),
    text="minilm",
    image_size=48,
    patch_size=None,  # CLIP's ModifiedResNet, width 32: at equal training time it beat the ViT on all three
    vision_layers_rn=(1, 1, 1, 1),  # measures over 3 seeds each (bench/default_model.py)
    vision_width=32,
    context_length=32,
    train=CLIPTrainConfig(steps=1000, batch_size=128, lr=2e-3, lock=("text",)),
)
RECIPES = {"default": DEFAULT_RECIPE, "shapes": CLIPRecipe()}


def recipe_data(recipe: CLIPRecipe, home: Path | None = None) -> PairDataset:
    """The recipe's training pairs; the emoji set is built under `home` (the pictext cache) on first use."""
    kinds = ("shapes", "emoji+shapes", "open-emoji+shapes")
    if recipe.data not in kinds:
        raise ValueError(f"recipe data must be one of {kinds}, got {recipe.data!r}")
    world = ShapesWorld(
        size=64,
        max_shapes=recipe.max_shapes,
        grey_fraction=recipe.grey_fraction,
        unnamed_colors=recipe.unnamed_colors,
        hard_negatives=recipe.hard_negatives,
        language=recipe.language,
        phrasings=recipe.phrasings,
        length=1_000_000 if recipe.data == "shapes" else recipe.shapes_length,
        seed=recipe.train.seed,
    )
    if recipe.data == "shapes":
        return world
    from pictext import hub
    from pictext.data.emoji import OPEN_VENDORS, ensure_emoji
    from pictext.data.pairs import FolderPairs, MixedPairs

    if recipe.data == "emoji+shapes":
        folders = [ensure_emoji(home or hub.home())]
    else:
        folders = [ensure_emoji(home or hub.home(), vendor, keywords=True) for vendor in OPEN_VENDORS]
    emoji = [(FolderPairs(folder / "train", seed=recipe.train.seed), recipe.emoji_repeats) for folder in folders]
    return MixedPairs([*emoji, (world, 1)])


def build_model(recipe: CLIPRecipe, world: PairDataset) -> CLIP:
    """A fresh model of the recipe's size: LiT's pretrained text tower, or a small one with a BPE trained on up
    to 4,000 of the data's captions."""
    vision = VisionConfig(
        image_size=recipe.image_size,
        layers=recipe.vision_layers if recipe.patch_size else recipe.vision_layers_rn,
        width=recipe.vision_width,
        patch_size=recipe.patch_size,
        head_width=32,
    )
    training.seed_everything(recipe.train.seed)
    if recipe.text == "minilm":
        model = lit_model(vision, recipe.embed_dim, context_length=recipe.context_length)
    elif recipe.text == "scratch":
        caption_lists = getattr(world, "caption_lists", None)  # file datasets: captions without decoding images
        if caption_lists is not None:
            captions = [c for cs in caption_lists()[:4000] for c in cs]
        else:
            captions = [world[i][1] for i in range(min(len(world), 4000))]
        tokenizer = train_bpe_tokenizer(captions, recipe.vocab_size, recipe.context_length)
        text = TextConfig(
            context_length=recipe.context_length,
            vocab_size=tokenizer.vocab_size,
            width=recipe.text_width,
            heads=recipe.text_width // 32,
            layers=recipe.text_layers,
            eot_token_id=tokenizer.eot_token_id,
        )
        model = CLIP(CLIPConfig(embed_dim=recipe.embed_dim, vision=vision, text=text, activation="gelu"))
        model.tokenizer = tokenizer
    else:
        raise ValueError(f"recipe text must be 'scratch' or 'minilm', got {recipe.text!r}")
    model.preprocess = dataclasses.replace(
        model.preprocess, image_size=recipe.image_size, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    return model


def build(
    recipe: CLIPRecipe,
    data: PairDataset | None = None,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> CLIP:
    """A model of the recipe's size trained on `data` (default: the recipe's own), resuming from run_dir; saved to
    `out` by rank 0 under torchrun."""
    data = recipe_data(recipe) if data is None else data
    model = build_model(recipe, data)
    train_clip(model, data, recipe.train, run_dir=run_dir)
    model.eval()
    if out is not None and int(os.environ.get("RANK", 0)) == 0:  # under torchrun, rank 0 writes
        save_clip(model, out)
    return model
