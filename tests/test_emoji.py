"""The emoji set builder, on a small tarball laid out like emoji-datasource-google (no network in tests)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pictext.data.emoji import build_emoji, captions, fetch_tarball, held_out
from pictext.data.pairs import DatasetError, FolderPairs

from helpers import EMOJI_ENTRIES, fake_emojilib, fake_openmoji, fake_tarball


def test_build_writes_inspectable_pairs_split_by_base_emoji(tmp_path):
    counts = build_emoji(tmp_path / "emoji", fake_tarball(tmp_path / "e.tgz"))
    assert counts["train"] + counts["held_out"] == 42 and 0 < counts["held_out"] < 20
    side = "held_out" if held_out("1F000") else "train"
    for variant in ("1f000", "1f000-1f3fb", "1f000-1f3ff"):  # every skin tone with its base
        assert (tmp_path / "emoji" / side / f"{variant}.png").is_file()
    data = FolderPairs(tmp_path / "emoji" / "train")
    image, caption = data[0]
    assert image.size == (64, 64) and caption.startswith(("thing", "a animal mammal emoji"))
    labels = json.loads((tmp_path / "emoji" / "train" / "labels.json").read_text())
    assert set(labels.values()) <= {"Objects", "Animals & Nature"} and len(labels) == counts["train"]
    assert captions(EMOJI_ENTRIES[3]) == ["thing 3", "a animal mammal emoji: thing 3"]  # duplicates dropped


def test_not_the_tarball_and_no_npm_are_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "x.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DatasetError, match="is not the emoji-datasource-google tarball"):
        build_emoji(tmp_path / "out", tmp_path / "x.tgz")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(DatasetError, match="npm is not installed.*--tarball"):
        fetch_tarball(tmp_path / "cache")


def test_keywords_join_the_captions_as_words(tmp_path):
    words = fake_emojilib(tmp_path / "emojilib.tgz")
    build_emoji(tmp_path / "emoji", fake_tarball(tmp_path / "e.tgz"), words=words)
    side = "held_out" if held_out("1F001") else "train"
    lines = (tmp_path / "emoji" / side / "1f001.txt").read_text().splitlines()
    assert lines[0] == "thing 1" and "thing 1: gadget, shiny tool, widget" in lines
    assert {"gadget", "shiny tool", "widget"} <= set(lines) and ":D" not in "".join(lines)
    assert "gadget" not in next((tmp_path / "emoji").glob("*/1f000.txt")).read_text()  # keywords are per emoji


def test_openmoji_svgs_become_pngs_on_the_same_side_of_the_split(tmp_path):
    base = fake_tarball(tmp_path / "google.tgz")
    counts = build_emoji(tmp_path / "om", fake_openmoji(tmp_path / "om.tgz"), vendor="openmoji", base=base)
    assert counts["train"] + counts["held_out"] == 2  # E000 is OpenMoji's own: emoji-datasource lacks it
    for code, base_code in (("1f001", "1F001"), ("1f000-1f3fb", "1F000")):  # a skin tone goes with its base
        side = "held_out" if held_out(base_code) else "train"
        image = Image.open(tmp_path / "om" / side / f"{code}.png")
        assert image.size == (64, 64)
        r, g, b, a = image.convert("RGBA").getpixel((32, 32))
        assert r > 200 and g < 50 and b < 50 and a == 255  # the SVG's red disc, rasterised
        assert (tmp_path / "om" / side / f"{code}.txt").read_text().startswith(f"thing {int(base_code[2:], 16)}")
    with pytest.raises(DatasetError, match="emoji-datasource"):
        build_emoji(tmp_path / "x", tmp_path / "om.tgz", vendor="openmoji")
