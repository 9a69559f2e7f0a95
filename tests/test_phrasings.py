"""The shapes world's captions in English and Russian: the grammar's forms, agreement, held-out phrasings, and the
English world unchanged."""

from __future__ import annotations

import hashlib
import re

import pytest

from pictext.data import phrasings as P
from pictext.data.shapes import COLORS, SHAPES, ShapesWorld, prompt_language, prompt_target


def test_the_english_world_is_the_world_it_always_was():
    """The captions of worlds built without a language or phrasings, character for character as before the
    grammar existed (the shipped models' recipes must reproduce their files): a digest of 6,000 captions."""
    digest = hashlib.sha256()
    for kw in [{}, {"max_shapes": 2, "seed": 3}, {"hard_negatives": 0.3, "seed": 2, "grey_fraction": 0.2}]:
        world = ShapesWorld(length=2000, **kw)
        digest.update("\n".join(world[i][1] for i in range(2000)).encode())
    assert digest.hexdigest() == "5be6687c5ca301b642217cafaaa6abfcf6e15ed3289f299491ff5d4bdca54657"


@pytest.mark.parametrize(
    ("described", "language", "phrasing", "want"),
    [
        (P.Described("cross", "blue", "small", "left"), "ru", "caption", "маленький синий крест слева"),
        (P.Described("triangle", "green"), "ru", "relative", "треугольник зелёного цвета"),
        (P.Described("triangle", "green"), "en", "relative", "a triangle that is green"),
        (P.Described("cross", "blue"), "en", "imperative", "draw a blue cross"),
        (P.Described("cross", "blue"), "ru", "imperative", "нарисуй синий крест"),
        (P.Described("bar", "blue", "large"), "ru", "imperative", "нарисуй большую синюю полосу"),
        (P.Described("square", "red", "large"), "en", "count", "one big red square"),
        (P.Described("square", "red", "large"), "ru", "count", "один крупный красный квадрат"),
        (P.Described("circle", "yellow"), "ru", "background", "жёлтый круг на однотонном фоне"),
        (P.Described("circle", "purple", position="center"), "en", "fronted", "in the center there is a purple circle"),
        (P.Described("tee", "red", "small"), "ru", "caption", "маленькая красная буква т"),
        (P.Described("ellipse"), "en", "picture", "a picture of an ellipse"),
    ],
)
def test_phrasings_in_both_languages(described, language, phrasing, want):
    assert P.phrase(described, language, phrasing) == want


def test_genitives_after_ot_agree_with_their_noun():
    """'слева от маленького красного круга': after от, adjective and noun in the genitive, in any gender."""
    small_red_circle = P.noun_phrase(P.Described("circle", "red", "small"), "ru", case="gen")
    assert small_red_circle == "маленького красного круга"
    assert P.noun_phrase(P.Described("bar", "blue", "large"), "ru", case="gen") == "большой синей полосы"
    world = ShapesWorld(language="ru", max_shapes=2, length=400, seed=5)
    relations = [c for c in (world[i][1] for i in range(400)) if " от " in c]
    assert len(relations) > 100
    genitive = re.compile(r" от ((маленького|большого) )?(красного|зелёного|синего|жёлтого|фиолетового) "
                          r"(круга|квадрата|треугольника|креста)$")  # fmt: skip
    assert all(genitive.search(c) for c in relations), [c for c in relations if not genitive.search(c)][:5]


def test_a_bilingual_world_says_what_the_english_one_says_in_both_languages():
    english = ShapesWorld(length=300, seed=4, max_shapes=2, phrasings=("caption",))
    both = ShapesWorld(length=300, seed=4, max_shapes=2, language="both", phrasings=P.TRAIN_PHRASINGS)
    cyrillic = [prompt_language(both[i][1]) == "ru" for i in range(300)]
    assert 0.35 < sum(cyrillic) / 300 < 0.65  # each caption's language drawn evenly
    for i in range(300):
        image_en, caption_en = english[i]
        image, caption = both[i]
        assert image.tobytes() == image_en.tobytes()  # the same pictures
        if prompt_target(caption_en) is not None:  # the same colour and shape named, in either language
            assert prompt_target(caption) == prompt_target(caption_en), (caption_en, caption)


def test_held_out_phrasings_never_reach_a_training_world():
    world = ShapesWorld(length=2000, language="both", phrasings=P.TRAIN_PHRASINGS, hard_negatives=0.2)
    captions = [world[i][1] for i in range(2000)]
    assert not any(c.startswith(("draw ", "нарисуй ", "one ", "один ")) for c in captions)
    for marker in ("that is", "цвета", "on a plain background", "на однотонном фоне", "a picture of", "there is"):
        assert any(marker in c for c in captions), marker  # every training phrasing occurs


def test_prompts_name_their_colour_and_shape_in_either_language():
    assert prompt_target("нарисуй маленький желтый крест") == ("yellow", "cross")  # е for ё, as people type
    assert prompt_target("Треугольник зелёного цвета.") == ("green", "triangle")
    assert prompt_target("синий квадрат слева от красного круга") is None  # two of each: no single target
    for color in COLORS:
        for shape in SHAPES:
            for phrasing in P.PHRASINGS:
                d = P.Described(shape, color, "large", "left")
                assert prompt_target(P.phrase(d, "ru", phrasing)) == (color, shape)
                assert prompt_target(P.phrase(d, "en", phrasing)) == (color, shape)


def test_unknown_languages_and_phrasings_are_refused():
    with pytest.raises(ValueError, match="language"):
        ShapesWorld(language="de")
    with pytest.raises(ValueError, match="phrasings"):
        ShapesWorld(phrasings=("sonnet",))


def test_made_up_words_go_in_between_and_in_the_captions_script():
    import numpy as np

    from pictext.dalle.recipe import caption_tokenizer, noised

    rng = np.random.default_rng(0)
    for caption in ("a small red circle on the left", "маленькая синяя полоса справа от красного круга"):
        for _ in range(50):
            words, noisy = caption.split(), P.with_unknown_words(caption, rng).split()
            added = list(noisy)
            for w in words:  # every word of the caption is there, in its order
                added = added[added.index(w) + 1 :] if w in added else ["missing"]
            assert added != ["missing"] and len(noisy) - len(words) in (1, 2)
            script = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя" if caption[0] == "м" else "abcdefghijklmnopqrstuvwxyz")
            assert all(set(w) <= script for w in noisy)
    captions = [ShapesWorld(length=400, language="both")[i][1] for i in range(400)]
    tokenizer = caption_tokenizer(captions, 512, 12)  # a short context: some noisy captions do not fit
    out = noised(captions, tokenizer, 0.5, seed=3)
    assert out == noised(captions, tokenizer, 0.5, seed=3) and len(out) == len(captions)
    changed = [(a, b) for a, b in zip(captions, out) if a != b]
    assert 0.2 * len(captions) < len(changed) < 0.5 * len(captions)
    assert all(len(tokenizer.encode(b)) + 2 <= 12 for _, b in changed)
