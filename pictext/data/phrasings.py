"""Captions of the shapes world in English and Russian, from a small grammar of phrasings.

One template teaches a model one sentence: the shipped DALL-E, trained on "a small red circle on the left",
draws "a triangle that is green" but not "draw a blue cross", and nothing from a Russian prompt. So a caption
is one of several phrasings (word order, an imperative, a relative clause or a genitive of colour, a count
word, "on a plain background"), in either language, and some phrasings are kept out of training
(`HELD_OUT_PHRASINGS`) to measure how a model takes a phrasing it never saw.

Russian needs agreement: an adjective takes its noun's gender and case ("маленький синий крест",
"маленькая синяя полоса", "слева от красного круга"), so every word below has its forms. The four shapes are
masculine; of the hard-negative forms, the bar ("полоса") and the tee ("буква т") are feminine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANGUAGES = ("en", "ru", "both")

# phrasing -> (English template, Russian template); {a} is the shape's noun phrase, built by `noun_phrase`.
# "caption" is the form the world always had; the others vary word order, mood and construction.
PHRASINGS: dict[str, tuple[str, str]] = {
    "caption": ("{np}{where}", "{np}{where}"),
    "relative": ("a {shape} that is {color}", "{shape} {color_gen} цвета"),
    "imperative": ("draw {np}", "нарисуй {np_acc}"),
    "count": ("one {size_alt} {color} {shape}", "один {size_alt} {color} {shape}"),
    "background": ("{np} on a plain background", "{np} на однотонном фоне"),
    "picture": ("a picture of {np}", "на картинке {np}"),
    "fronted": ("{where_front} there is {np}", "{where_front} {np}"),
}
# never in the training captions of a world built with phrasings="train": the held-out phrasings a model is
# measured on ("draw a blue cross", "one big red square", and their Russian)
HELD_OUT_PHRASINGS = ("imperative", "count")
TRAIN_PHRASINGS = tuple(p for p in PHRASINGS if p not in HELD_OUT_PHRASINGS)

# English words and their Russian forms: (nominative masculine, genitive masculine, nominative feminine)
RU_COLORS = {
    "red": ("красный", "красного", "красная"),
    "green": ("зелёный", "зелёного", "зелёная"),
    "blue": ("синий", "синего", "синяя"),
    "yellow": ("жёлтый", "жёлтого", "жёлтая"),
    "purple": ("фиолетовый", "фиолетового", "фиолетовая"),
}
RU_SIZES = {"small": ("маленький", "маленького", "маленькая"), "large": ("большой", "большого", "большая")}
RU_SIZES_ALT = {"small": ("небольшой", "небольшого", "небольшая"), "large": ("крупный", "крупного", "крупная")}
EN_SIZES_ALT = {"small": "little", "large": "big"}
# noun -> (nominative, genitive, feminine?)
RU_NOUNS = {
    "circle": ("круг", "круга", False),
    "square": ("квадрат", "квадрата", False),
    "triangle": ("треугольник", "треугольника", False),
    "cross": ("крест", "креста", False),
    "shape": ("фигура", "фигуры", True),
    "bar": ("полоса", "полосы", True),
    "ellipse": ("эллипс", "эллипса", False),
    "tee": ("буква т", "буквы т", True),
}
RU_POSITIONS = {"left": "слева", "right": "справа", "top": "сверху", "bottom": "снизу", "center": "в центре"}
EN_POSITIONS = {p: ("in the center" if p == "center" else f"on the {p}") for p in RU_POSITIONS}


@dataclass(frozen=True)
class Described:
    """What a caption may say of one shape: each part empty when the caption leaves it out."""

    shape: str  # a noun of RU_NOUNS ("circle", ..., "shape" for "a red shape")
    color: str = ""
    size: str = ""
    position: str = ""


def noun_phrase(d: Described, language: str, case: str = "nom") -> str:
    """'a small red circle' / 'маленький красный круг' (case "gen": 'маленького красного круга')."""
    if language == "en":
        words = [w for w in (d.size, d.color, d.shape) if w]
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)
    nom, gen, feminine = RU_NOUNS[d.shape]
    form = 1 if case == "gen" else 2 if feminine else 0
    if case == "gen" and feminine:
        adjectives = [_feminine_genitive(RU_SIZES[d.size][2]) if d.size else "",
                      _feminine_genitive(RU_COLORS[d.color][2]) if d.color else ""]  # fmt: skip
    else:
        adjectives = [RU_SIZES[d.size][form] if d.size else "", RU_COLORS[d.color][form] if d.color else ""]
    return " ".join(w for w in (*adjectives, gen if case == "gen" else nom) if w)


def _feminine_genitive(nominative: str) -> str:
    """красная -> красной, синяя -> синей, большая -> большой."""
    return nominative[:-2] + ("ей" if nominative.endswith("яя") else "ой")


def phrase(d: Described, language: str, phrasing: str = "caption") -> str:
    """One shape in `phrasing` (a key of PHRASINGS), in English or Russian; in the caption form where that
    phrasing cannot say it (`usable`: "a triangle that is ..." needs a colour)."""
    if language not in ("en", "ru"):
        raise ValueError(f"language is 'en' or 'ru' here, got {language!r}")
    if phrasing not in PHRASINGS:
        raise ValueError(f"unknown phrasing {phrasing!r}; known: {sorted(PHRASINGS)}")
    if not usable(phrasing, d):
        phrasing = "caption"
    ru = language == "ru"
    np = noun_phrase(d, language)
    feminine = ru and RU_NOUNS[d.shape][2]
    form = 2 if feminine else 0  # the nominative adjective agreeing with the noun
    where = (RU_POSITIONS if ru else EN_POSITIONS).get(d.position, "")
    fields = {
        "np": np,
        "np_acc": _feminine_accusative(np) if feminine else np,  # a masculine inanimate's accusative is its nominative
        "where": f" {where}" if where else "",
        "where_front": where,
        "shape": RU_NOUNS[d.shape][0] if ru else d.shape,
        "color": "" if not d.color else RU_COLORS[d.color][form] if ru else d.color,
        "color_gen": RU_COLORS[d.color][1] if d.color else "",
        "size_alt": "" if not d.size else RU_SIZES_ALT[d.size][form] if ru else EN_SIZES_ALT[d.size],
    }
    template = PHRASINGS[phrasing][ru]
    return " ".join(template.format(**fields).split())  # an empty part leaves no double space


def _feminine_accusative(nominative: str) -> str:
    """красная полоса -> красную полосу (adjectives -ая/-яя -> -ую/-юю, nouns -а -> -у; "буква т" -> "букву т")."""
    words = []
    for w in nominative.split():
        if w.endswith("ая"):
            w = w[:-2] + "ую"
        elif w.endswith("яя"):
            w = w[:-2] + "юю"
        elif w.endswith("а"):
            w = w[:-1] + "у"
        words.append(w)
    return " ".join(words)


def usable(phrasing: str, d: Described) -> bool:
    """Whether `phrasing` can say `d`: the relative and genitive-of-colour forms need a colour and a shape, the
    count form a size too, the fronted form a position."""
    if phrasing == "relative":
        return bool(d.color) and d.shape != "shape"
    if phrasing == "count":
        return bool(d.color and d.size) and d.shape != "shape"
    if phrasing == "fronted":
        return bool(d.position)
    return True


def relation(first: str, second_genitive: str, left: bool, language: str) -> str:
    """'A left of B' / 'A слева от B' (B given in the genitive for Russian)."""
    if language == "en":
        return f"{first} {'left of' if left else 'right of'} {second_genitive}"
    return f"{first} {'слева от' if left else 'справа от'} {second_genitive}"


def prompt_language(prompt: str) -> str:
    """ "ru" when the prompt is written in Cyrillic, else "en"."""
    return "ru" if any("\u0400" <= ch <= "\u04ff" for ch in prompt) else "en"


# the letters a made-up word is spelt with, by the script of the caption it goes into
_LETTERS = {"en": "abcdefghijklmnopqrstuvwxyz", "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"}


def with_unknown_words(caption: str, rng: np.random.Generator) -> str:
    """`caption` with one or two made-up words (random letters of its script, 2 to 7 of them) put before, between
    or after its words. A model trained on some captions like these learns to draw what the words it knows say
    and to pass over a word it never saw, as a user's "draw ..." or "one big ..." is to it (no held-out word is
    ever drawn: the words are letters at random)."""
    letters = _LETTERS[prompt_language(caption)]
    words = caption.split()
    for _ in range(1 + int(rng.random() < 0.3)):
        made_up = "".join(letters[int(i)] for i in rng.integers(len(letters), size=int(rng.integers(2, 8))))
        words.insert(int(rng.integers(len(words) + 1)), made_up)
    return " ".join(words)


def choose(rng: np.random.Generator, language: str, phrasings: tuple[str, ...]) -> tuple[str, str]:
    """(language, phrasing) for one caption: "both" picks a language evenly; the caption form half the time."""
    lang = language if language != "both" else ("en", "ru")[int(rng.integers(2))]
    others = [p for p in phrasings if p != "caption"]
    if "caption" in phrasings and (not others or rng.random() < 0.5):
        return lang, "caption"
    return lang, others[int(rng.integers(len(others)))]


__all__ = ["HELD_OUT_PHRASINGS", "LANGUAGES", "PHRASINGS", "TRAIN_PHRASINGS", "Described", "choose", "noun_phrase",
           "phrase", "prompt_language", "relation", "usable", "with_unknown_words"]  # fmt: skip
