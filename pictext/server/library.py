"""What the server searches and shows: a `Library` over either kind of index, so that the routes are the same.

- `IndexLibrary`: a folder indexed by `pictext index` (SQLite catalog, vectors, faiss); a picture is served when its
  real path is still inside the indexed folders.
- `ShardedLibrary`: an index built by `pictext index build` from `pictext embed`'s shards (memory-mapped, on disk); a
  picture is read where it was embedded from (a file, or a WebDataset tar member by offset and size) and served
  only while its bytes hash to what was embedded. Results carry the item's caption and, for web collections,
  its URL.

Either way a client names a picture by its id alone; no path a client sends is ever opened.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from pictext.search.index import Hit, Index
from pictext.search.ondisk import NotServedError, Result, ShardedIndex
from pictext.search.scan import inside


@dataclass(frozen=True)
class Picture:
    """A picture to hand out: a file to send as it is, or bytes read from a shard."""

    path: Path | None = None
    data: bytes | None = None


class NotServed(LookupError):
    """404: the id names no servable picture; the message says why."""


class IndexLibrary:
    def __init__(self, index: Index) -> None:
        self.index = index
        self.lock = threading.Lock()  # the catalog's SQLite connection and the vectors: one thread at a time
        self.thumbs = index.path / "thumbs"

    @property
    def model(self):
        return self.index.model

    def status(self) -> dict:
        with self.lock:
            counts = self.index.catalog.counts()
            return {"images": counts["ok"], "errors": counts["error"], "model": self.index.model_spec}

    def query_vector(self, query: object) -> np.ndarray:
        return self.index.query_vector(query)

    def search(self, vector: np.ndarray, k: int) -> list[dict]:
        with self.lock:
            return [_hit(h) for h in self.index.search(vector, k)]

    def similar(self, file_id: int, k: int) -> tuple[list[dict], dict]:
        """Hits like an indexed file, and that file ({id, name}); QueryError when there is none."""
        with self.lock:
            found = self.index.similar(file_id, k)
            record = self.index.catalog.by_id(file_id)
        assert record is not None
        return [_hit(h) for h in found], {"id": record.id, "name": Path(record.path).name}

    def picture(self, file_id: int) -> Picture:
        """The file of catalog row `file_id`, if it indexed as an image and its real path is still inside what was
        indexed; else NotServed."""
        with self.lock:
            record = self.index.catalog.by_id(file_id)
            roots = self.index.real_roots()
        if record is None or record.status != "ok":
            raise NotServed(f"no indexed image has id {file_id}")
        real = os.path.realpath(record.path)
        if not inside(real, roots) or not os.path.isfile(real):
            raise NotServed(f"image {file_id} is no longer inside the indexed folders")
        return Picture(path=Path(real))


class ShardedLibrary:
    def __init__(self, index: ShardedIndex) -> None:
        self.index = index
        self.lock = threading.Lock()  # the shards' tables, cached as they are read
        self.thumbs = index.path / "thumbs"

    @property
    def model(self):
        return self.index.model

    def status(self) -> dict:
        return self.index.status()

    def query_vector(self, query: object) -> np.ndarray:
        from pictext.search.index import query_vector

        return query_vector(self.index.model, query)

    def search(self, vector: np.ndarray, k: int) -> list[dict]:
        with self.lock:
            return [_result(r) for r in self.index.search(vector, k)]

    def similar(self, item_id: int, k: int) -> tuple[list[dict], dict]:
        with self.lock:
            found = self.index.similar(item_id, k)
            like = _result(self.index.result(item_id, 1.0))
        return [_result(r) for r in found], {"id": item_id, "name": like["name"]}

    def picture(self, item_id: int) -> Picture:
        try:
            with self.lock:
                return Picture(data=self.index.picture(item_id))
        except NotServedError as e:
            raise NotServed(str(e)) from e


Library = IndexLibrary | ShardedLibrary


def library(index: Index | ShardedIndex) -> Library:
    return ShardedLibrary(index) if isinstance(index, ShardedIndex) else IndexLibrary(index)


def _hit(h: Hit) -> dict:
    return {"id": h.id, "score": round(h.score, 5), "name": Path(h.path).name}


def _result(r: Result) -> dict:
    """A sharded index's result: its name (the file's or the URL's last part, else the key), caption, and URL
    when the item came from the web (http or https only: a page links to it)."""
    parts = urlsplit(r.path)
    web = parts.scheme in ("http", "https") and bool(parts.netloc)
    if web:
        name = Path(parts.path).name
    else:  # a file's path, or TAR#KEY for a tar member without a URL
        name = r.key if "#" in r.path else Path(r.path).name
    out = {"id": r.id, "score": round(r.score, 5), "name": name or r.key, "caption": r.caption}
    return out | ({"url": r.path} if web else {})
