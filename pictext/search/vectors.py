"""Vectors beside the catalog: an append-only file of normalized rows, exact top-k, and faiss for large sets.

The vector file is raw little-endian float16 or float32, `dim` values a row,
appended and fsynced before the catalog commits the rows that point at it; a row
is never rewritten, so a crash can at worst leave unreferenced rows at the end.

Exact search is one matrix product and `argpartition` (linear in n, not a full
sort). Above `FAISS_THRESHOLD` vectors an IVF index from faiss is used, its
`nprobe` chosen at build time as the smallest that reaches `target_recall`
recall@10 against exact search on a sample of the collection's own vectors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pictext.files import atomic_write

FAISS_THRESHOLD = 50_000  # below this, exact search answers in a few ms and needs no training


class VectorFile:
    def __init__(self, path: str | Path, dim: int, dtype: str = "float16") -> None:
        if dtype not in ("float16", "float32"):
            raise ValueError(f"vector dtype must be float16 or float32, got {dtype!r}")
        self.path, self.dim, self.dtype = Path(path), dim, np.dtype(dtype)
        self.row_bytes = dim * self.dtype.itemsize

    def __len__(self) -> int:
        return self.path.stat().st_size // self.row_bytes if self.path.exists() else 0

    def append(self, vectors: np.ndarray) -> int:
        """Write rows at the end (after any torn partial row) and fsync; returns the first new row."""
        vectors = np.ascontiguousarray(vectors, dtype=self.dtype)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {vectors.shape}")
        start = len(self)
        with open(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600), "wb") as f:
            f.truncate(start * self.row_bytes)  # drop a partial row left by a crash mid-write
            f.seek(start * self.row_bytes)
            f.write(vectors.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
            f.flush()
            os.fsync(f.fileno())
        return start

    def read(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """(len(rows), dim) float32."""
        n = len(self)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        matrix = np.memmap(self.path, dtype=self.dtype.newbyteorder("<"), mode="r", shape=(n, self.dim))
        return np.asarray(matrix[np.asarray(rows, dtype=np.int64)], dtype=np.float32)


def top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores) of the k rows of `matrix` with the largest dot product with `query`, best first."""
    scores = matrix @ query.astype(matrix.dtype, copy=False)  # (N,)
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    best = best[np.argsort(-scores[best], kind="stable")]
    return best, scores[best]


class StaleIndexError(RuntimeError):
    pass


@dataclass
class FaissIVF:
    """An inverted-file index over normalized vectors (inner product), with the nprobe that met the recall target."""

    index: Any
    ids: np.ndarray  # the ids it holds, to update it incrementally
    nprobe: int = 1
    recall_at_10: float = 0.0
    trained_on: int = 0  # collection size when trained; retrained when it has grown 4x

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, target_recall: float = 0.95, seed: int = 0) -> FaissIVF:
        import faiss

        n, dim = vectors.shape
        # 2 sqrt(n) lists, trained on 40 points a list for 15 k-means rounds: a short build even at 1M vectors
        # (docs/measurements.md); recall is then bought back at query time with nprobe (tuned below).
        nlist = int(max(1, min(2 * np.sqrt(n), n // 39)))  # faiss wants >= 39 training points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 15
        rng = np.random.default_rng(seed)
        train = vectors[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))]
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        ivf = cls(index, ids.astype(np.int64), trained_on=n)
        ivf.tune(vectors, ids, target_recall, rng)
        return ivf

    def tune(
        self, vectors: np.ndarray, ids: np.ndarray, target_recall: float, rng: np.random.Generator, n_queries: int = 200
    ) -> None:
        """Smallest nprobe (in steps of about 1.4x) whose recall@10 against exact search reaches target_recall."""
        picks = rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
        dim = vectors.shape[1]
        noise = rng.normal(scale=0.5 / np.sqrt(dim), size=(len(picks), dim)).astype(np.float32)
        queries = vectors[picks] + noise  # near, not on, the stored points (|noise| ~ 0.5): queries are new points
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = [set(ids[top_k(vectors, q, 10)[0]].tolist()) for q in queries]
        nprobe = 1
        while True:
            self.index.nprobe = nprobe
            _, found = self.index.search(queries, 10)
            recall = float(np.mean([len(want & set(got.tolist())) / len(want) for want, got in zip(exact, found)]))
            if recall >= target_recall or nprobe >= self.index.nlist:
                self.nprobe, self.recall_at_10 = nprobe, recall
                return
            nprobe = min(self.index.nlist, max(nprobe + 1, round(nprobe * 1.42)))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) best first; ids are those given to `build`/`update`."""
        self.index.nprobe = self.nprobe
        scores, ids = self.index.search(np.ascontiguousarray(query[None], dtype=np.float32), k)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Make the index hold exactly `ids` (rows of `vectors`): remove what left, add what is new."""
        import faiss

        ids = ids.astype(np.int64)
        gone = np.setdiff1d(self.ids, ids)
        if len(gone):
            self.index.remove_ids(faiss.IDSelectorBatch(gone))
        new = np.isin(ids, self.ids, invert=True)
        if new.any():
            self.index.add_with_ids(np.ascontiguousarray(vectors[new], dtype=np.float32), ids[new])
        self.ids = ids

    def save(self, path: str | Path) -> None:
        """The index, then its sidecar (ids and settings); `load` refuses a pair that does not match."""
        import faiss

        path = Path(path)
        atomic_write(path, lambda tmp: faiss.write_index(self.index, tmp))
        info = json.dumps({"nprobe": self.nprobe, "recall_at_10": self.recall_at_10, "trained_on": self.trained_on})
        atomic_write(path.with_suffix(".ids.npz"), lambda tmp: np.savez(open(tmp, "wb"), ids=self.ids, info=info))

    @classmethod
    def load(cls, path: str | Path) -> FaissIVF:
        import faiss

        path = Path(path)
        try:
            with np.load(path.with_suffix(".ids.npz"), allow_pickle=False) as side:
                ids, info = side["ids"], json.loads(str(side["info"]))
            index = faiss.read_index(str(path))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise StaleIndexError(f"{path}: {e}") from e
        if index.ntotal != len(ids):
            raise StaleIndexError(f"{path} holds {index.ntotal} vectors but its sidecar lists {len(ids)}")
        return cls(index, ids, int(info["nprobe"]), float(info["recall_at_10"]), int(info["trained_on"]))
