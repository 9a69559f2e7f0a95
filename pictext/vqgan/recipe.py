"""The default VQGAN's recipe: its size, its data and its schedule; `build` runs it from nothing (resuming)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pictext import training
from pictext.data.emoji import OPEN_VENDORS
from pictext.vqgan.io import save_vqgan
from pictext.vqgan.model import VQGAN, VQGANConfig
from pictext.vqgan.train import PairDataset, VQGANTrainConfig, train_vqgan

DEFAULT_VQGAN = VQGANConfig(
    resolution=64, ch=64, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,), z_channels=64, embed_dim=64,
    n_embed=512, restart_after=100,
)  # fmt: skip
# DALL-E's tokenizer settings and a higher peak lr were tried at this size and reconstructed worse
# (docs/measurements.md).


@dataclass(frozen=True)
class VQGANRecipe:
    """The default VQGAN: 64 px, f4 (a 16x16 grid of codes), 512 codes with dead-code restart, trained with L1
    and the codebook loss on the openly licensed vendors' emoji (Google, Twitter, OpenMoji) and the shapes world."""

    model: VQGANConfig = DEFAULT_VQGAN
    # No adversarial phase: without a perceptual loss the discriminator wins and reconstructions get worse; a
    # cosine decay over 3,000 steps reconstructs better than a constant lr over 1,500 (docs/measurements.md)
    train: VQGANTrainConfig = VQGANTrainConfig(steps=3000, schedule="cosine", disc_start=10**9)
    emoji_repeats: int = 2  # each training emoji counted this often against `shapes_length` shapes
    shapes_length: int = 6000
    # Whose emoji drawings it trains on (their train splits): three styles generalise to a fourth better than
    # Google's alone (docs/measurements.md)
    vendors: tuple[str, ...] = OPEN_VENDORS


def recipe_data(recipe: VQGANRecipe, home: Path | None = None) -> PairDataset:
    from pictext.data.emoji import ensure_emoji
    from pictext.data.pairs import FolderPairs, MixedPairs
    from pictext.data.shapes import ShapesWorld
    from pictext.files import home as pictext_home

    shapes = ShapesWorld(size=64, max_shapes=2, grey_fraction=0.3, unnamed_colors=True,
                         length=recipe.shapes_length, seed=recipe.train.seed)  # fmt: skip
    home = home or pictext_home()
    # Captions do not matter here, only pictures: Google's set captioned by names is the one every install builds
    # (make test, make demo); the other vendors' sets exist captioned by keywords (the default CLIP's recipe).
    folders = [ensure_emoji(home) if v == "google" else ensure_emoji(home, v, keywords=True) for v in recipe.vendors]
    emoji = [(FolderPairs(folder / "train", seed=recipe.train.seed), recipe.emoji_repeats) for folder in folders]
    return MixedPairs([*emoji, (shapes, 1)])


def build(
    recipe: VQGANRecipe,
    data: PairDataset | None = None,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> VQGAN:
    """A VQGAN of the recipe's size trained on `data` (default: the recipe's own), resuming from run_dir; saved
    (fp16) to `out` by rank 0."""
    data = recipe_data(recipe) if data is None else data
    training.seed_everything(recipe.train.seed)
    model = VQGAN(recipe.model)
    train_vqgan(model, data, recipe.train, run_dir=run_dir)
    model.eval()
    if out is not None and int(os.environ.get("RANK", 0)) == 0:
        save_vqgan(model, out, half=True)
    return model
