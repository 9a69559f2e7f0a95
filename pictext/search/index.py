"""An incremental image index: scan folders, embed what is new or changed, search by weighted text and images.

    index = pictext.Index("~/.cache/pictext/index")      # a folder: catalog.sqlite, vectors.f16, faiss.index
    index.add(["~/Pictures"])                           # only new or changed files are embedded
    index.search(["beach", "sunset", (-1, "people")], k=20)

One `add` run: (1) scan: walk the folders (hidden entries and excluded folder
names skipped, symlinks followed only when they stay inside the folders, each
real folder visited once so loops end); (2) files whose size and mtime match the
catalog are done; the others are hashed, and a hash the catalog already holds
reuses that vector (a rename, a copy, a touched file); (3) the rest are decoded
and preprocessed in DataLoader workers while the main process encodes, each
batch's vectors fsynced and its rows committed together; (4) rows of files that
are gone are deleted. A crash at any point leaves a consistent catalog, and the
next run does only the work that is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pictext import hub
from pictext.clip.embed import inference, model_fingerprint, unit_rows
from pictext.clip.model import CLIP
from pictext.errors import MissingFileError, PictextError
from pictext.images.decode import ImageError, decode_bytes, decode_image
from pictext.images.transforms import Preprocess
from pictext.search.catalog import Catalog, Record
from pictext.search.query import QueryError, Weighted, as_terms, combine
from pictext.search.scan import DEFAULT_EXCLUDE, printable, scan, storable
from pictext.search.vectors import FAISS_THRESHOLD, FaissIVF, StaleIndexError, VectorFile, top_k
from pictext.training import progress

MAX_UPLOAD_PIXELS = 40_000_000


class SearchIndexError(PictextError, ValueError):
    pass


def default_index_dir() -> Path:
    return hub.home() / "index"


def private_folder(path: Path) -> Path:
    """Create `path` readable by its owner alone (0700): an index lists every path and shows thumbnails of
    private pictures. A folder that exists already keeps the permissions its owner gave it."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    return path


def file_hash(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float


@dataclass
class Report:
    """What one `add` run did."""

    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0  # renamed, copied or touched files whose vector was kept
    removed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) new this run, in the catalog
    failing: list[tuple[str, str]] = field(default_factory=list)  # earlier errors, unchanged, so not retried
    vanished: int = 0  # listed by the scan, gone before they could be read
    faiss_recall_at_10: float | None = None  # measured on this collection when a faiss index is in use

    def __str__(self) -> str:
        earlier = f" ({len(self.failing)} earlier errors remain)" if self.failing else ""
        return (
            f"{self.scanned} files: {self.embedded} embedded, {self.reused} reused, {self.unchanged} unchanged, "
            f"{self.removed} removed, {len(self.errors)} errors{earlier}"
        )


class _Images(Dataset):
    """Decode + preprocess in DataLoader workers: (position, pixels | None, width, height, error | None)."""

    def __init__(self, paths: list[str], preprocess: Preprocess, fast_decode: bool) -> None:
        self.paths, self.preprocess = paths, preprocess
        self.draft = preprocess.image_size if fast_decode else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple:
        path = self.paths[i]
        try:
            image = decode_image(path, draft=self.draft)
        except ImageError as e:
            gone = not os.path.exists(path)
            return i, None, None, None, "gone" if gone else e.reason
        return i, self.preprocess(image), image.width, image.height, None


_HELD: dict[tuple[str, int], int] = {}  # (index folder, thread): how deep this thread holds its writer lock


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the writer lock of the index in `folder`: one writer at a time (searching needs no lock); a second
    writer gets a SearchIndexError at once. A thread that holds it may take it again. The lock dies with its
    process, so a killed writer never leaves it stuck."""
    folder = Path(folder)
    key = (os.path.realpath(folder), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with open(os.open(folder / "writer.lock", os.O_CREAT | os.O_RDWR, 0o600), "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise SearchIndexError(
                f"another process is adding to the index at {folder}; wait for it to finish "
                "(searching the index works meanwhile)"
            ) from e
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]


@contextlib.contextmanager
def adding_to(folder: str | os.PathLike) -> Iterator[bool]:
    """The writer lock of the index in `folder`, taken before anything there is read or written, the folder
    created (0700) if missing; yields whether this call created it. If the work under it fails in a folder it
    created, before any vector was written, the folder is removed: a failed first run leaves no empty index. Only
    the lock's holder removes anything, so a second writer, refused at once, never touches the first one's."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SearchIndexError(f"{folder} is a file; an index is a folder (give a new or existing folder)")
    with contextlib.ExitStack() as stack:
        for _ in range(3):  # a failed first run may remove the folder between our mkdir and our lock
            try:
                folder.mkdir(mode=0o700, parents=True)
                os.chmod(folder, 0o700)
                new = True
            except FileExistsError:
                new = False
            try:
                stack.enter_context(writer_lock(folder))
                break
            except FileNotFoundError:
                continue
        else:
            raise SearchIndexError(f"{folder} keeps disappearing: another process is removing it")
        try:
            yield new
        except BaseException:
            if new and not (folder / "vectors.f16").exists():
                shutil.rmtree(folder, ignore_errors=True)
            raise


class Index:
    """A folder holding a catalog (SQLite), a vector file and, for large collections, a faiss index."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        model: CLIP | str | os.PathLike | None = None,
        *,
        create: bool = True,
        precision: str = "auto",
    ) -> None:
        """Open the index in folder `path` (default $PICTEXT_HOME/index); create=False: it must exist already.

        precision: what a model loaded by name runs in ("auto", "fp32", "bf16"; see pictext.load); a CLIP given
        as `model` runs in its own. The index records the precision of its vectors, and `add` refuses to mix."""
        self.path = Path(path).expanduser() if path else default_index_dir()
        if self.path.exists() and not self.path.is_dir():
            raise SearchIndexError(f"{self.path} is a file; an index is a folder (give a new or existing folder)")
        if not create and not (self.path / "catalog.sqlite").is_file():
            raise SearchIndexError(f"no index at {self.path}; build one first: pictext index FOLDER [--index DIR]")
        private_folder(self.path)
        try:
            self.catalog = Catalog(self.path / "catalog.sqlite")
        except sqlite3.DatabaseError as e:
            raise SearchIndexError(
                f"{self.path / 'catalog.sqlite'} is not a readable catalog ({e}); "
                "`pictext index --rebuild FOLDER...` starts it again and re-embeds the folders"
            ) from e
        self._model = model if isinstance(model, CLIP) else None
        self._model_spec = None if isinstance(model, CLIP) or model is None else _spec(model)
        self._precision = precision
        self._cache: tuple[str, list[int], set[int], np.ndarray] | None = None  # generation, ids, id set, matrix
        self._faiss: tuple[str, FaissIVF] | None = None
        if self._model is not None:
            self._check_model(self._model)

    # ---- the model ----------------------------------------------------------------------------------------------

    @property
    def model(self) -> CLIP:
        if self._model is None:
            from pictext.clip.embed import load

            spec = self._model_spec or self.catalog.get("model_spec")
            self._model = load(spec, precision=self._precision)
            self._check_model(self._model)
        return self._model

    def _check_model(self, model: CLIP) -> None:
        fingerprint = model_fingerprint(model)
        stored = self.catalog.get("model")
        if stored is None:
            with self.catalog.transaction():
                self.catalog.set("model", fingerprint)
                self.catalog.set("dim", str(model.config.embed_dim))
                self.catalog.set("model_spec", self._model_spec or hub.DEFAULT_MODEL)
        elif stored != fingerprint:
            spec = self.catalog.get("model_spec")
            raise SearchIndexError(
                f"the index at {self.path} was built with another model ({spec!r}, fingerprint {stored}); "
                f"this one has fingerprint {fingerprint}. Search it with its own model, or index into a new "
                "folder (--index DIR)"
            )

    @property
    def model_spec(self) -> str | None:
        return self._model_spec or self.catalog.get("model_spec")

    def real_roots(self) -> list[str]:
        return [os.path.realpath(r) for r in self.catalog.roots()]

    @property
    def vectors(self) -> VectorFile:
        dim = self.catalog.get("dim")
        if dim is None:
            raise SearchIndexError(f"the index at {self.path} is empty; add images first (pictext index FOLDER)")
        return VectorFile(self.path / "vectors.f16", int(dim), "float16")

    # ---- adding ---------------------------------------------------------------------------------------------------

    def add(
        self,
        paths: Iterable[str | os.PathLike] = (),
        *,
        batch_size: int = 64,
        workers: int | None = None,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        fast_decode: bool = True,
        mixed_precision: bool = False,
    ) -> Report:
        """Index the image files and folders in `paths` (none: every folder indexed before); see the module doc.

        fast_decode: JPEGs decode at a reduced scale no smaller than the model's input (see `decode_image`);
        vectors then differ slightly from exact preprocessing (bench/index.py measures by how much).
        mixed_precision: add vectors made in another precision than the index's so far (refused otherwise).
        """
        with self.writing():
            roots = self._roots(paths)
            model = self.model
            self.check()
            self._check_precision(model, mixed_precision)
            report = Report()
            found = scan(roots, exclude, skip=[self.path])
            report.scanned = len(found)
            for path in [p for p in found if not storable(p)]:  # SQLite stores text as UTF-8 only
                del found[path]
                report.errors.append((printable(path), "the file name is not valid UTF-8; rename it to index it"))
            known: dict[str, Record] = {}
            for root in roots:
                known.update(self.catalog.under(str(root)) if root.is_dir() else self.catalog.at(str(root)))

            changed = [p for p, st in found.items() if _changed(known.get(p), st)]
            report.unchanged = len(found) - len(changed)
            retried = set(changed)
            report.failing = [
                (p, r.error or "") for p, r in known.items() if r.status == "error" and p in found and p not in retried
            ]
            missing = {p: r for p, r in known.items() if p not in found}
            to_embed, hashes = self._reuse(changed, found, missing, report)
            self._embed(to_embed, hashes, found, model, batch_size, workers, fast_decode, report)
            gone = [r.id for p, r in missing.items() if not os.path.exists(p)]
            with self.catalog.transaction():
                self.catalog.delete(gone)
            report.removed = len(gone)
            self._bump()
            self._prune_thumbnails()
            ivf = self.sync_faiss()
        report.faiss_recall_at_10 = None if ivf is None else ivf.recall_at_10
        return report

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the index's writer lock (writer_lock)."""
        return writer_lock(self.path)

    def _check_precision(self, model: CLIP, mixed: bool) -> None:
        """Record the precision of the index's vectors; refuse to add vectors of another unless `mixed`."""
        stored = self.catalog.get("precision")
        if stored is None or stored == model.precision or mixed:
            if stored != model.precision:
                with self.catalog.transaction():
                    self.catalog.set("precision", model.precision if stored in (None, model.precision) else "mixed")
            return
        raise SearchIndexError(
            f"the vectors in {self.path} were made in {stored}, and this model runs in {model.precision}; "
            f"index with --precision {stored if stored != 'mixed' else 'fp32'}, or pass --mixed-precision to add "
            f"{model.precision} vectors anyway (their cosines to {stored} ones differ by about 1e-4)"
        )

    def check(self) -> None:
        """SearchIndexError when the vector file has lost rows the catalog points at (deleted or truncated)."""
        _, rows = self.catalog.live_rows()
        if not rows:
            return
        held, needed = len(self.vectors), max(rows) + 1
        if held < needed:
            state = "is missing" if held == 0 else f"holds {held} vectors"
            raise SearchIndexError(
                f"{self.vectors.path} {state} but the catalog needs {needed}; `pictext index --rebuild` keeps the "
                "vectors that are still there and embeds the rest again"
            )

    def _prune_thumbnails(self) -> None:
        """Drop cached thumbnails of files no longer in the catalog (removed, or changed and re-embedded)."""
        folder = self.path / "thumbs"
        if not folder.is_dir():
            return
        live = set(self.catalog.live_rows()[0])
        for thumb in folder.glob("*.jpg"):
            if not thumb.stem.isdigit() or int(thumb.stem) not in live:
                thumb.unlink(missing_ok=True)

    def _roots(self, paths: Iterable[str | os.PathLike]) -> list[Path]:
        """Absolute folders and files to scan, remembered for later runs; none given: all remembered ones."""
        roots = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
        for given, root in zip(paths, roots):
            if not root.exists():
                raise MissingFileError(f"{given}: no such file or folder to index")
        if roots:
            with self.catalog.transaction():
                for r in roots:
                    self.catalog.add_root(str(r))
            return roots
        known = [Path(r) for r in self.catalog.roots()]
        if not known:
            raise SearchIndexError(f"nothing to index: give folders or files ({self.path} has none yet)")
        return [r for r in known if r.exists()]  # a folder that is gone (an unplugged disk) keeps its rows

    def _reuse(
        self, changed: list[str], found: dict[str, os.stat_result], missing: dict[str, Record], report: Report
    ) -> tuple[list[str], dict[str, str | None]]:
        """Hash changed files; where the catalog has that content already, keep its vector.

        Returns the files left to embed, and every changed file's hash.
        """
        with ThreadPoolExecutor(max_workers=4) as pool:
            hashes = dict(zip(changed, pool.map(_safe_hash, changed)))
        existing = self.catalog.ok_by_hash(h for h in hashes.values() if h)
        renamed_from = {r.hash: r for r in missing.values() if r.status == "ok"}
        to_embed = []
        with self.catalog.transaction():
            for path, digest in hashes.items():
                st = found[path]
                if digest is None:
                    to_embed.append(path)  # unreadable now: the decoder records why
                elif digest in renamed_from:
                    record = renamed_from.pop(digest)
                    missing.pop(record.path, None)
                    self.catalog.move(record, path, st.st_size, st.st_mtime_ns)
                    report.reused += 1
                elif digest in existing:
                    r = existing[digest]
                    self.catalog.replace(
                        path, st.st_size, st.st_mtime_ns, hash=digest, width=r.width, height=r.height,
                        model=r.model, row=r.row, status="ok", error=None,
                    )  # fmt: skip
                    report.reused += 1
                else:
                    to_embed.append(path)
        return to_embed, hashes

    def _embed(
        self,
        paths: list[str],
        hashes: dict[str, str | None],
        found: dict[str, os.stat_result],
        model: CLIP,
        batch_size: int,
        workers: int | None,
        fast_decode: bool,
        report: Report,
    ) -> None:
        if not paths:
            return
        workers = default_workers() if workers is None else workers
        loader = DataLoader(
            _Images(paths, model.preprocess, fast_decode),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=list,  # items stay (position, pixels, width, height, error); good pixels are stacked below
            prefetch_factor=4 if workers else None,
        )
        fingerprint = self.catalog.get("model")
        device = model.text_projection.device
        bar = progress(len(paths), "indexing")
        for items in loader:
            good = [it for it in items if it[1] is not None]
            start = 0
            if good:
                with inference(model):
                    pixels = torch.stack([it[1] for it in good]).to(device)
                    emb = unit_rows(model.encode_image(pixels))
                start = self.vectors.append(emb)
            with self.catalog.transaction():
                for j, (i, _, w, h, _) in enumerate(good):
                    path, st = paths[i], found[paths[i]]
                    self.catalog.replace(
                        path, st.st_size, st.st_mtime_ns, hash=hashes.get(path), width=w, height=h,
                        model=fingerprint, row=start + j, status="ok", error=None,
                    )  # fmt: skip
                for i, _, _, _, error in items:
                    if error is None:
                        continue
                    if error == "gone":
                        report.vanished += 1
                        continue
                    path, st = paths[i], found[paths[i]]
                    self.catalog.replace(path, st.st_size, st.st_mtime_ns, status="error", error=error)
                    report.errors.append((path, error))
            report.embedded += len(good)
            bar.update(len(items))
        bar.close()

    # ---- searching ------------------------------------------------------------------------------------------------

    def _bump(self) -> None:
        with self.catalog.transaction():
            self.catalog.set("generation", str(int(self.catalog.get("generation") or 0) + 1))

    def _live(self) -> tuple[list[int], set[int], np.ndarray]:
        """(catalog ids, the same as a set, float32 matrix) of every searchable file, cached until the catalog
        changes: a query at 1M images must not rebuild any of them."""
        generation = self.catalog.get("generation") or "0"
        if self._cache is None or self._cache[0] != generation:
            self.check()
            ids, rows = self.catalog.live_rows()
            matrix = self.vectors.read(rows) if ids else np.zeros((0, 1), np.float32)
            self._cache = (generation, ids, set(ids), matrix)
        return self._cache[1], self._cache[2], self._cache[3]

    def __len__(self) -> int:
        return self.catalog.counts()["ok"]

    def query_vector(self, query: object) -> np.ndarray:
        """The normalized query vector for text, images, or weighted mixes (see pictext.search.query)."""
        return query_vector(self.model, query)

    def search(self, query: object, k: int = 20, *, exact: bool | None = None) -> list[Hit]:
        """The k files most like `query`: text, an image (Path, PIL image, bytes), a vector, or weighted terms."""
        if k < 1:
            raise QueryError(f"k must be at least 1, got {k}")
        vector = np.asarray(query, np.float32) if isinstance(query, np.ndarray) else self.query_vector(query)
        ids, live, matrix = self._live()
        if not ids:
            return []
        faiss_index = None if exact else self._faiss_index()
        if faiss_index is not None:
            found, scores = faiss_index.search(vector, k + 16)
            pairs = [(int(i), float(s)) for i, s in zip(found, scores) if int(i) in live][:k]
        else:
            positions, scores = top_k(matrix, vector, k)
            pairs = [(ids[p], float(s)) for p, s in zip(positions, scores)]
        paths = self.catalog.paths([i for i, _ in pairs])
        return [Hit(i, paths[i], s) for i, s in pairs if i in paths]

    def similar(self, file_id: int, k: int = 20) -> list[Hit]:
        """'More like this': the files nearest to an indexed file's vector."""
        record = self.catalog.by_id(file_id)
        if record is None or record.row is None:
            raise QueryError(f"no indexed image has id {file_id}")
        return self.search(self.vectors.read([record.row])[0], k)

    def dupes(self, threshold: float = 0.95) -> list[list[Hit]]:
        """Groups of near-duplicate files (cosine >= threshold to another member), largest groups first.

        Exact all-pairs in blocks: O(n^2) work, fine for collections up to a few tens of thousands.
        """
        ids, _, matrix = self._live()
        parent = list(range(len(ids)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for start in range(0, len(ids), 2048):
            scores = matrix[start : start + 2048] @ matrix.T  # (B, N)
            for a, b in zip(*np.nonzero(scores >= threshold)):
                a += start
                if a < b:
                    parent[find(a)] = find(b)
        groups: dict[int, list[int]] = {}
        for i in range(len(ids)):
            groups.setdefault(find(i), []).append(i)
        records = {r.id: r.path for r in self.catalog.records("status = 'ok'")}
        out = []
        for members in groups.values():
            if len(members) > 1:
                head = matrix[members[0]]
                out.append([Hit(ids[m], records[ids[m]], float(matrix[m] @ head)) for m in members])
        return sorted(out, key=lambda g: (-len(g), g[0].path))

    # ---- faiss ----------------------------------------------------------------------------------------------------

    def _faiss_index(self) -> FaissIVF | None:
        file = self.path / "faiss.index"
        if not file.exists():
            return None
        stamp = str(file.stat().st_mtime_ns)
        if self._faiss is None or self._faiss[0] != stamp:
            try:
                self._faiss = (stamp, FaissIVF.load(file))
            except StaleIndexError:
                return None  # written half-way by a crash: exact search answers until the next sync rebuilds it
        return self._faiss[1]

    def sync_faiss(self, force: bool = False, threshold: int = FAISS_THRESHOLD) -> FaissIVF | None:
        """Build, update or drop the faiss index so that it holds exactly the searchable files."""
        file = self.path / "faiss.index"
        ids, _, matrix = self._live()
        if len(ids) < threshold and not force:
            for f in (file, file.with_suffix(".ids.npz")):
                f.unlink(missing_ok=True)
            return None
        live = np.asarray(ids, np.int64)
        ivf = self._faiss_index()
        if ivf is None or len(ids) > 4 * ivf.trained_on:
            ivf = FaissIVF.build(matrix, live)
        else:
            ivf.update(matrix, live)
        ivf.save(file)
        return ivf

    def close(self) -> None:
        self.catalog.close()


def query_vector(model: CLIP, query: object) -> np.ndarray:
    """`model`'s normalized query vector for text, images, or weighted mixes (see pictext.search.query)."""
    from pictext.api import encode_images, encode_texts

    terms = as_terms(query)
    texts = [t.term for t in terms if isinstance(t.term, str)]
    images = [_image(t.term) for t in terms if not isinstance(t.term, str)]
    text_emb = iter(encode_texts(texts, model=model, truncate=True) if texts else [])
    image_emb = iter(encode_images(images, model=model) if images else [])  # type: ignore[arg-type]
    embeddings = [next(text_emb) if isinstance(t.term, str) else next(image_emb) for t in terms]
    return combine([t.weight for t in terms], np.stack(embeddings))


def _spec(model: str | os.PathLike) -> str:
    """A model name as given, or a path made absolute so the index finds it from any folder."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def default_workers() -> int:
    """DataLoader workers for decoding: one a core, at most 4 (the encoder mostly waits on them)."""
    return max(1, min(4, os.cpu_count() or 1))


def _changed(record: Record | None, st: os.stat_result) -> bool:
    return record is None or record.size != st.st_size or record.mtime_ns != st.st_mtime_ns


def _image(term: object) -> object:
    """An image query term as encode_images takes it: uploaded bytes are decoded under the upload pixel limit."""
    return decode_bytes(term, "uploaded image", max_pixels=MAX_UPLOAD_PIXELS) if isinstance(term, bytes) else term


def repair(path: str | os.PathLike) -> str:
    """Make the index at `path` consistent again, keeping what is still good; says what it did.

    An unreadable catalog is moved aside (with it, the vectors lose their files, so they go too); rows whose
    vectors are gone from a deleted or truncated vector file are dropped, so the next `add` embeds those files
    again while every intact vector is kept.
    """
    folder = Path(path).expanduser()
    catalog_file = folder / "catalog.sqlite"
    try:
        catalog = Catalog(catalog_file)
    except sqlite3.DatabaseError:
        broken = catalog_file.with_name("catalog.sqlite.broken")
        os.replace(catalog_file, broken)
        for name in ("catalog.sqlite-wal", "catalog.sqlite-shm", "vectors.f16", "faiss.index", "faiss.ids.npz"):
            (folder / name).unlink(missing_ok=True)
        return f"the catalog was unreadable and is kept as {broken}; every file will be embedded again"
    try:
        dim = catalog.get("dim")
        held = len(VectorFile(folder / "vectors.f16", int(dim), "float16")) if dim else 0
        lost = [r.id for r in catalog.records("status = 'ok' AND row >= ?", (held,))]
        with catalog.transaction():
            catalog.delete(lost)
            catalog.set("generation", str(int(catalog.get("generation") or 0) + 1))
        return f"kept {held} vectors; {len(lost)} files lost theirs and will be embedded again"
    finally:
        catalog.close()


def _safe_hash(path: str) -> str | None:
    try:
        return file_hash(path)
    except OSError:
        return None


__all__ = ["Hit", "Index", "SearchIndexError", "QueryError", "Report", "Weighted", "scan"]
