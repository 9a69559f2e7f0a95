"""LiT on the real emoji set (built by `make test` from npm's registry): it answers paraphrases that a text tower
trained from scratch on the same pairs cannot, and it finds held-out emoji by name more often."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from pictext.api import encode_images, encode_texts
from pictext.clip.recipe import CLIPRecipe, build
from pictext.clip.train import CLIPTrainConfig
from pictext.data.emoji import named_images
from pictext.data.pairs import FolderPairs
from pictext.evaluate import evaluate_emoji

pytestmark = pytest.mark.slow  # trains models / runs every interface: tens of seconds

# Words that appear in no emoji caption, and the name words of the emoji they mean.
PARAPHRASES = {"puppy": "dog", "kitten": "cat", "kitty": "cat"}  # "doggy" misses at this size
SMALL = CLIPRecipe(
    image_size=32,
    vision_width=96,
    vision_layers=3,
    embed_dim=96,
    context_length=32,
    vocab_size=2000,
    train=CLIPTrainConfig(steps=300, batch_size=128, lr=2e-3, warmup=30, precision="fp32"),
)


@pytest.fixture(scope="module")
def emoji() -> Path:
    folder = os.environ.get("PICTEXT_EMOJI")
    if not folder:  # `make test` always sets it, so CI never skips
        pytest.skip("PICTEXT_EMOJI is not set; `make test` builds the emoji set and sets it")
    if not (Path(folder) / "held_out" / "labels.json").is_file():
        pytest.fail(f"the emoji set is not at PICTEXT_EMOJI={folder!r}; `make emoji` builds it")
    return Path(folder)


@pytest.fixture(scope="module")
def models(emoji):
    data = FolderPairs(emoji / "train")
    lit = dataclasses.replace(SMALL, text="minilm", train=dataclasses.replace(SMALL.train, lock=("text",)))
    return {"lit": build(lit, data), "scratch": build(SMALL, data)}


def _hits(model, emoji: Path) -> dict[str, bool]:
    pngs, names = named_images(emoji, "train")
    images = encode_images(pngs, model=model)
    scores = encode_texts(list(PARAPHRASES), model=model) @ images.T
    return {
        word: any(PARAPHRASES[word] in names[i].split() for i in np.argsort(-row)[:10])
        for word, row in zip(PARAPHRASES, scores)
    }


def test_paraphrases_need_the_pretrained_text_tower(models, emoji):
    captions = {c for p in (emoji / "train").glob("*.txt") for c in p.read_text().split()}
    assert not set(PARAPHRASES) & captions  # the words really are new to both models
    lit, scratch = _hits(models["lit"], emoji), _hits(models["scratch"], emoji)
    assert all(lit.values()), lit
    assert sum(scratch.values()) <= 1, scratch


def test_lit_finds_held_out_emoji_by_name_better_than_a_scratch_text_tower(models, emoji):
    lit = evaluate_emoji(models["lit"], emoji)["text_to_image_r@10"]
    scratch = evaluate_emoji(models["scratch"], emoji)["text_to_image_r@10"]
    assert lit > scratch + 0.05, (lit, scratch)
