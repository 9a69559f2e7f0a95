"""WebDataset tar shards: image-caption pairs for corpora that do not fit a folder.

The format is WebDataset's (github.com/webdataset/webdataset): a plain tar whose members `key.png` (or .jpg,
.jpeg, .webp) and `key.txt` make one sample. Shards are written with the `webdataset` package's ShardWriter, and
anything webdataset writes is read here. Reading is by random access rather than through webdataset's
streaming pipeline: each shard's members are indexed once (name, offset, size), so the trainer can keep drawing
batches by (seed, step) and a resumed run sees exactly the batches an unbroken run would.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pictext.errors import DatasetError
from pictext.images.decode import decode_bytes

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


def expand(spec: str | os.PathLike) -> list[Path]:
    """Shard paths from `x-{000000..000009}.tar` (brace notation, as webdataset takes), a .tar file, or a folder."""
    from braceexpand import braceexpand  # installed with webdataset

    path = Path(spec)
    if path.is_dir():
        found = sorted(path.glob("*.tar"))
        if not found:
            raise DatasetError(f"{path}: a folder with no .tar shards")
        return found
    shards = [Path(p) for p in braceexpand(str(spec))]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise DatasetError(f"shard(s) not found: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return shards


class ShardPairs:
    """(image, caption) pairs from WebDataset shards; one of a sample's caption lines is picked per epoch."""

    def __init__(self, spec: str | os.PathLike | Sequence[Path], seed: int = 0) -> None:
        self.shards = list(spec) if isinstance(spec, list | tuple) else expand(spec)  # type: ignore[arg-type]
        self.seed, self.epoch = seed, 0
        self.items: list[tuple[int, str, int, int, list[str]]] = []  # shard, member name, offset, size, captions
        for n, shard in enumerate(self.shards):
            self.items.extend((n, *rest) for rest in _index(shard))
        if not self.items:
            raise DatasetError(f"{spec}: the shards hold no image-caption samples")
        self._files: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.items)

    def caption_lists(self) -> list[list[str]]:
        return [item[4] for item in self.items]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        shard, name, offset, size, captions = self.items[index]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.shards[shard], "rb")  # kept open for random reads
        f.seek(offset)  # type: ignore[attr-defined]
        data = f.read(size)  # type: ignore[attr-defined]
        pick = np.random.default_rng([self.seed, index, self.epoch]).integers(len(captions))
        return decode_bytes(data, f"{self.shards[shard]}:{name}"), captions[int(pick)]

    def __getstate__(self) -> dict:  # DataLoader workers reopen their own file handles
        return {**self.__dict__, "_files": {}}


def _index(shard: Path) -> Iterable[tuple[str, int, int, list[str]]]:
    """(image member, data offset, size, captions) per sample; a sample without a caption is a DatasetError."""
    try:
        archive = tarfile.open(shard, "r:")  # uncompressed: compressed tars cannot be read at an offset
    except tarfile.ReadError as e:
        raise DatasetError(f"{shard}: not an uncompressed tar shard ({e}); webdataset's ShardWriter writes them") from e
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    with archive:
        for member in archive:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            stem, dot, ext = base.partition(".")  # webdataset's rule: the key ends at the first dot
            if dot:
                samples.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = member
        problems = []
        for key, parts in samples.items():
            image = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
            if image is None:
                continue  # not an image sample (metadata, say)
            if "txt" not in parts:
                problems.append(f"{key}: no caption ({key}.txt)")
                continue
            text = archive.extractfile(parts["txt"]).read().decode("utf-8", "replace")  # type: ignore[union-attr]
            captions = [line.strip() for line in text.splitlines() if line.strip()]
            if not captions:
                problems.append(f"{key}: empty caption")
                continue
            yield image.name, image.offset_data, image.size, captions
        if problems:
            listed = "; ".join(problems[:5])
            raise DatasetError(f"{shard}: {len(problems)} sample(s) without a usable caption: {listed}")


def write_shards(
    pairs: Iterable[tuple[str, bytes, str, str]], out: Path, prefix: str, per_shard: int = 1000
) -> list[Path]:
    """Write (key, image bytes, image extension, caption text) samples as `out/prefix-000000.tar`, ... with
    webdataset's ShardWriter; shards appear under their names only when complete (temporary folder, then rename)."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{prefix}.partial"
    tmp.mkdir(exist_ok=True)
    with wds.ShardWriter(str(tmp / f"{prefix}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for key, image, ext, caption in pairs:
            sink.write({"__key__": key, ext: image, "txt": caption})
    written = []
    for shard in sorted(tmp.glob("*.tar")):
        os.replace(shard, out / shard.name)
        written.append(out / shard.name)
    tmp.rmdir()
    return written
