"""A synthetic compositional world: coloured shapes with captions, and an oracle that checks images.

Every image is a pure function of (seed, index). Colour-shape combinations can be
held out of training ("every green triangle") to test compositional zero-shot
generalization: the model must have learned "green" and "triangle" separately.
The oracle finds shapes in any RGB image (also generated ones) by colour
segmentation and template matching, so it can judge whether a picture shows
"a red circle".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
}
SHAPES = ("circle", "square", "triangle", "cross")
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

    def caption(self, rng: np.random.Generator | None = None) -> str:
        parts = [_phrase(s, rng, with_position=len(self.shapes) == 1) for s in self.shapes]
        if len(parts) == 1:
            return parts[0]
        a, b = self.shapes
        relation = "left of" if _center(a)[0] < _center(b)[0] else "right of"
        return f"{parts[0]} {relation} {parts[1]}"


def _phrase(s: Shape, rng: np.random.Generator | None, with_position: bool) -> str:
    """Captions at several levels of detail; naming colour or shape alone teaches them as separate words."""
    detail = 1.0 if rng is None else rng.random()
    if not s.color:
        return f"a {s.shape}" if detail < 0.5 else f"a {s.size} {s.shape}"
    if with_position and detail < 0.1:
        return f"a {s.color} shape"
    if with_position and detail < 0.2:
        return f"a {s.shape}"
    words = [s.size, s.color, s.shape] if detail < 0.6 else [s.color, s.shape]
    text = "a " + " ".join(words)
    if with_position and (rng is None or rng.random() < 0.5):
        text += f" {'in the' if s.position == 'center' else 'on the'} {s.position}"
    return text


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
        t = (x1 - x0) / 3
        draw.rectangle((x0 + t, y0, x1 - t, y1), fill=fill)
        draw.rectangle((x0, y0 + t, x1, y1 - t), fill=fill)
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
    combos: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        every = [(c, s) for c in COLORS for s in SHAPES]
        held = set(self.held_out)
        unknown = held - set(every)
        if unknown:
            raise ValueError(f"held_out has unknown combinations {sorted(unknown)}")
        self.combos = {"train": [x for x in every if x not in held], "held_out": sorted(held), "all": every}[self.split]

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
        rng = np.random.default_rng([self.seed, index, 1])
        scene = self.scene(index)
        jitter = tuple(rng.uniform(-0.06, 0.06, size=2))
        return render(scene, self.size, jitter), scene.caption(rng)  # type: ignore[arg-type]

    def label(self, index: int) -> str:
        """'color shape' of the first shape: the class for zero-shot evaluation."""
        s = self.scene(index).shapes[0]
        return f"{s.color} {s.shape}"


def find_shapes(image: Image.Image, min_pixels: int = 12, tolerance: float = 60.0) -> list[tuple[str, str]]:
    """The oracle: (color, shape) pairs it sees in `image`, by colour segmentation and template IoU."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    found = []
    for color, rgb in COLORS.items():
        mask = np.linalg.norm(pixels - np.array(rgb, dtype=np.float32), axis=-1) < tolerance
        components, n = ndimage.label(mask)
        for k in range(1, n + 1):
            part = components == k
            if part.sum() >= min_pixels and (shape := classify_mask(part)) is not None:
                found.append((color, shape))
    return found


def classify_mask(mask: np.ndarray, min_iou: float = 0.6) -> str | None:
    """Which shape template best explains the mask's pixels within their bounding box, if any fits well."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    if min(w, h) < 3 or max(w, h) > 1.6 * min(w, h):
        return None
    crop = mask[y0:y1, x0:x1]
    best, best_iou = None, 0.0
    for shape in SHAPES:
        template = Image.new("L", (int(w), int(h)), 0)
        draw_shape(ImageDraw.Draw(template), shape, (0, 0, w - 1, h - 1), 255)
        t = np.asarray(template) > 127
        iou = (t & crop).sum() / max((t | crop).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return best if best_iou >= min_iou and not math.isnan(best_iou) else None
