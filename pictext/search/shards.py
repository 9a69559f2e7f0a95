"""Embedding shards: their sources, their files and their plan; pictext.search.bulk runs the embedding (here or
on a Ray cluster).

    pictext embed SOURCE --out EMB/ [--ray ADDRESS]

SOURCE is a folder, a text file listing image files (one a line), or WebDataset shards (`data/{00000..00099}.tar`:
KEY.jpg beside KEY.txt, the caption, and KEY.json, with its `url` and `caption`, as img2dataset writes them).

The first run writes EMB/plan.json: the input shards (one a tar; `shard_size` files each for a folder or a list,
their paths in EMB/inputs/) and the model (its name and fingerprint). Each input shard becomes two files,
NAME.npy (float16 unit vectors, one row an item) and NAME.parquet (key, location: the path or URL, caption,
content hash, error, and where its bytes lie; the model's fingerprint in its metadata). Both are written
atomically, the table last: a shard whose table exists is done, and a rerun skips it. A crash redoes only the
shards not finished, and a shard is never written twice. An item that does not decode keeps its row (a zero
vector, its error in the table), so rows and items stay aligned; an index skips it.

Tar members are read where they lie (offset and size from the tar's headers), never extracted: a member's
name is only a key.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pictext.errors import MissingFileError, PictextError, UsageError
from pictext.files import atomic_write
from pictext.images.decode import IMAGE_SUFFIXES, ImageError, decode_bytes
from pictext.images.transforms import Preprocess

if TYPE_CHECKING:
    from pictext.clip.model import CLIP

SHARD_SIZE = 10_000  # files a shard, for folders and lists (img2dataset's default shard size)
MAX_MEMBER_BYTES = 64 << 20  # a tar member larger than this is refused as an image (and not read)
CAPTION_BYTES = 1 << 16  # captions and json sidecars are read up to this size


class ShardError(PictextError, ValueError):
    pass


@dataclass(frozen=True)
class InputShard:
    name: str  # the output files' stem
    kind: str  # "files": a list of paths in `path` (EMB/inputs/NAME.txt); "tar": a WebDataset shard at `path`
    path: str


@dataclass(frozen=True)
class Item:
    """One image of a shard, located without reading it: `size` bytes at `offset` of `file` (-1: the whole file)."""

    index: int  # its row in the shard
    key: str
    location: str  # what a search result shows: the file's path, the sample's URL, or TAR#KEY
    caption: str
    file: str
    offset: int = 0
    size: int = -1


@dataclass
class Plan:
    source: str
    shards: list[InputShard]
    model: str  # the model's name or path, as loaded on every worker
    fingerprint: str  # pictext.clip.embed.model_fingerprint: every worker must hold this model
    dim: int
    precision: str  # what the model ran in (fp32 or bf16)
    draft: int | None  # JPEG draft decoding size (pictext index's fast decode), or None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @staticmethod
    def read(path: Path) -> Plan:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["shards"] = [InputShard(**s) for s in raw["shards"]]
            return Plan(**raw)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ShardError(f"{path} is not a pictext embedding plan ({e}); embed into a new folder") from e


@dataclass
class EmbedReport:
    shards: int = 0
    skipped: int = 0  # done by an earlier run
    written: int = 0
    images: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)

    def __str__(self) -> str:
        return (f"{self.shards} shards: {self.written} written, {self.skipped} done before; {self.images} images "
                f"embedded, {len(self.errors)} errors")  # fmt: skip


# ---- sources ----------------------------------------------------------------------------------------------------


def source_shards(source: str, out: Path, shard_size: int = SHARD_SIZE) -> list[InputShard]:
    """The input shards of `source` (see the module's doc); a folder's or list's paths are written to
    out/inputs/ (so that every rerun and every worker sees the same shards, whatever changes in the folder)."""
    if shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {shard_size}")
    path = Path(source).expanduser()
    if "{" in source or source.endswith(".tar"):
        import braceexpand  # webdataset's dependency: its shard patterns

        tars = [Path(p).expanduser() for p in braceexpand.braceexpand(source)]
        missing = [str(p) for p in tars if not p.is_file()]
        if missing:
            raise MissingFileError(f"{missing[0]}: no such WebDataset shard ({len(missing)} of {len(tars)} missing)")
        names = [t.name.removesuffix(".tar") for t in tars]
        if len(set(names)) != len(names):
            raise UsageError(f"{source}: two shards share a file name; each shard's name names its output")
        return [InputShard(n, "tar", str(t.resolve())) for n, t in zip(names, tars, strict=True)]
    if path.is_dir():
        from pictext.images.decode import list_images

        files = [str(p.resolve()) for p in list_images([path])]
    elif path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        files = [line for line in lines if line and not line.startswith("#")]
        for line in files:
            if "://" in line:
                raise UsageError(f"{path}: {line[:80]!r} is a URL; pictext embeds local files (download the "
                                 "collection first, e.g. with img2dataset into WebDataset shards)")  # fmt: skip
        files = [str(Path(f).expanduser().resolve()) for f in files]
    else:
        raise MissingFileError(f"{source}: no such folder, file list or WebDataset shard (.tar)")
    if not files:
        raise UsageError(f"{source}: no images found")
    shards = []
    for i, start in enumerate(range(0, len(files), shard_size)):
        name = f"{i:05d}"
        listing = out / "inputs" / f"{name}.txt"
        atomic_write(listing, lambda tmp, s=start: Path(tmp).write_text(
            "\n".join(files[s : s + shard_size]) + "\n", encoding="utf-8"))  # fmt: skip
        shards.append(InputShard(name, "files", str(listing)))
    return shards


def list_items(shard: InputShard) -> list[Item]:
    """The shard's images, in order, located but not read (a tar's headers and its small text members only)."""
    if shard.kind == "files":
        paths = Path(shard.path).read_text(encoding="utf-8").splitlines()
        return [Item(i, p, p, _sidecar_caption(p), p) for i, p in enumerate(paths) if p]
    if shard.kind != "tar":
        raise ShardError(f"unknown input shard kind {shard.kind!r}")
    try:
        with tarfile.open(shard.path, "r:") as tar:  # uncompressed: members are read in place, by offset
            groups: dict[str, dict[str, tarfile.TarInfo]] = {}
            for member in tar.getmembers():
                if not member.isreg():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                if "." not in base or base.startswith("."):
                    continue
                stem, ext = base.split(".", 1)
                key = member.name[: len(member.name) - len(base)] + stem  # webdataset's key: path before the first dot
                groups.setdefault(key, {})[ext.lower()] = member
            items = []
            for key, members in groups.items():
                image_ext = next((e for e in members if "." + e in IMAGE_SUFFIXES), None)
                if image_ext is None:
                    continue
                meta = _json_member(tar, members.get("json"))
                caption = _text_member(tar, members.get("txt")) or str(meta.get("caption") or "")
                url = meta.get("url")
                location = url if isinstance(url, str) and url else f"{shard.path}#{key}"
                m = members[image_ext]
                items.append(Item(len(items), key, location, caption, shard.path, m.offset_data, m.size))
            return items
    except (tarfile.TarError, OSError) as e:
        raise ShardError(f"{shard.path}: not a readable (uncompressed) tar ({e})") from e


def _sidecar_caption(path: str) -> str:
    """A caption in PATH's stem + .txt beside the image (clip-retrieval's folder layout), else ""."""
    text = Path(path).with_suffix(".txt")
    try:
        with open(text, "rb") as f:
            return f.read(CAPTION_BYTES).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _text_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> str:
    if member is None or member.size > CAPTION_BYTES:
        return ""
    f = tar.extractfile(member)
    return f.read().decode("utf-8", "replace").strip() if f is not None else ""


def _json_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> dict:
    try:
        value = json.loads(_text_member(tar, member) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def read_bytes(item: Item) -> bytes:
    with open(item.file, "rb") as f:
        if item.size < 0:
            return f.read(MAX_MEMBER_BYTES + 1)
        f.seek(item.offset)
        return f.read(min(item.size, MAX_MEMBER_BYTES + 1))


def content_hash(data: bytes) -> str:
    """The hash a shard's table records for an item's bytes (blake2b-128, as pictext index's file hash)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare(item: Item, preprocess: Preprocess, draft: int | None) -> tuple[np.ndarray | None, str, str | None]:
    """(pixels (3, S, S) float32 or None, content hash, error or None) of one item."""
    try:
        data = read_bytes(item)
    except OSError as e:
        return None, "", f"cannot read ({e.strerror or e})"
    digest = content_hash(data)
    if len(data) > MAX_MEMBER_BYTES:
        return None, digest, f"over {MAX_MEMBER_BYTES >> 20} MB"
    try:
        image = decode_bytes(data, item.location, draft=draft)
    except ImageError as e:
        return None, digest, e.reason
    return preprocess(image).numpy(), digest, None


# ---- output shards ----------------------------------------------------------------------------------------------


def shard_files(out: Path, name: str) -> tuple[Path, Path]:
    return out / f"{name}.npy", out / f"{name}.parquet"


def is_done(out: Path, name: str) -> bool:
    return shard_files(out, name)[1].is_file()


def write_shard(out: Path, name: str, items: Sequence[Item], vectors: np.ndarray, hashes: Sequence[str],
                errors: Sequence[str | None], fingerprint: str) -> None:  # fmt: skip
    """The shard's vectors, then its table (which marks it done), each atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(items) != len(vectors):
        raise ShardError(f"shard {name}: {len(items)} items but {len(vectors)} vectors")
    npy, table_path = shard_files(out, name)
    if table_path.exists():
        raise ShardError(f"shard {name} is written already; a shard is written once")
    vectors = np.ascontiguousarray(vectors, dtype=np.float16)

    def save_npy(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, vectors)

    atomic_write(npy, save_npy)
    table = pa.table({
        "key": [it.key for it in items], "location": [it.location for it in items],
        "caption": [it.caption for it in items], "hash": list(hashes), "error": list(errors),
        # where the bytes lie (a file, or a tar member at offset and size): what `pictext serve` shows
        "file": [it.file for it in items], "offset": pa.array([it.offset for it in items], pa.int64()),
        "size": pa.array([it.size for it in items], pa.int64()),
    }).replace_schema_metadata({"pictext.model": fingerprint})  # fmt: skip
    atomic_write(table_path, lambda tmp: pq.write_table(table, tmp))


def read_table(out: Path, name: str, columns: list[str] | None = None) -> dict[str, list]:
    """A shard's table (or the `columns` named) as columns of Python values."""
    import pyarrow.parquet as pq

    return pq.read_table(shard_files(out, name)[1], columns=columns).to_pydict()


def shard_fingerprint(out: Path, name: str) -> str | None:
    import pyarrow.parquet as pq

    meta = pq.read_schema(shard_files(out, name)[1]).metadata or {}
    value = meta.get(b"pictext.model")
    return value.decode() if value else None


def read_vectors(out: Path, name: str, mmap: bool = True) -> np.ndarray:
    return np.load(shard_files(out, name)[0], mmap_mode="r" if mmap else None, allow_pickle=False)


# ---- embedding --------------------------------------------------------------------------------------------------


def open_plan(source: str, out: Path, model_spec: str, shard_size: int, precision: str,
              fast_decode: bool) -> tuple[Plan, CLIP]:  # fmt: skip
    """(EMB/plan.json, written by the first run, and its model, loaded once and checked against it); a rerun must
    name the same source and model."""
    from pictext.clip.embed import load, model_fingerprint

    path = out / "plan.json"
    if path.is_file():
        plan = Plan.read(path)
        if plan.source != source:
            raise UsageError(f"{out} holds the embeddings of {plan.source!r}, not {source!r}; use another --out")
        if plan.model != model_spec:
            raise UsageError(f"{out} was embedded with {plan.model!r}, not {model_spec!r}; use another --out")
        return plan, load_checked(plan)
    model = load(model_spec, precision=precision)
    shards = source_shards(source, out, shard_size)
    draft = model.preprocess.image_size if fast_decode else None
    plan = Plan(source, shards, model_spec, model_fingerprint(model), model.config.embed_dim, model.precision, draft)
    atomic_write(path, lambda tmp: Path(tmp).write_text(plan.to_json(), encoding="utf-8"))
    return plan, model


def pending_shards(plan: Plan, out: Path) -> list[InputShard]:
    """The plan's shards not written yet; a written one of another model is refused."""
    pending = []
    for shard in plan.shards:
        if not is_done(out, shard.name):
            pending.append(shard)
        elif shard_fingerprint(out, shard.name) != plan.fingerprint:
            raise ShardError(f"{shard_files(out, shard.name)[1]} holds another model's vectors; use another --out")
    return pending


def record(report: EmbedReport, items: Sequence[Item], errors: Sequence[str | None]) -> None:
    report.written += 1
    report.images += sum(e is None for e in errors)
    report.errors += [(it.location, e) for it, e in zip(items, errors, strict=True) if e is not None]


def load_checked(plan: Plan, device: str | None = None) -> CLIP:
    """The plan's model, refused if its weights are not the plan's (a worker holding another file)."""
    from pictext.clip.embed import load, model_fingerprint

    model = load(plan.model, precision=plan.precision, device=device)
    if model_fingerprint(model) != plan.fingerprint:
        raise ShardError(f"the model {plan.model!r} here is not the one the plan was made with "
                         f"(fingerprint {plan.fingerprint}); every machine needs the same model file")  # fmt: skip
    return model


def encode(model, pixels: np.ndarray) -> np.ndarray:
    """(B, E) float32 unit rows for (B, 3, S, S) preprocessed pixels."""
    import torch

    from pictext.clip.embed import inference, unit_rows

    with inference(model):
        return unit_rows(model.encode_image(torch.from_numpy(pixels).to(model.text_projection.device)))
