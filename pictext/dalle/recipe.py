"""The default DALL-E's recipe: its image tokenizer, its captions' BPE and its transformer, with their data;
`build` runs it from nothing (resuming)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pictext import training
from pictext.dalle.io import ImageTokenizer, save_dalle
from pictext.dalle.model import DALLE, DALLEConfig
from pictext.dalle.pipeline import DALLEPipeline
from pictext.dalle.train import DALLETrainConfig, PairDataset, encode_images, train_dalle
from pictext.data.phrasings import TRAIN_PHRASINGS, with_unknown_words
from pictext.text import HFTokenizer, train_bpe_tokenizer
from pictext.vqgan.model import VQGAN, VQGANConfig

DALLE_VQGAN = VQGANConfig(
    resolution=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,), z_channels=64, embed_dim=16,
    n_embed=1024, ema_decay=0.99, restart_after=50,
)  # fmt: skip
# Codes of 16 dimensions, not the default VQGAN's 64: small shapes come back recognisable far more often
# (docs/measurements.md).


@dataclass(frozen=True)
class DALLERecipe:
    """The default DALL-E: 32 px images as 8x8 tokens of its own small VQGAN, a 4-layer transformer, trained on
    the shapes world (held-out colour-shape combinations never seen) and Google's emoji."""

    vqgan: VQGANConfig = DALLE_VQGAN
    vqgan_steps: int = 2500
    vqgan_lr: float = 1e-3
    width: int = 192
    layers: int = 4
    heads: int = 6
    text_len: int = 24
    text_vocab: int = 1024  # the BPE trained on the recipe's captions
    # 9,600 steps: fewer draw held-out captions worse, twice as many drew worse too (docs/measurements.md;
    # bench/dalle_scaling.py)
    train: DALLETrainConfig = DALLETrainConfig(steps=9600, batch_size=32)
    shapes_length: int = 20_000
    emoji_repeats: int = 1
    # Single shapes the transformer alone trains on (its VQGAN never sees them), half of them in unnamed hues
    # captioned by form alone ("a small triangle"): shape taught apart from colour, as the CLIP recipe's
    # `unnamed_colors` does; they raise held-out captions drawn right, 60,000 more than 20,000 (docs/measurements.md)
    forms_length: int = 60_000
    # the shapes world's captions: English and Russian, in the phrasings a model trains on (pictext.data.phrasings;
    # the imperative and the count held out to measure on); they fit `text_len` with the 1,024-token BPE
    language: str = "both"
    phrasings: tuple[str, ...] = TRAIN_PHRASINGS
    # the share of captions the transformer reads with one or two made-up words put in (`with_unknown_words`;
    # its BPE learns the clean captions), so that a word it never saw ("draw", "big") does not turn a caption it
    # knows into noise. 0: at 0.25 (`pictext train dalle --unknown-words 0.25`) held-out phrasings were drawn
    # right far more often, but Russian captions less often, which the rule written before the run did not
    # accept (docs/measurements.md)
    unknown_words: float = 0.0


def recipe_data(recipe: DALLERecipe, home: Path | None = None) -> PairDataset:
    from pictext.data.emoji import beside_emoji
    from pictext.data.shapes import ShapesWorld

    shapes = ShapesWorld(size=32, max_shapes=2, grey_fraction=0.1, length=recipe.shapes_length, seed=recipe.train.seed,
                         language=recipe.language, phrasings=recipe.phrasings)  # fmt: skip
    return beside_emoji(shapes, recipe.emoji_repeats, recipe.train.seed, home)  # type: ignore[return-value]


def recipe_forms(recipe: DALLERecipe) -> PairDataset | None:
    """The recipe's extra single shapes for the transformer (see `DALLERecipe.forms_length`), or None."""
    from pictext.data.shapes import ShapesWorld

    if not recipe.forms_length:
        return None
    return ShapesWorld(
        size=32,
        max_shapes=1,
        grey_fraction=0.5,
        unnamed_colors=True,
        length=recipe.forms_length,
        seed=10_000,
        language=recipe.language,
        phrasings=recipe.phrasings,
    )  # another seed than the recipe's scenes; held-out combinations still absent


def build(
    recipe: DALLERecipe,
    data: PairDataset | None = None,
    vqgan: ImageTokenizer | None = None,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
    extra: PairDataset | None = None,
) -> DALLEPipeline:
    """The whole recipe on `data` (default: the recipe's own, with its `recipe_forms` as `extra`): the image
    tokenizer (unless given: a VQGAN or a dVAE), its tokens, a BPE on the captions, the transformer; resumable
    from run_dir; saved (fp16) to `out` by rank 0. `extra` pairs are tokenized and follow `data` in the
    transformer's training only."""
    if data is None:
        data, extra = recipe_data(recipe), recipe_forms(recipe) if extra is None else extra
    from pictext.vqgan.io import load_vqgan, save_vqgan
    from pictext.vqgan.train import VQGANTrainConfig, train_vqgan

    run = Path(run_dir) if run_dir else None
    if vqgan is None:
        saved = run / "vqgan.safetensors" if run else None
        if saved is not None and saved.is_file():
            vqgan = load_vqgan(saved)
        else:
            training.seed_everything(recipe.train.seed)
            vqgan = VQGAN(recipe.vqgan)
            vq_cfg = VQGANTrainConfig(steps=recipe.vqgan_steps, batch_size=32, lr=recipe.vqgan_lr, disc_start=10**9,
                                      precision=recipe.train.precision, seed=recipe.train.seed)  # fmt: skip
            train_vqgan(vqgan, data, vq_cfg, run_dir=run / "vqgan" if run else None)
            if saved is not None and int(os.environ.get("RANK", 0)) == 0:
                save_vqgan(vqgan, saved)
    vqgan.eval()
    tokens, captions = encode_images(vqgan, data, cache=run)
    if extra is not None:
        more, more_captions = encode_images(vqgan, extra, cache=run)
        tokens, captions = torch.cat([tokens, more]), captions + more_captions
    text_tokenizer = caption_tokenizer(captions, recipe.text_vocab, recipe.text_len)
    texts = text_tokenizer(noised(captions, text_tokenizer, recipe.unknown_words, recipe.train.seed), truncate=True)
    config = DALLEConfig(
        text_vocab=text_tokenizer.vocab_size, image_vocab=vqgan.config.n_embed, text_len=recipe.text_len,
        image_grid=tokens.shape[-1], width=recipe.width, layers=recipe.layers, heads=recipe.heads,
    )  # fmt: skip
    training.seed_everything(recipe.train.seed)
    model = DALLE(config)
    train_dalle(model, tokens, texts, recipe.train, run_dir=run)
    pipeline = DALLEPipeline(model.eval(), text_tokenizer, vqgan)
    if out is not None and int(os.environ.get("RANK", 0)) == 0:
        save_dalle(pipeline, out, half=True)
    return pipeline


def noised(captions: Sequence[str], tokenizer: HFTokenizer, share: float, seed: int) -> list[str]:
    """`captions` with `share` of them given made-up words (`with_unknown_words`), each only where it still fits
    the tokenizer's context; the same for the same seed."""
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(captions)) < share
    out = list(captions)
    for i in np.flatnonzero(chosen):
        caption = with_unknown_words(captions[i], rng)
        if len(tokenizer.encode(caption)) + 2 <= tokenizer.context_length:  # with its start and end tokens
            out[i] = caption
    return out


def caption_tokenizer(captions: Sequence[str], vocab_size: int, text_len: int) -> HFTokenizer:
    """A byte-level BPE trained on the captions (deterministic for the same captions)."""
    return train_bpe_tokenizer(sorted(set(captions)), vocab_size, text_len)
