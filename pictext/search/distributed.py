"""`pictext embed --ray ADDRESS`: the embedding shards of pictext.search.shards, computed on a Ray cluster.

Ray Data streams the work: the input shards are listed (a tar's headers) and their items read, decoded and
preprocessed by CPU tasks; model actors (`--actors`, each loading the model once, `--gpus-per-actor` GPUs each)
embed the batches; this process, the driver, gathers each shard's rows and writes the shard once it holds all of
them. Ray reruns a task or restarts an actor that a lost node took with it; the driver keys rows by their place
in the shard, so work done twice is kept once. A killed driver loses only the shards it had not written: the
rerun skips the others. No scheduler of pictext's own: placement, retries and back-pressure are Ray's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pictext.errors import UsageError
from pictext.search.shards import (
    EmbedReport,
    InputShard,
    Item,
    Plan,
    ShardError,
    encode,
    list_items,
    load_checked,
    prepare,
    record,
    write_shard,
)

ITEM_FIELDS = ("index", "key", "location", "caption", "file", "offset", "size")


def _list(row: dict) -> list[dict]:
    """One input shard -> its items, each row carrying the shard's name and item count."""
    shard = InputShard(row["name"], row["kind"], row["path"])
    items = list_items(shard)
    return [{"shard": shard.name, "count": len(items), **{f: getattr(it, f) for f in ITEM_FIELDS}} for it in items]


def _prepare(batch: dict, preprocess, draft: int | None) -> dict:
    """Read, decode and preprocess a batch of items (CPU tasks)."""
    n = len(batch["key"])
    size = preprocess.image_size
    pixels = np.zeros((n, 3, size, size), np.float32)
    ok, hashes, errors = np.zeros(n, bool), [], []
    for i in range(n):
        item = Item(**{f: _plain(batch[f][i]) for f in ITEM_FIELDS})
        array, digest, error = prepare(item, preprocess, draft)
        if array is not None:
            pixels[i], ok[i] = array, True
        hashes.append(digest)
        errors.append(error or "")
    keep = {k: batch[k] for k in ("shard", "count", *ITEM_FIELDS)}
    return {**keep, "pixels": pixels, "ok": ok, "hash": np.array(hashes, dtype=object),
            "error": np.array(errors, dtype=object)}  # fmt: skip


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


class _Embedder:
    """A model actor: the plan's model, loaded once (checked against the plan's fingerprint)."""

    def __init__(self, plan: dict, gpus: float) -> None:
        import torch

        device = "cuda" if gpus and torch.cuda.is_available() else None
        self.model = load_checked(Plan(**plan), device=device)
        self.dim = self.model.config.embed_dim

    def __call__(self, batch: dict) -> dict:
        ok = batch.pop("ok")
        pixels = batch.pop("pixels")
        vectors = np.zeros((len(ok), self.dim), np.float32)
        if ok.any():
            vectors[ok] = encode(self.model, np.ascontiguousarray(pixels[ok]))
        return {**batch, "vector": vectors.astype(np.float16)}


def embed_on_ray(plan: Plan, out: Path, pending: list[InputShard], address: str, batch_size: int,
                 gpus_per_actor: float, actors: int | None, report: EmbedReport) -> None:  # fmt: skip
    try:
        import ray
    except ImportError as e:
        raise UsageError("--ray needs Ray: pip install 'pictext[scale]' (ray[data])") from e
    from pictext.training import progress

    if gpus_per_actor < 0:
        raise UsageError(f"--gpus-per-actor must be 0 or more, got {gpus_per_actor}")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # pictext's own bar counts shards; Ray's logs per operator
    context.enable_operator_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    preprocess = load_checked(plan).preprocess  # the driver checks its own model against the plan too
    shards = ray.data.from_items([{"name": s.name, "kind": s.kind, "path": s.path} for s in pending])
    # one input shard a block, so listing spreads over the workers
    shards = shards.repartition(len(pending))
    rows = shards.flat_map(_list)
    options = {"preprocess": preprocess, "draft": plan.draft}
    prepared = rows.map_batches(_prepare, batch_size=batch_size, fn_kwargs=options)
    n_actors = actors or _default_actors(ray, gpus_per_actor)
    embedded = prepared.map_batches(
        _Embedder, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs={"plan": _plan_dict(plan), "gpus": gpus_per_actor},
    )  # fmt: skip
    gathering: dict[str, dict[int, tuple]] = {}
    counts: dict[str, int] = {}
    written: set[str] = set()
    bar = progress(len(pending), "embedding shards on Ray")
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        for j in range(len(batch["key"])):
            name = str(batch["shard"][j])
            if name in written:
                continue  # a redone task's rows for a shard already written
            counts[name] = int(batch["count"][j])
            item = Item(**{f: _plain(batch[f][j]) for f in ITEM_FIELDS})
            error = str(batch["error"][j]) or None
            gathering.setdefault(name, {})[item.index] = (item, batch["vector"][j], str(batch["hash"][j]), error)
            if len(gathering[name]) == counts[name]:
                _write(out, name, gathering.pop(name), plan, report)
                written.add(name)
                bar.update(1)
    bar.close()
    for shard in pending:  # shards with no items produce no rows; anything else missing is an error
        if shard.name in written:
            continue
        if shard.name in gathering or list_items(shard):
            raise ShardError(f"shard {shard.name}: Ray returned {len(gathering.get(shard.name, {}))} of its "
                             f"{counts.get(shard.name, '?')} items; rerun to finish it")  # fmt: skip
        _write(out, shard.name, {}, plan, report)


def _write(out: Path, name: str, rows: dict[int, tuple], plan: Plan, report: EmbedReport) -> None:
    ordered = [rows[i] for i in sorted(rows)]
    items = [r[0] for r in ordered]
    vectors = np.stack([r[1] for r in ordered]) if ordered else np.zeros((0, plan.dim), np.float16)
    errors = [r[3] for r in ordered]
    write_shard(out, name, items, vectors, [r[2] for r in ordered], errors, plan.fingerprint)
    record(report, items, errors)


def _plan_dict(plan: Plan) -> dict:
    from dataclasses import asdict

    raw = asdict(plan)
    raw["shards"] = []  # the actors need the model, not the shards
    return raw


def _default_actors(ray, gpus_per_actor: float) -> int:
    resources = ray.cluster_resources()
    if gpus_per_actor:
        return max(1, int(resources.get("GPU", 0) // gpus_per_actor))
    return max(1, int(resources.get("CPU", 1)) // 2)  # the other half of the CPUs decode
