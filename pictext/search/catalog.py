"""The catalog: one SQLite row per indexed file, saying where its vector is and what went wrong if anything.

WAL mode, one transaction per batch: a crash leaves the catalog as of the last
committed batch, never half a batch. The model's fingerprint is stored, so one
index never mixes vectors from two models.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS files (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: faiss holds ids
    path     TEXT NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash     TEXT,                  -- blake2b-128 of the file's bytes
    width    INTEGER,
    height   INTEGER,
    model    TEXT,                  -- fingerprint of the model that made the vector
    row      INTEGER,               -- row in the vector file; NULL when status is 'error'
    status   TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error    TEXT
);
CREATE INDEX IF NOT EXISTS files_hash ON files (hash);
"""


@dataclass(frozen=True)
class Record:
    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    width: int | None
    height: int | None
    model: str | None
    row: int | None
    status: str
    error: str | None


class Catalog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite gives its WAL the same mode
        # check_same_thread=False: the web server reads from its worker threads; SQLite serializes access.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if self.get("schema") is None:
            self.set("schema", SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def roots(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM roots ORDER BY path")]

    def add_root(self, path: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO roots (path) VALUES (?)", (path,))

    def records(self, where: str = "1", params: Iterable = ()) -> list[Record]:
        rows = self.db.execute(f"SELECT * FROM files WHERE {where} ORDER BY id", tuple(params))
        return [Record(*r) for r in rows]

    def by_id(self, file_id: int) -> Record | None:
        found = self.records("id = ?", (file_id,))
        return found[0] if found else None

    def under(self, root: str) -> dict[str, Record]:
        """Records whose path lies in the folder `root`, by path."""
        prefix = root.rstrip("/") + "/"
        found = self.records("substr(path, 1, ?) = ?", (len(prefix), prefix))
        return {r.path: r for r in found}

    def paths(self, ids: list[int]) -> dict[int, str]:
        rows = self.db.execute(f"SELECT id, path FROM files WHERE id IN ({','.join('?' * len(ids))})", ids)
        return dict(rows.fetchall())

    def at(self, path: str) -> dict[str, Record]:
        return {r.path: r for r in self.records("path = ?", (path,))}

    def ok_by_hash(self, hashes: Iterable[str]) -> dict[str, Record]:
        """A record with a vector for each of `hashes` the catalog holds."""
        wanted, out = sorted(set(hashes)), {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for r in self.records(f"status = 'ok' AND hash IN ({','.join('?' * len(chunk))})", chunk):
                out.setdefault(r.hash, r)
        return out

    def live_rows(self) -> tuple[list[int], list[int]]:
        """(catalog ids, vector rows) of every file with a vector, in id order."""
        pairs = self.db.execute("SELECT id, row FROM files WHERE status = 'ok' ORDER BY id").fetchall()
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def replace(self, path: str, size: int, mtime_ns: int, **fields: object) -> None:
        """The row for `path`, new (with a new id) whether or not one existed: its vector may have changed."""
        columns = ["path", "size", "mtime_ns", *fields]
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        self.db.execute(
            f"INSERT INTO files ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [path, size, mtime_ns, *fields.values()],
        )

    def move(self, record: Record, path: str, size: int, mtime_ns: int) -> None:
        """A renamed file keeps its row (and vector) under its new path."""
        self.db.execute("DELETE FROM files WHERE path = ? AND id != ?", (path, record.id))
        self.db.execute(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ? WHERE id = ?", (path, size, mtime_ns, record.id)
        )

    def delete(self, ids: Iterable[int]) -> None:
        self.db.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in ids])

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall()
        return {"ok": 0, "error": 0, **dict(rows)}
