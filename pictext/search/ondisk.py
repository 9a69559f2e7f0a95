"""An index larger than memory, built from embedding shards (pictext.search.shards), and searched from disk.

    pictext index build EMB/ --index BIG/ [--memory 8GB]
    pictext search "a dog" --index BIG/

The index type follows the data size and the memory budget, as autofaiss chooses: an inverted file of
~4 sqrt(n) lists (a power of two) whose codes are the vectors in float16 ("flat" codes, near exact) when they
fit in a quarter of the budget, else product-quantized with the most bytes a vector that fit (`IVF..,PQm`).
It is trained on a sample, then filled shard by shard: each shard's vectors go to a part index on disk, and the
parts' inverted lists are merged into one file of on-disk inverted lists (faiss `OnDiskInvertedLists`, the
merge of faiss.contrib.ondisk), so the build holds one shard's vectors at a time. A collection whose codes fit
in the budget skips the parts and is written as one file. Either is memory-mapped when searched.

`nprobe` is the smallest whose recall@10 against exact search (streamed over the shards) reaches 0.9 on a
sample of queries near the collection's own vectors, with, for PQ codes, the fewest candidates a result
(`refine`, up to 64) re-scored exactly on the shards' float16 vectors (memory-mapped); both are recorded with
the recall they reached. Every step holds at most a block of 65,536 vectors and the training sample in memory.

BIG/ holds index.faiss (+ lists.ivfdata when merged on disk) and index.json: the shards it holds (name, first
id, rows), the EMB/ folder they came from, the model's name and fingerprint, nprobe and recall. A result's id
is a row of a shard; its key, location and caption come from that shard's table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from pictext.errors import PictextError, UsageError
from pictext.files import atomic_write
from pictext.search.shards import Plan, is_done, read_table, read_vectors

TARGET_RECALL = 0.9
KIND = "pictext-sharded-index"


class OnDiskIndexError(PictextError, ValueError):
    pass


class NotServedError(PictextError, LookupError):
    """An item's picture is not handed out (no such item, or its bytes are not the ones embedded)."""


def parse_bytes(text: str) -> int:
    """'8GB', '512MB', '1.5GiB', '100000000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise UsageError(f"--memory {text!r}: give a size such as 8GB, 512MB or 1.5GiB")
    value, unit = float(match.group(1)), match.group(2)
    return int(value * 1024 ** " kmgt".index(unit or " "))


@dataclass
class Choice:
    factory: str  # faiss index_factory string
    nlist: int
    code_bytes: int  # bytes a vector in the inverted lists (codes only)
    on_disk: bool  # merged on disk (codes over a sixteenth of the budget) or built in memory
    # candidates fetched a result, re-scored exactly on the shards' float16 vectors (memory-mapped): PQ codes
    # alone cap recall@10 far below 0.9, whatever nprobe (0.43 with 16 bytes at 20,000 vectors of 128)
    refine: int = 1


def choose(n: int, dim: int, memory: int) -> Choice:
    """The index for n vectors of `dim` under a memory budget of `memory` bytes (see the module's doc)."""
    if n < 1:
        raise OnDiskIndexError("no vectors to index")
    nlist = int(2 ** round(np.log2(max(4 * np.sqrt(n), 1))))
    nlist = max(1, min(nlist, 1 << 16, n // 39 or 1))  # faiss's k-means wants >= 39 points a list
    flat = n * dim * 2
    if flat <= memory // 4:
        return Choice(f"IVF{nlist},SQfp16", nlist, dim * 2, on_disk=flat > memory // 16)
    for m in (d for d in range(dim // 2, 0, -1) if dim % d == 0 and d <= 64):  # PQ with 8 bits a sub-vector
        if n * m <= memory // 4 or m == 1:
            return Choice(f"IVF{nlist},PQ{m}", nlist, m, on_disk=True, refine=10)
    raise AssertionError("unreachable")


@dataclass
class BuildReport:
    vectors: int
    factory: str
    on_disk: bool
    nprobe: int
    refine: int
    recall_at_10: float
    bytes_on_disk: int

    def __str__(self) -> str:
        where = "inverted lists on disk" if self.on_disk else "one file"
        return (f"{self.vectors} vectors in {self.factory} ({where}, {self.bytes_on_disk / 1e6:.1f} MB): nprobe "
                f"{self.nprobe}, refine {self.refine}, recall@10 against exact search "
                f"{self.recall_at_10:.3f}")  # fmt: skip


def _shards_of(emb: Path) -> tuple[Plan, list[tuple[str, int]]]:
    """The plan and (shard name, rows) of every shard, all of which must be written."""
    plan = Plan.read(emb / "plan.json") if (emb / "plan.json").is_file() else None
    if plan is None:
        raise OnDiskIndexError(f"{emb} holds no embeddings (no plan.json); make them with pictext embed SOURCE "
                               f"--out {emb}")  # fmt: skip
    missing = [s.name for s in plan.shards if not is_done(emb, s.name)]
    if missing:
        raise OnDiskIndexError(f"{emb}: {len(missing)} of {len(plan.shards)} shards are not embedded yet (first "
                               f"{missing[0]}); rerun pictext embed {plan.source} --out {emb}")  # fmt: skip
    return plan, [(s.name, len(read_vectors(emb, s.name))) for s in plan.shards]


BLOCK = 65_536  # vectors in memory at once (float32) while filling and while searching exactly


def _valid_blocks(emb: Path, name: str):
    """(float32 vectors, their rows) of a shard in blocks of BLOCK, without the rows of items that did not decode;
    read from the memory-mapped float16 file (mapped for this shard only), so a shard of any size holds one
    block in memory."""
    vectors, rows = read_vectors(emb, name), _valid_rows(emb, name)
    for start in range(0, len(rows), BLOCK):
        block = rows[start : start + BLOCK]
        yield np.asarray(vectors[block], np.float32), block


def _valid_rows(emb: Path, name: str) -> np.ndarray:
    """The rows of a shard whose items decoded (its table's error column is empty)."""
    errors = read_table(emb, name, ["error"])["error"]
    return np.array([i for i, e in enumerate(errors) if e is None], dtype=np.int64)


def _sample(emb: Path, shards: list[tuple[str, int]], n: int, rng: np.random.Generator) -> np.ndarray:
    """About n valid vectors (float32), drawn from every shard in proportion to its rows."""
    total = max(sum(rows for _, rows in shards), 1)
    picks = []
    for name, rows in shards:
        take = int(round(n * rows / total))
        if take:
            valid = _valid_rows(emb, name)
            chosen = np.sort(rng.choice(valid, size=min(take, len(valid)), replace=False))
            picks.append(np.asarray(read_vectors(emb, name)[chosen], np.float32))
    return np.ascontiguousarray(np.concatenate(picks))


def build(emb: str | os.PathLike, out: str | os.PathLike, memory: int = 8 << 30, seed: int = 0,
          target_recall: float = TARGET_RECALL, n_queries: int = 200) -> BuildReport:  # fmt: skip
    """Build BIG/ (`out`) from the shards in EMB/ (`emb`) within `memory` bytes."""
    import faiss

    from pictext.search.index import private_folder

    emb, out = Path(emb).expanduser().resolve(), Path(out).expanduser()
    plan, shards = _shards_of(emb)
    stored = Stored(emb, shards)
    n_rows = int(stored.starts[-1])
    choice = choose(n_rows, plan.dim, memory)
    private_folder(out)
    rng = np.random.default_rng(seed)

    # train on a sample drawn from every shard in proportion (at most a quarter of the budget)
    n_train = int(min(n_rows, max(64 * choice.nlist, 10_000), 200_000))  # faiss's k-means: 39 to 256 a list
    index = faiss.index_factory(plan.dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.niter = 15
    index.train(_sample(emb, shards, n_train, rng))

    for old in ("index.faiss", "lists.ivfdata", "index.json"):  # a rebuild starts clean
        (out / old).unlink(missing_ok=True)
    shutil.rmtree(out / "thumbs", ignore_errors=True)  # the server's thumbnails, by id: ids change
    _fill(index, choice.on_disk, stored, out)

    nprobe, refine, recall = _tune(index, stored, choice.refine, rng, target_recall, n_queries)
    info = {
        "kind": KIND, "emb": str(emb), "model": plan.model, "fingerprint": plan.fingerprint, "dim": plan.dim,
        "factory": choice.factory, "on_disk": choice.on_disk, "nprobe": nprobe, "refine": refine,
        "recall_at_10": recall,
        "shards": [{"name": name, "start": int(start), "rows": rows}
                   for (name, rows), start in zip(shards, stored.starts)],
    }  # fmt: skip
    atomic_write(out / "index.json", lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1), encoding="utf-8"))
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return BuildReport(int(index.ntotal), choice.factory, choice.on_disk, nprobe, refine, recall, size)


def _fill(index, on_disk: bool, stored: Stored, out: Path) -> None:
    """Add every shard's valid vectors to the trained `index` and write it to out/index.faiss: on disk, each
    shard into a part index, the parts' inverted lists merged into out/lists.ivfdata; else in memory."""
    import faiss

    from pictext.training import progress

    emb, shards, starts = stored.emb, stored.shards, stored.starts
    parts_dir = out / "parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    bar = progress(len(shards), "filling the index")
    if on_disk:
        parts_dir.mkdir()
        parts = []
        for (name, _), start in zip(shards, starts, strict=False):
            part = faiss.clone_index(index)
            for vectors, rows in _valid_blocks(emb, name):
                part.add_with_ids(vectors, rows + int(start))
            parts.append(str(parts_dir / f"{name}.index"))
            faiss.write_index(part, parts[-1])
            del part
            bar.update(1)
        from faiss.contrib.ondisk import merge_ondisk

        merge_ondisk(index, parts, str(out / "lists.ivfdata"))
        faiss.write_index(index, str(out / "index.faiss"))
        shutil.rmtree(parts_dir)
    else:
        for (name, _), start in zip(shards, starts, strict=False):
            for vectors, rows in _valid_blocks(emb, name):
                index.add_with_ids(vectors, rows + int(start))
            bar.update(1)
        atomic_write(out / "index.faiss", lambda tmp: faiss.write_index(index, tmp))
    bar.close()


class Stored:
    """The shards' float16 vectors by global id, memory-mapped: exact scores for a few candidates."""

    def __init__(self, emb: Path, shards: list[tuple[str, int]]) -> None:
        self.emb, self.shards = emb, shards
        self.starts = np.cumsum([0] + [rows for _, rows in shards])
        self._maps = [read_vectors(emb, name) for name, _ in shards]

    def vector_of(self, id: int) -> np.ndarray:
        """The stored vector of global id `id` (float32)."""
        shard = int(np.searchsorted(self.starts, id, side="right")) - 1
        return np.asarray(self._maps[shard][id - self.starts[shard]], np.float32)

    def scores(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """query (D,) against the vectors of `ids` (-1: -inf)."""
        out = np.full(len(ids), -np.inf, np.float32)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        for shard in np.unique(which[ids >= 0]):
            at = np.flatnonzero((which == shard) & (ids >= 0))
            rows = ids[at] - self.starts[shard]
            order = np.argsort(rows)  # ascending reads from the memory map
            out[at[order]] = np.asarray(self._maps[shard][rows[order]], np.float32) @ query
        return out

    def exact_top(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(Q, k) ids of exact search over every valid vector, a block of the shards in memory at a time."""
        best_scores = np.full((len(queries), k), -np.inf, np.float32)
        best_ids = np.full((len(queries), k), -1, np.int64)
        for (name, _), start in zip(self.shards, self.starts, strict=False):
            for vectors, rows in _valid_blocks(self.emb, name):
                scores = np.concatenate([best_scores, queries @ vectors.T], axis=1)
                ids = np.concatenate([best_ids, np.broadcast_to(rows + int(start), (len(queries), len(rows)))], axis=1)
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else None
                if top is not None:
                    scores, ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
                best_scores, best_ids = scores, ids
        order = np.argsort(-best_scores, axis=1, kind="stable")
        return np.take_along_axis(best_ids, order, 1)


def search_refined(index, stored: Stored, queries: np.ndarray, k: int, refine: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), (Q, k) each: `k * refine` candidates from the index, re-scored exactly when refine > 1."""
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k * refine)
    if refine > 1:
        scores, ids = _rescored(stored, queries, ids)
    return scores[:, :k], ids[:, :k]


def _rescored(stored: Stored, queries: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of each query's candidates, scored exactly and sorted best first."""
    scores = np.stack([stored.scores(q, c) for q, c in zip(queries, candidates)])
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(candidates, order, 1)


MAX_REFINE = 64  # candidates a result at most (64 x k rows re-scored, read from the memory-mapped shards)


def _tune(index, stored: Stored, refine: int, rng: np.random.Generator, target_recall: float,
          n_queries: int) -> tuple[int, int, float]:  # fmt: skip
    """(nprobe, refine, recall@10): the smallest nprobe (steps of about 1.4x) at which recall@10 against exact
    search reaches the target with some refine up to MAX_REFINE (the smallest such), on queries near (not on)
    the collection's own vectors (|noise| about 0.5); exact search streams over the shards. Codes too coarse
    for the nearest ten (PQ) need more candidates re-scored, not more lists: with PQ8 on 128 dimensions, refine
    10 stopped at recall 0.82 with every list probed. Where nothing reaches the target, the best pair found."""
    import faiss

    base = _sample(stored.emb, stored.shards, n_queries, rng)
    queries = base + rng.normal(scale=0.5 / np.sqrt(base.shape[1]), size=base.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [set(row[row >= 0].tolist()) for row in stored.exact_top(queries, 10)]
    ivf = faiss.extract_index_ivf(index)
    refines = [r for r in (1, 2, 5, 10, 20, 40, MAX_REFINE) if r >= refine] if refine > 1 else [1]
    best = (1, refines[0], -1.0)
    nprobe = 1
    while True:
        ivf.nprobe = nprobe
        _, candidates = index.search(np.ascontiguousarray(queries), 10 * refines[-1])
        for r in refines:
            found = _rescored(stored, queries, candidates[:, : 10 * r])[1][:, :10] if r > 1 else candidates[:, :10]
            recall = float(np.mean([len(want & set(got.tolist())) / max(len(want), 1)
                                    for want, got in zip(exact, found)]))  # fmt: skip
            if recall > best[2]:
                best = (nprobe, r, recall)
            if recall >= target_recall:
                return nprobe, r, recall
        if nprobe >= ivf.nlist:
            return best
        nprobe = min(ivf.nlist, max(nprobe + 1, round(nprobe * 1.42)))


def is_sharded_index(path: str | os.PathLike) -> bool:
    info = Path(path).expanduser() / "index.json"
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Result:
    id: int
    path: str  # the location: a file's path, a sample's URL, or TAR#KEY
    score: float
    caption: str
    key: str


class ShardedIndex:
    """A built BIG/ folder, memory-mapped, searched with the model its vectors came from."""

    def __init__(self, path: str | os.PathLike, precision: str = "auto") -> None:
        import faiss

        self.path = Path(path).expanduser()
        if not is_sharded_index(self.path):
            raise OnDiskIndexError(f"{self.path} is not an index built by pictext index build (no index.json)")
        self.info = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        # on disk, the lists.ivfdata beside index.faiss, wherever it moved, is memory-mapped by faiss itself (with
        # IO_FLAG_MMAP as well, faiss 1.15 crashes searching it); an index in one file is memory-mapped
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR if self.info["on_disk"] else faiss.IO_FLAG_MMAP
        self.index = faiss.read_index(str(self.path / "index.faiss"), flags)
        faiss.extract_index_ivf(self.index).nprobe = int(self.info["nprobe"])
        self.emb = Path(self.info["emb"])
        self.stored = Stored(self.emb, [(s["name"], s["rows"]) for s in self.info["shards"]])
        self._precision = precision
        self._model = None
        self._table = lru_cache(maxsize=16)(lambda name: read_table(self.emb, name))
        self._listing = lru_cache(maxsize=16)(lambda path: Path(path).read_text(encoding="utf-8").splitlines())

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def model(self):
        if self._model is None:
            from pictext.clip.embed import load, model_fingerprint

            model = load(self.info["model"], precision=self._precision)
            if model_fingerprint(model) != self.info["fingerprint"]:
                raise OnDiskIndexError(f"the model {self.info['model']!r} here is not the one {self.path}'s vectors "
                                       "came from; search with that model file")  # fmt: skip
            self._model = model
        return self._model

    def search(self, query: object, k: int = 20) -> list[Result]:
        """The k items most like `query` (text, an image, weighted terms, or a vector), best first."""
        from pictext.search.index import query_vector
        from pictext.search.query import QueryError

        if k < 1:
            raise QueryError(f"k must be at least 1, got {k}")
        vector = np.asarray(query, np.float32) if isinstance(query, np.ndarray) else query_vector(self.model, query)
        scores, ids = search_refined(self.index, self.stored, vector[None], k, int(self.info.get("refine", 1)))
        return [self.result(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def similar(self, id: int, k: int = 20) -> list[Result]:
        """'More like this': the items nearest to item `id`'s own vector."""
        from pictext.search.query import QueryError

        shard, row = self._row(id)
        if shard is None or self._table(shard["name"])["error"][row] is not None:
            raise QueryError(f"no indexed image has id {id}")
        return self.search(self.stored.vector_of(id), k)

    def result(self, id: int, score: float) -> Result:
        shard, row = self._row(id)
        assert shard is not None, id
        table = self._table(shard["name"])
        return Result(id, table["location"][row], score, table["caption"][row], table["key"][row])

    def _row(self, id: int) -> tuple[dict | None, int]:
        """(the shard's entry in index.json, the row in it) of a global id; (None, -1) when out of range."""
        if not 0 <= id < int(self.stored.starts[-1]):
            return None, -1
        shard = self.info["shards"][int(np.searchsorted(self.stored.starts, id, side="right")) - 1]
        return shard, id - shard["start"]

    def picture(self, id: int) -> bytes:
        """The bytes of item `id`'s picture, read where the embedding read them (a file, or a tar member by offset
        and size), only if they are still the bytes that were embedded (their content hash) and the place is the
        one the embedding plan names for that row (for a folder, still inside it); else NotServedError."""
        from pictext.search.scan import inside
        from pictext.search.shards import MAX_MEMBER_BYTES, Item, content_hash, read_bytes

        shard, row = self._row(id)
        table = self._table(shard["name"]) if shard is not None else None
        if table is None or table["error"][row] is not None:
            raise NotServedError(f"no indexed image has id {id}")
        file, offset, size = table["file"][row], table["offset"][row], table["size"][row]
        if file != self._planned_file(shard["name"], row):
            raise NotServedError(f"image {id}'s table names a file its embedding plan does not")
        if self._folder is not None and not inside(os.path.realpath(file), [self._folder]):
            raise NotServedError(f"image {id} is no longer inside {self.plan.source}")
        try:
            data = read_bytes(Item(row, table["key"][row], "", "", file, offset, size))
        except OSError as e:
            raise NotServedError(f"image {id} cannot be read now ({e.strerror or e})") from e
        if len(data) > MAX_MEMBER_BYTES or content_hash(data) != table["hash"][row]:
            raise NotServedError(f"image {id} has changed since it was embedded")
        return data

    @cached_property
    def plan(self) -> Plan:
        return Plan.read(self.emb / "plan.json")

    @cached_property
    def _folder(self) -> str | None:
        """The real path of the folder the collection was embedded from, if it was one."""
        source = Path(self.plan.source).expanduser()
        return os.path.realpath(source) if source.is_dir() else None

    @cached_property
    def _inputs(self) -> dict:
        return {s.name: s for s in self.plan.shards}

    def _planned_file(self, name: str, row: int) -> str | None:
        """The file the plan says row `row` of shard `name` was read from: the tar, or the row's line of the list."""
        shard = self._inputs.get(name)
        if shard is None:
            return None
        if shard.kind == "tar":
            return shard.path
        lines = self._listing(shard.path)
        return lines[row] if row < len(lines) else None

    def status(self) -> dict:
        return {"images": len(self), "errors": int(self.stored.starts[-1]) - len(self), "model": self.info["model"]}

    def close(self) -> None:
        self.index = None
