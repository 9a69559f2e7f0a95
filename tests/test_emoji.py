"""The emoji set builder, on a small tarball laid out like emoji-datasource-google (no network in tests)."""

from __future__ import annotations

import json

import pytest

from pictext.data.emoji import build_emoji, captions, fetch_tarball, held_out
from pictext.data.pairs import DatasetError, FolderPairs

from helpers import EMOJI_ENTRIES, fake_tarball


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
