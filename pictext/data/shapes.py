"""A synthetic compositional world: coloured shapes with captions, and an oracle that checks images.

Every image is a pure function of (seed, index). Colour-shape combinations can be
held out of training ("every green triangle") to test compositional zero-shot
generalization: the model must have learned "green" and "triangle" separately.
The oracle finds shapes in any RGB image (also generated ones) by colour
segmentation and template matching, so it can judge whether a picture shows
"a red circle".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pictext.data import phrasings
from pictext.data.phrasings import prompt_language as prompt_language  # where the prompt helpers are looked for

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
}
SHAPES = ("circle", "square", "triangle", "cross")
# Forms that are pieces or stretches of the four shapes: one arm of a cross (a bar), a stretched circle (an
# ellipse), a cross missing an arm (a tee). A world can mix them in as hard negatives ("a red bar"), so that a CLIP
# trained on it must see a whole cross before it says "cross"; see ShapesWorld.hard_negatives.
HARD_NEGATIVES = ("bar", "ellipse", "tee")
SIZES = {"small": 0.22, "large": 0.42}  # shape extent as a fraction of the image side
POSITIONS = ("left", "right", "top", "bottom", "center")
DEFAULT_HELD_OUT = (
    ("green", "triangle"),
    ("red", "square"),
    ("blue", "cross"),
    ("yellow", "circle"),
    ("purple", "square"),
)


@dataclass(frozen=True)
class Shape:
    color: str  # a name in COLORS, or "" for a form-only shape (grey or an unnamed colour), captioned by form alone
    shape: str
    size: str
    position: str
    fill: tuple[int, int, int] = (200, 200, 200)  # the RGB of a form-only shape


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: int  # grey level

    def caption(self, rng: np.random.Generator | None = None, language: str = "en", phrasing: str = "caption") -> str:
        """The scene's caption in `language` ("en" or "ru") and `phrasing` (pictext.data.phrasings; a scene of two
        shapes always takes the caption form). The details said (size, colour, position) are drawn from `rng`
        the same way in either language, so the Russian caption of a picture says what its English one says."""
        described = [_describe(s, rng, with_position=len(self.shapes) == 1) for s in self.shapes]
        if len(described) == 1:
            d = described[0]
            return phrasings.phrase(d, language, phrasing)
        a, b = self.shapes
        first = phrasings.noun_phrase(described[0], language)
        second = phrasings.noun_phrase(described[1], language, case="gen")
        return phrasings.relation(first, second, _center(a)[0] < _center(b)[0], language)


def _describe(s: Shape, rng: np.random.Generator | None, with_position: bool) -> phrasings.Described:
    """What a caption says of a shape, at several levels of detail: naming colour or shape alone teaches them as
    separate words."""
    detail = 1.0 if rng is None else rng.random()
    if not s.color:
        return phrasings.Described(s.shape) if detail < 0.5 else phrasings.Described(s.shape, size=s.size)
    if with_position and detail < 0.1:
        return phrasings.Described("shape", color=s.color)
    if with_position and detail < 0.2:
        return phrasings.Described(s.shape)
    size = s.size if detail < 0.6 else ""
    position = s.position if with_position and (rng is None or rng.random() < 0.5) else ""
    return phrasings.Described(s.shape, color=s.color, size=size, position=position)


def _center(s: Shape) -> tuple[float, float]:
    return {"left": (0.28, 0.5), "right": (0.72, 0.5), "top": (0.5, 0.28), "bottom": (0.5, 0.72), "center": (0.5, 0.5)}[
        s.position
    ]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill: tuple) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        tx, ty = (x1 - x0) / 3, (y1 - y0) / 3  # arms a third of the box each way, so any box draws
        draw.rectangle((x0 + tx, y0, x1 - tx, y1), fill=fill)
        draw.rectangle((x0, y0 + ty, x1, y1 - ty), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render(scene: Scene, size: int = 64, jitter: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    image = Image.new("RGB", (size, size), (scene.background,) * 3)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        cx, cy = _center(s)
        half = SIZES[s.size] * size / 2
        cx, cy = cx * size + jitter[0] * size, cy * size + jitter[1] * size
        fill = COLORS[s.color] if s.color else s.fill
        draw_shape(draw, s.shape, (cx - half, cy - half, cx + half, cy + half), fill)
    return image


@dataclass
class ShapesWorld:
    """An indexable dataset of (image, caption). `held_out` combos never appear when `split="train"`."""

    size: int = 64
    seed: int = 0
    held_out: tuple[tuple[str, str], ...] = DEFAULT_HELD_OUT
    split: str = "train"  # "train": no held-out combos; "held_out": only them; "all"
    max_shapes: int = 1
    grey_fraction: float = 0.0  # share of one-shape images drawn without a named colour, captioned by form alone
    unnamed_colors: bool = False  # form-only shapes in random hues far from every named colour, not just greys
    length: int = 10_000
    # Share of pictures that show one HARD_NEGATIVES form in a named colour ("a red bar") instead of a scene. Without
    # them, the `shapes` CLIP scored a red bar 1.00 for "a red cross" against the other red shapes, and VQGAN+CLIP
    # guided by it drew bars for crosses (docs/measurements.md).
    hard_negatives: float = 0.0
    # Captions in "en", "ru" or "both" (each caption's language drawn evenly), in the phrasings named (keys of
    # pictext.data.phrasings.PHRASINGS; the caption form half the time). The default, English in the caption form,
    # is the world as it always was: the same captions, character for character.
    language: str = "en"
    phrasings: tuple[str, ...] = ("caption",)
    combos: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        every = [(c, s) for c in COLORS for s in SHAPES]
        held = set(self.held_out)
        unknown = held - set(every)
        if unknown:
            raise ValueError(f"held_out has unknown combinations {sorted(unknown)}")
        self.combos = {"train": [x for x in every if x not in held], "held_out": sorted(held), "all": every}[self.split]
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ValueError(f"hard_negatives is a share between 0 and 1, got {self.hard_negatives}")
        if self.language not in phrasings.LANGUAGES:
            raise ValueError(f"language must be one of {phrasings.LANGUAGES}, got {self.language!r}")
        unknown_phrasings = set(self.phrasings) - set(phrasings.PHRASINGS) or not self.phrasings
        if unknown_phrasings:
            raise ValueError(f"phrasings must be some of {sorted(phrasings.PHRASINGS)}, got {self.phrasings}")

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, index])
        n = int(rng.integers(1, self.max_shapes + 1))
        positions = rng.choice(["left", "right"], size=2, replace=False) if n == 2 else [rng.choice(POSITIONS)]
        shapes = []
        grey = n == 1 and rng.random() < self.grey_fraction
        for pos in positions:
            color, shape = self.combos[int(rng.integers(len(self.combos)))]
            if grey:
                color, shape = "", SHAPES[int(rng.integers(len(SHAPES)))]
            size = str(rng.choice(list(SIZES))) if n == 1 else "small"
            shapes.append(Shape(color, shape, size, str(pos), fill=self._form_fill(rng)))
        return Scene(tuple(shapes), background=int(rng.integers(0, 90)))

    def _form_fill(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """Grey, or with unnamed_colors a random colour at least 110 (RGB distance) from every named one."""
        grey = int(rng.integers(120, 256))
        if not self.unnamed_colors:
            return (grey, grey, grey)
        while True:
            rgb = rng.integers(0, 256, size=3)
            if min(np.linalg.norm(rgb - np.array(c)) for c in COLORS.values()) >= 110:
                return tuple(int(v) for v in rgb)  # type: ignore[return-value]

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        negative = self._hard_negative(index)
        if negative is not None:
            return negative
        rng = np.random.default_rng([self.seed, index, 1])
        scene = self.scene(index)
        jitter = tuple(rng.uniform(-0.06, 0.06, size=2))
        return render(scene, self.size, jitter), scene.caption(rng, *self._wording(index))  # type: ignore[arg-type]

    def _wording(self, index: int) -> tuple[str, str]:
        """(language, phrasing) of caption `index`, from a stream of its own ([seed, index, 11]): the pictures
        and what their captions say are those of the English world."""
        if self.language == "en" and self.phrasings == ("caption",):
            return "en", "caption"
        return phrasings.choose(np.random.default_rng([self.seed, index, 11]), self.language, self.phrasings)

    def label(self, index: int) -> str:
        """'color shape' of the first shape: the class for zero-shot evaluation (worlds without hard negatives)."""
        s = self.scene(index).shapes[0]
        return f"{s.color} {s.shape}"

    def _hard_negative(self, index: int) -> tuple[Image.Image, str] | None:
        """The picture and caption of a hard-negative form when `index` draws one, else None. A stream of its own
        ([seed, index, 7]) decides, so a world without them is the same world as before they existed."""
        if not self.hard_negatives:
            return None
        rng = np.random.default_rng([self.seed, index, 7])
        if rng.random() >= self.hard_negatives:
            return None
        image = Image.new("RGB", (self.size, self.size), (int(rng.integers(0, 90)),) * 3)
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        form = HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))]
        size = str(rng.choice(list(SIZES)))
        cx, cy = _center(Shape(color, form, size, str(rng.choice(POSITIONS))))
        jitter = rng.uniform(-0.06, 0.06, size=2)
        half = SIZES[size] * self.size / 2
        cx, cy = (cx + jitter[0]) * self.size, (cy + jitter[1]) * self.size
        box = (cx - half, cy - half, cx + half, cy + half)
        _draw_hard_negative(ImageDraw.Draw(image), form, box, COLORS[color], vertical=bool(rng.random() < 0.5))
        detail = rng.random()
        language, phrasing = self._wording(index)
        if (language, phrasing) == ("en", "caption"):  # the world's captions as they always were ("a ellipse")
            caption = (
                f"a {color} {form}" if detail < 0.6 else f"a {size} {color} {form}" if detail < 0.9 else f"a {form}"
            )
            return image, caption
        d = phrasings.Described(form, color=color, size=size if 0.6 <= detail < 0.9 else "")
        d = d if detail < 0.9 else phrasings.Described(form)
        return image, phrasings.phrase(d, language, phrasing)


def _draw_hard_negative(
    draw: ImageDraw.ImageDraw, form: str, box: tuple[float, float, float, float], fill: tuple, vertical: bool
) -> None:
    """A bar (one arm of the cross `box` would hold), an ellipse as wide as that arm, or a tee (that cross without
    its upper arm when `vertical`, else without its lower one)."""
    x0, y0, x1, y1 = box
    t = (x1 - x0) / 3
    arm = (x0 + t, y0, x1 - t, y1) if vertical else (x0, y0 + t, x1, y1 - t)
    if form == "bar":
        draw.rectangle(arm, fill=fill)
    elif form == "ellipse":
        draw.ellipse(arm, fill=fill)
    elif form == "tee":
        draw.rectangle((x0, y0 + t, x1, y1 - t), fill=fill)
        draw.rectangle((x0 + t, y0 + t, x1 - t, y1) if vertical else (x0 + t, y0, x1 - t, y1 - t), fill=fill)
    else:
        raise ValueError(f"unknown hard-negative form {form!r}; known: {HARD_NEGATIVES}")


@dataclass(frozen=True)
class Region:
    """One connected region of pixels near a named colour, as the oracle sees it."""

    color: str
    shape: str | None  # the template that explains it, or None when none fits (a blob, a fragment, a sliver)
    pixels: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1, end-exclusive


@dataclass(frozen=True)
class Verdict:
    """The oracle's two answers for a one-colour, one-shape prompt ("a red circle")."""

    contains: bool  # lenient: some region of the colour has the shape, however much else the image holds
    dominant: bool  # strict: the largest named-colour region is big enough and is the colour and the shape
    regions: int  # separate regions of the requested colour (each of at least min_pixels)
    largest: Region | None  # the dominant object, if any region is big enough to be one


def find_regions(image: Image.Image | np.ndarray, min_pixels: int = 12, tolerance: float = 60.0) -> list[Region]:
    """Every region of at least `min_pixels` within `tolerance` (RGB distance) of a named colour, largest first.

    Takes any image: PIL in any mode (RGBA and palettes are flattened, greyscale is expanded), or an array of
    shape (H, W), (H, W, 3) or (H, W, 4) in 0-255 (uint8) or 0-1 (float). Never raises on odd content or size.
    """
    return _regions(_rgb(image), min_pixels, tolerance)


def _regions(pixels: np.ndarray, min_pixels: int, tolerance: float) -> list[Region]:
    regions = []
    for color, rgb in COLORS.items():
        mask = np.linalg.norm(pixels - np.array(rgb, dtype=np.float32), axis=-1) < tolerance
        components, n = ndimage.label(mask)
        if n == 0:
            continue
        counts = np.bincount(components.ravel(), minlength=n + 1)
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None or counts[k] < min_pixels:
                continue
            part = components[box] == k
            ys, xs = box
            regions.append(Region(color, classify_mask(part), int(counts[k]), (xs.start, ys.start, xs.stop, ys.stop)))
    return sorted(regions, key=lambda r: -r.pixels)


def find_shapes(
    image: Image.Image | np.ndarray, min_pixels: int = 12, tolerance: float = 60.0
) -> list[tuple[str, str]]:
    """The lenient oracle: every (color, shape) it recognises in `image`, by colour segmentation and template IoU."""
    return [(r.color, r.shape) for r in find_regions(image, min_pixels, tolerance) if r.shape is not None]


def judge(
    image: Image.Image | np.ndarray,
    color: str,
    shape: str,
    min_fraction: float = 0.01,
    min_pixels: int = 12,
    tolerance: float = 60.0,
) -> Verdict:
    """Both verdicts on whether `image` shows a `color` `shape`.

    `dominant` holds when the largest region in any named colour covers at least `min_fraction` of the image
    and is the requested colour and shape: a field of small red dots, one of which looks square, is not "a red
    square". `contains` is `find_shapes`' lenient answer. Generators report `dominant` as their accuracy.
    """
    if color not in COLORS or shape not in SHAPES:
        raise ValueError(
            f"judge takes a colour in {list(COLORS)} and a shape in {list(SHAPES)}, got {color!r} {shape!r}"
        )
    pixels = _rgb(image)
    regions = _regions(pixels, min_pixels, tolerance)
    area = pixels.shape[0] * pixels.shape[1]
    largest = regions[0] if regions and regions[0].pixels >= min_fraction * area else None
    return Verdict(
        contains=any(r.color == color and r.shape == shape for r in regions),
        dominant=largest is not None and (largest.color, largest.shape) == (color, shape),
        regions=sum(r.color == color for r in regions),
        largest=largest,
    )


def prompt_target(prompt: str) -> tuple[str, str] | None:
    """(colour, shape), in the world's English names, when `prompt` names exactly one colour and one shape in
    English or Russian ("a small red circle", "нарисуй маленький красный круг"), else None."""
    words = prompt.lower().replace("ё", "е").replace(",", " ").replace(".", " ").split()
    colors = [c for w in words if (c := COLORS_BY_WORD.get(w)) is not None]
    shapes = [x for w in words if (x := SHAPES_BY_WORD.get(w)) is not None]
    return (colors[0], shapes[0]) if len(colors) == 1 and len(shapes) == 1 else None


def _russian_forms() -> tuple[dict[str, str], dict[str, str]]:
    """Every form of the world's colour adjectives and shape nouns in Russian (any gender, case and number),
    spelt with е for ё as people type them, mapped to the English name."""
    adjective = ("ый", "ий", "ой", "ого", "его", "ому", "ему", "ым", "им", "ом", "ем", "ая", "яя", "ую", "юю",
                 "ое", "ее", "ые", "ие", "ых", "их", "ыми", "ими")  # fmt: skip
    stems = {"красн": "red", "зелен": "green", "син": "blue", "желт": "yellow", "фиолетов": "purple"}
    colors = {stem + ending: name for stem, name in stems.items() for ending in adjective}
    noun = ("", "а", "у", "ом", "е", "и", "ов", "ам", "ами", "ах")
    nouns = {"круг": "circle", "квадрат": "square", "треугольник": "triangle", "крест": "cross"}
    shapes = {stem + ending: name for stem, name in nouns.items() for ending in noun}
    shapes |= {"кресты": "cross", "круги": "circle", "квадраты": "square", "треугольники": "triangle"}
    return colors, shapes


_RU_COLORS, _RU_SHAPES = _russian_forms()
COLORS_BY_WORD = {name: name for name in COLORS} | _RU_COLORS
SHAPES_BY_WORD = {name: name for name in SHAPES} | _RU_SHAPES


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 in 0-255 from a PIL image of any mode or an array; transparent pixels count as black."""
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            array = np.asarray(image, dtype=np.float32)
            image = Image.fromarray(np.clip(array / max(float(array.max()), 1.0) * 255, 0, 255).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image)
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = np.nan_to_num(array.astype(np.float32), nan=0.0) * (255.0 if array.size and array.max() <= 1 else 1)
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    return array[..., :3]


def classify_mask(mask: np.ndarray, min_iou: float = 0.6) -> str | None:
    """Which shape template best explains the mask's pixels within their bounding box, if any fits well.

    Regions under 3 pixels a side or longer than 1.6 times their width are no shape; never raises.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = int(x1 - x0), int(y1 - y0)
    if min(w, h) < 3 or max(w, h) > 1.6 * min(w, h):
        return None
    crop = mask[y0:y1, x0:x1].astype(bool)
    shapes, templates = _templates(w, h)  # (K,), (K, h, w)
    iou = (templates & crop).sum((1, 2)) / np.maximum((templates | crop).sum((1, 2)), 1)
    best = int(iou.argmax())
    return shapes[best] if iou[best] >= min_iou else None


# Sub-pixel shifts of a template's corners. A shape under 16 px rasterizes differently with where its box falls
# on the pixel grid (a 7 px cross's arms come out 2, 3 or 4 px wide), so small regions are matched against
# each shifted rasterization (bench/oracle.py: what that gained on clean 32 px images).
_SHIFTS = (
    (0.0, 0.0),
    (-0.4, -0.4),
    (-0.4, 0.0),
    (-0.4, 0.4),
    (0.0, -0.4),
    (0.0, 0.4),
    (0.4, -0.4),
    (0.4, 0.0),
    (0.4, 0.4),
)


@functools.lru_cache(maxsize=1024)
def _templates(w: int, h: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Every shape drawn into a w x h box (and, under 16 px, at each shift of `_SHIFTS`): names and masks."""
    names, masks = [], []
    for shape in SHAPES:
        for start, end in _SHIFTS if min(w, h) < 16 else _SHIFTS[:1]:
            template = Image.new("L", (w, h), 0)
            draw_shape(ImageDraw.Draw(template), shape, (start, start, w - 1 + end, h - 1 + end), 255)
            names.append(shape)
            masks.append(np.asarray(template) > 127)
    return tuple(names), np.stack(masks)
