"""The shapes-world oracle: it answers for any image without raising, and its strict verdict is strict."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pictext.data.shapes import (
    COLORS,
    HARD_NEGATIVES,
    SHAPES,
    ShapesWorld,
    classify_mask,
    find_regions,
    find_shapes,
    judge,
    prompt_target,
)

from helpers import shape_image


def test_masks_of_every_small_size_and_aspect_never_raise():
    rng = np.random.default_rng(0)
    for h in range(0, 17):
        for w in range(0, 17):
            for mask in (np.ones((h, w), bool), rng.random((h, w)) < 0.5, np.zeros((h, w), bool)):
                answer = classify_mask(mask)
                assert answer is None or answer in SHAPES
    assert classify_mask(np.ones((4, 6), bool)) in (None, *SHAPES)  # drew a cross of negative height before
    assert classify_mask(np.ones((6, 4), bool)) in (None, *SHAPES)


@pytest.mark.parametrize("size", [(1, 1), (1, 512), (512, 1), (2, 3), (5, 4), (7, 7), (33, 20), (512, 512)])
def test_random_images_of_any_size_get_an_answer(size):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    w, h = size
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    blobs = Image.new("RGB", size, (30, 30, 30))
    draw = ImageDraw.Draw(blobs)
    for _ in range(40):  # overlapping boxes and ellipses in named colours, many tiny or thin
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        box = (x0, y0, x0 + rng.integers(0, max(2, w // 3)), y0 + rng.integers(0, max(2, h // 3)))
        fill = list(COLORS.values())[rng.integers(len(COLORS))]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    for image in (Image.fromarray(noise), blobs, noise, noise.astype(np.float32) / 255, np.asarray(blobs)[..., 0]):
        found = find_shapes(image)
        assert all(c in COLORS and s in SHAPES for c, s in found)
        verdict = judge(image, "red", "square")
        assert verdict.regions >= 0 and (verdict.dominant <= (verdict.largest is not None))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "P", "I;16", "I", "F", "CMYK"])
def test_every_image_mode_is_read(mode):
    image = shape_image("green", "triangle", "large")
    converted = image.convert("RGBA").convert(mode) if mode in ("LA", "P") else image.convert(mode)
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 200)
    find_shapes(converted)  # greyscale loses the colour; any answer is fine, an exception is not
    if mode in ("RGBA", "P", "CMYK"):  # these keep the colour
        assert ("green", "triangle") in find_shapes(converted)


def test_transparent_pixels_count_as_background():
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., :3] = COLORS["red"]  # red everywhere, but only a square of it opaque
    image[16:48, 16:48, 3] = 255
    assert find_shapes(Image.fromarray(image, "RGBA")) == [("red", "square")]


@pytest.mark.parametrize("color", list(COLORS))
@pytest.mark.parametrize("shape", SHAPES)
def test_a_clean_shape_passes_both_verdicts_for_itself_only(color, shape):
    image = shape_image(color, shape, "large", "center")
    verdict = judge(image, color, shape)
    assert verdict.contains and verdict.dominant and verdict.regions == 1
    assert verdict.largest is not None and (verdict.largest.color, verdict.largest.shape) == (color, shape)
    other_shape = SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
    other_color = list(COLORS)[(list(COLORS).index(color) + 1) % len(COLORS)]
    for wrong in (judge(image, color, other_shape), judge(image, other_color, shape)):
        assert not wrong.contains and not wrong.dominant


def test_a_field_of_small_dots_contains_a_square_but_shows_none():
    image = Image.new("RGB", (64, 64), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    for y in range(4, 64, 10):
        for x in range(4, 64, 10):
            draw.rectangle((x, y, x + 3, y + 3), fill=COLORS["red"])  # 36 dots of 16 px, each a perfect square
    verdict = judge(image, "red", "square")
    assert verdict.contains and not verdict.dominant and verdict.regions == 36 and verdict.largest is None


def test_the_dominant_object_is_the_largest_in_any_named_colour():
    image = shape_image("blue", "circle", "large", "left")
    draw = ImageDraw.Draw(image)
    draw.rectangle((44, 24, 54, 34), fill=COLORS["red"])  # a smaller red square beside the big blue circle
    red_square, blue_circle = judge(image, "red", "square"), judge(image, "blue", "circle")
    assert red_square.contains and not red_square.dominant and red_square.regions == 1
    assert blue_circle.dominant and blue_circle.largest is not None and blue_circle.largest.pixels > 121
    regions = find_regions(image)
    assert [r.pixels for r in regions] == sorted((r.pixels for r in regions), reverse=True)


def test_prompt_targets_and_bad_requests():
    assert prompt_target("a small red circle on the left") == ("red", "circle")
    assert prompt_target("A Blue, square") == ("blue", "square")
    assert prompt_target("a red circle left of a blue square") is None  # two of each: no single target
    assert prompt_target("a cat") is None
    with pytest.raises(ValueError, match="judge takes a colour"):
        judge(shape_image("red", "circle"), "crimson", "circle")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        find_shapes(np.zeros((4, 4, 2)))


@pytest.mark.parametrize("size", [32, 64])
def test_every_clean_shapes_world_image_is_judged_right(size):
    world = ShapesWorld(size=size, split="all", max_shapes=1, seed=3, length=200)
    wrong = [i for i in range(len(world)) if not judge(world[i][0], *world.label(i).split()).dominant]
    assert not wrong, [world.label(i) for i in wrong]


def test_hard_negatives_are_pieces_of_shapes_in_the_colour_their_caption_names():
    """Bars and ellipses are never one of the four shapes to the oracle (tees, a cross less an arm, may be), and
    each picture's one region has the colour its caption names."""
    world = ShapesWorld(hard_negatives=1.0, seed=3, length=90)
    forms = set()
    for i in range(len(world)):
        image, caption = world[i]
        form = caption.split()[-1]
        assert form in HARD_NEGATIVES, caption
        forms.add(form)
        regions = find_regions(image)
        assert len(regions) == 1, caption
        if form != "tee":
            assert regions[0].shape is None, (caption, regions[0])
        if len(caption.split()) > 2:  # "a bar" names no colour
            assert regions[0].color in caption.split(), (caption, regions[0])
    assert forms == set(HARD_NEGATIVES)


def test_hard_negatives_take_their_share_and_leave_the_other_pictures_as_they_were():
    plain = ShapesWorld(max_shapes=2, seed=4, length=1000)
    mixed = ShapesWorld(max_shapes=2, seed=4, length=1000, hard_negatives=0.3)
    replaced = 0
    for i in range(len(plain)):
        (a, caption_a), (b, caption_b) = plain[i], mixed[i]
        if caption_b.split()[-1] in HARD_NEGATIVES:
            replaced += 1
        else:
            assert caption_a == caption_b and np.array_equal(np.asarray(a), np.asarray(b)), i
    assert 240 <= replaced <= 360, replaced  # 300 expected; the band is four standard deviations each way
    with pytest.raises(ValueError, match="hard_negatives"):
        ShapesWorld(hard_negatives=1.5)
