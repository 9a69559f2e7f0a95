"""Image-caption pairs from files: a folder with captions beside the images, a CSV/TSV/JSONL table, digits.

Every dataset is indexable, returns (PIL image, caption), and checks its captions when it is built, so a
missing or empty caption is reported with its file (and row) before training starts. Images are decoded
when read; a bad one raises ImageError naming it, which the trainer skips with a message.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pictext.errors import DatasetError
from pictext.images.decode import IMAGE_SUFFIXES, decode_image


class _Captioned:
    """Shared by the file datasets: (image path, captions) items, one caption picked per epoch."""

    def __init__(self, items: list[tuple[Path, list[str]]], source: object, seed: int) -> None:
        if not items:
            raise DatasetError(f"{source}: no image-caption pairs found")
        self.items, self.seed, self.epoch = items, seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def caption_lists(self) -> list[list[str]]:
        return [captions for _, captions in self.items]

    def set_epoch(self, epoch: int) -> None:
        """Which of an image's captions is used depends on (seed, index, epoch): resumable, varied."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        path, captions = self.items[index]
        pick = np.random.default_rng([self.seed, index, self.epoch]).integers(len(captions))
        return decode_image(path), captions[int(pick)]


class FolderPairs(_Captioned):
    """`x.jpg` with `x.txt` beside it, one caption a line, in a folder tree (hidden entries skipped)."""

    def __init__(self, root: str | os.PathLike, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder")
        items, problems = [], []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                text = path.with_suffix(".txt")
                captions = _lines(text.read_text(encoding="utf-8")) if text.is_file() else []
                if captions:
                    items.append((path, captions))
                else:
                    problems.append(f"{path} ({'empty ' if text.is_file() else 'no '}{text.name})")
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise DatasetError(f"{len(problems)} images in {root} have no caption: {shown}")
        super().__init__(items, root, seed)


class TablePairs(_Captioned):
    """A CSV, TSV or JSONL file with an image-path column and a caption column; paths relative to the file."""

    def __init__(
        self, path: str | os.PathLike, image_column: str = "image", caption_column: str = "caption", seed: int = 0
    ) -> None:
        path = Path(path)
        rows = _read_table(path)
        columns = set(rows[0]) if rows else set()
        missing = [c for c in (image_column, caption_column) if c not in columns]
        if missing:
            raise DatasetError(
                f"{path} has no column {', '.join(map(repr, missing))}; its columns are {sorted(columns)}. "
                "Name them with --image-column / --caption-column"
            )
        items, empty = [], []
        for line, row in enumerate(rows, start=2 if path.suffix != ".jsonl" else 1):
            caption = str(row.get(caption_column) or "").strip()
            if not caption:
                empty.append(line)
                continue
            items.append(((path.parent / str(row[image_column])).resolve(), [caption]))
        if empty:
            raise DatasetError(f"{path}: empty caption on line(s) {', '.join(map(str, empty[:10]))}")
        super().__init__(items, path, seed)


class DigitsPairs:
    """scikit-learn's 1,797 handwritten digits (bundled, nothing downloaded), 8x8 scaled to 32x32."""

    WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

    def __init__(self, seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.images, self.labels, self.seed = digits.images, digits.target, seed

    def __len__(self) -> int:
        return len(self.labels)

    def label(self, index: int) -> str:
        return self.WORDS[int(self.labels[index])]

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        pixels = (255 - self.images[index] * 255 / 16).astype(np.uint8)  # dark ink on white
        image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).convert("RGB")
        digit = int(self.labels[index])
        rng = np.random.default_rng([self.seed, index])
        templates = ("a handwritten {w}", "the digit {d}", "the number {w}", "a {w}")
        return image, templates[int(rng.integers(len(templates)))].format(w=self.WORDS[digit], d=digit)


def load_pairs(spec: str, seed: int = 0, image_column: str = "image", caption_column: str = "caption"):
    """A dataset by name (digits) or path: a folder of pairs, a .csv, .tsv or .jsonl table, or WebDataset shards
    (`x.tar`, `x-{000000..000009}.tar`, or a folder of .tar files)."""
    if spec == "digits":
        return DigitsPairs(seed)
    path = Path(spec)
    if spec.endswith(".tar") or (path.is_dir() and any(path.glob("*.tar"))):
        from pictext.data.shards import ShardPairs

        return ShardPairs(spec, seed)
    if path.is_dir():
        return FolderPairs(path, seed)
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        return TablePairs(path, image_column, caption_column, seed)
    if not path.exists():
        raise DatasetError(f"--data {spec}: not a dataset name (shapes, digits), a folder, a table or .tar shards")
    raise DatasetError(f"--data {spec}: a table must be .csv, .tsv or .jsonl")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_table(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{path}:{n}: not JSON ({e.msg})") from e
        return rows
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))


class MixedPairs:
    """Several pair datasets as one, each repeated `times` over: uniform sampling then draws them in proportion."""

    def __init__(self, parts: Sequence[tuple[object, int]]) -> None:
        self.parts = [(data, int(times)) for data, times in parts if times > 0]
        self.offsets = np.cumsum([0, *(len(data) * times for data, times in self.parts)])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        for data, _ in self.parts:
            if hasattr(data, "set_epoch"):
                data.set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        data, _ = self.parts[part]
        return data[(index - int(self.offsets[part])) % len(data)]  # type: ignore[index]
