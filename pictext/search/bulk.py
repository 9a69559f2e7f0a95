"""`pictext embed`: a collection embedded into shards (pictext.search.shards), on this machine or on a Ray cluster
(pictext.search.distributed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pictext.clip.model import CLIP
from pictext.errors import UsageError
from pictext.images.transforms import Preprocess
from pictext.search.distributed import embed_on_ray
from pictext.search.shards import (
    SHARD_SIZE,
    EmbedReport,
    InputShard,
    Item,
    Plan,
    encode,
    list_items,
    open_plan,
    pending_shards,
    prepare,
    record,
    write_shard,
)


def embed(
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: str | None = None,
    *,
    batch_size: int = 64,
    shard_size: int = SHARD_SIZE,
    ray: str | None = None,
    gpus_per_actor: float = 0,
    actors: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
    fast_decode: bool = True,
) -> EmbedReport:
    """Embed `source` into shards under `out` (see the module's doc): on this machine, or on the Ray cluster at
    address `ray` ("auto", "HOST:PORT", "ray://HOST:PORT")."""
    from pictext import hub
    from pictext.search.index import private_folder, writer_lock

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    folder = private_folder(Path(out).expanduser())
    with writer_lock(folder):
        spec = str(model or hub.DEFAULT_MODEL)
        plan, clip = open_plan(str(source), folder, spec, shard_size, precision, fast_decode)
        pending = pending_shards(plan, folder)
        report = EmbedReport(shards=len(plan.shards), skipped=len(plan.shards) - len(pending))
        if pending:
            if ray is None:
                _embed_here(plan, clip, folder, pending, batch_size, workers, report)
            else:
                embed_on_ray(plan, clip.preprocess, folder, pending, ray, batch_size, gpus_per_actor, actors, report)
        return report


class _Prepared:
    """A torch Dataset of one shard's items, decoded in DataLoader workers."""

    def __init__(self, items: list[Item], preprocess: Preprocess, draft: int | None) -> None:
        self.items, self.preprocess, self.draft = items, preprocess, draft

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        return (i, *prepare(self.items[i], self.preprocess, self.draft))


def _embed_here(plan: Plan, model: CLIP, out: Path, pending: list[InputShard], batch_size: int,
                workers: int | None, report: EmbedReport) -> None:  # fmt: skip
    from torch.utils.data import DataLoader

    from pictext.search.index import default_workers
    from pictext.training import progress

    workers = default_workers() if workers is None else workers
    bar = progress(len(pending), "embedding shards")
    for shard in pending:
        items = list_items(shard)
        vectors = np.zeros((len(items), plan.dim), np.float32)
        hashes, errors = [""] * len(items), [None] * len(items)
        loader = DataLoader(_Prepared(items, model.preprocess, plan.draft), batch_size=batch_size,
                            num_workers=workers, collate_fn=list)  # fmt: skip
        for batch in loader:
            good = [row for row in batch if row[1] is not None]
            if good:
                vectors[[row[0] for row in good]] = encode(model, np.stack([row[1] for row in good]))
            for i, _, digest, error in batch:
                hashes[i], errors[i] = digest, error
        write_shard(out, shard.name, items, vectors, hashes, errors, plan.fingerprint)
        record(report, items, errors)
        bar.update(1)
    bar.close()
