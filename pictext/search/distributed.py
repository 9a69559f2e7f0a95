"""`pictext embed --ray ADDRESS`: the embedding shards of pictext.search.shards, computed on a Ray cluster.

Ray Data streams the work: the input shards are listed (a tar's headers) by light tasks; model actors
(`--actors`, each loading the model once, `--gpus-per-actor` GPUs each; on CPUs, one a CPU by default) read,
decode, preprocess (Ray fuses that stage into theirs) and embed the batches; this process, the driver, gathers
each shard's rows and writes the shard once it holds all of them. Ray reruns a task or restarts an actor that a
lost node took with it; the driver keys rows by their place in the shard, so work done twice is kept once. A
killed driver loses only the shards it had not written: the rerun skips the others. No scheduler of pictext's
own: placement, retries and back-pressure are Ray's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pictext.errors import UsageError
from pictext.images.transforms import Preprocess
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


def embed_on_ray(plan: Plan, preprocess: Preprocess, out: Path, pending: list[InputShard], address: str,
                 batch_size: int, gpus_per_actor: float, actors: int | None, report: EmbedReport) -> None:  # fmt: skip
    """The pending shards embedded on the Ray cluster at `address`; `preprocess` is the plan's model's (checked
    by the caller), sent to the decoding stage."""
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
    # one input shard a block, so listing spreads over the workers (a repartition would need a CPU task, which
    # on a one-CPU cluster waits forever behind the model actor holding that CPU)
    shards = ray.data.from_items([{"name": s.name, "kind": s.kind, "path": s.path} for s in pending],
                                 override_num_blocks=len(pending))  # fmt: skip
    rows = shards.flat_map(_list, num_cpus=0)  # a tar's headers: light, and never waiting behind the actors
    options = {"preprocess": preprocess, "draft": plan.draft}
    prepared = rows.map_batches(_prepare, batch_size=batch_size, fn_kwargs=options)
    n_actors = actors or _default_actors(ray, gpus_per_actor)
    embedded = prepared.map_batches(
        _Embedder, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors),
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
    return max(1, int(resources.get("CPU", 1)))  # each actor decodes its own batches (the stages are fused)


class LocalCluster:
    """A Ray cluster on this machine, for trying `--ray` and for the tests and benchmarks: a head and `nodes - 1`
    worker nodes, each `ray start --block` in its own process group on 127.0.0.1 with `cpus` CPUs, so that
    one node can be killed alone. `address` is what --ray takes. Use as a context manager, or call `stop`."""

    def __init__(self, root: str | os.PathLike, nodes: int = 2, cpus: int = 1, object_store_bytes: int = 150_000_000,
                 timeout: float = 120) -> None:  # fmt: skip
        # short: Ray's socket paths under root have a length limit (about 107 bytes)
        self.root, self.timeout = Path(root), timeout
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self.processes: list[subprocess.Popen] = []
        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
                  f"--object-store-memory={object_store_bytes}", "--block", "--disable-usage-stats"]  # fmt: skip
        try:
            self._start([ray, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                         f"--temp-dir={self.root}", *common], 1)  # fmt: skip
            for n in range(2, nodes + 1):
                self._start([ray, "start", f"--address={self.address}", *common], n)
        except BaseException:
            self.stop()
            raise

    def _start(self, command: list[str], nodes: int) -> None:
        log = open(self.root / f"node-{len(self.processes)}.log", "wb")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))  # fmt: skip
        script = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                  "print(sum(1 for node in ray.nodes() if node['Alive']))")  # fmt: skip
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-c", script], env=self.env, capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(nodes)]:
                return
            if self.processes[-1].poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"the local Ray cluster did not reach {nodes} nodes (logs in {self.root})")

    def kill(self, node: int) -> None:
        """Kill node `node` (0: the head) and everything it runs, at once."""
        os.killpg(self.processes[node].pid, signal.SIGKILL)
        self.processes[node].wait()

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
