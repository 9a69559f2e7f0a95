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
# Tried and not kept, both on Google's emoji alone (the recipe's data then, at 21.3 dB): DALL-E's tokenizer
# settings (16-dimensional codes, EMA codebook, lr 1e-3) for 1,500 steps used 99.6% of the codes but fell to
# 19.8 dB held-out PSNR, and the oracle recognised none of its 64 px shapes reconstructions (26.5% with these
# settings). Twice the peak lr (4e-4) decayed by a cosine to zero over the same 1,500 steps ended at a training
# L1 of about 0.07 but 19.5 dB held-out PSNR on Facebook's emoji (the recipe's own lr, 2e-4, decayed over 3,000
# steps is what works).


@dataclass(frozen=True)
class VQGANRecipe:
    """The default VQGAN: 64 px, f4 (a 16x16 grid of codes), 512 codes with dead-code restart, trained with L1
    and the codebook loss on the openly licensed vendors' emoji (Google, Twitter, OpenMoji) and the shapes world."""

    model: VQGANConfig = DEFAULT_VQGAN
    # No adversarial phase: with it from step 800 (disc_weight 0.8, no perceptual loss), L1 went from 0.114 to
    # 0.25 by step 2000 and held-out PSNR fell to 15.3 dB; the discriminator won (hinge loss about 0.05).
    # 3,000 steps with the lr decayed by a cosine: Facebook's held-out emoji from 23.0 dB (1,500 steps, constant
    # lr) to 24.2 dB PSNR, shapes reconstructions the oracle recognises from 33.5% to 87.5%.
    train: VQGANTrainConfig = VQGANTrainConfig(steps=3000, schedule="cosine", disc_start=10**9)
    emoji_repeats: int = 2  # each training emoji counted this often against `shapes_length` shapes
    shapes_length: int = 6000
    # Whose emoji drawings it trains on (their train splits). Three drawing styles, not Google's alone: Facebook's
    # held-out emoji (a style it never sees) went from 21.3 to 23.0 dB PSNR, codebook usage from 87% to 98%
    # (both at 1,500 steps).
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
