"""The search commands: `index` (embed folders, incrementally), `search` (text, images, weighted mixes), `dupes`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pictext.commands.common import Subparsers, precision_arg, say_precision
from pictext.errors import MissingFileError, UsageError


def _index(args: argparse.Namespace, create: bool = False):
    from pictext.search import Index

    return Index(args.index, model=args.model, create=create, precision=args.precision)


def open_index(args: argparse.Namespace, create: bool = False):
    """The index --index names, to search: one built by `pictext index build` (searched with the model its vectors
    came from), else pictext index's folder."""
    from pictext.search.ondisk import ShardedIndex, is_sharded_index

    if not (args.index and is_sharded_index(args.index)):
        return _index(args, create)
    index = ShardedIndex(args.index, args.precision)
    if args.model and args.model != index.info["model"]:
        raise UsageError(f"--model {args.model}: the vectors of {args.index} came from {index.info['model']!r}, "
                         "and it is searched with that model; leave --model out")  # fmt: skip
    return index


def cmd_index(args: argparse.Namespace) -> int:
    from pictext.search.index import DEFAULT_EXCLUDE, adding_to, default_index_dir, repair

    if args.paths[:1] == ["build"] and not Path("build").exists():  # `pictext index build EMB/ --index BIG/`
        return cmd_index_build(args)
    if args.memory is not None:
        raise UsageError("--memory is for `pictext index build EMB/ --index BIG/`")
    for given in args.paths:  # before anything is created
        if not Path(given).expanduser().exists():
            raise MissingFileError(f"{given}: no such file or folder to index")
    folder = Path(args.index).expanduser() if args.index else default_index_dir()
    with adding_to(folder):  # the lock first: a second `pictext index` here stops having changed nothing
        if args.rebuild and (folder / "catalog.sqlite").exists():
            print(f"{folder}: {repair(folder)}")
        index = _index(args, create=True)
        try:  # closed at the end: the catalog's connection (and its WAL) must not outlive the command
            say_precision(index.model)
            report = index.add(
                args.paths,
                mixed_precision=args.mixed_precision,
                batch_size=args.batch_size,
                workers=args.workers,
                exclude=(*DEFAULT_EXCLUDE, *args.exclude),
                fast_decode=not args.exact_decode,
            )
            return _report_index(args, index, report)
        finally:
            index.close()


def cmd_index_build(args: argparse.Namespace) -> int:
    from pictext.search.ondisk import build, parse_bytes

    if len(args.paths) != 2:
        raise UsageError("usage: pictext index build EMB/ --index BIG/ [--memory 8GB] (EMB/: pictext embed's --out)")
    if not args.index:
        raise UsageError("pictext index build needs --index BIG/, the new index's folder")
    emb = Path(args.paths[1]).expanduser()
    if not emb.is_dir():
        raise MissingFileError(f"{emb}: no such folder of embeddings (make it with pictext embed SOURCE --out {emb})")
    print(build(emb, args.index, parse_bytes(args.memory or "8GB")))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from pictext.search.bulk import embed

    report = embed(args.source, args.out, args.model, batch_size=args.batch_size, shard_size=args.shard_size,
                   ray=args.ray, gpus_per_actor=args.gpus_per_actor, actors=args.actors, workers=args.workers,
                   precision=args.precision, fast_decode=not args.exact_decode)  # fmt: skip
    print(f"{args.out}: {report}")
    for location, reason in report.errors[:20]:
        print(f"pictext: could not embed {location}: {reason}", file=sys.stderr)
    return 0


def _report_index(args: argparse.Namespace, index, report) -> int:
    from pictext.search.index import printable

    if args.faiss:
        ivf = index.sync_faiss(force=True)
        print(f"faiss IVF: nprobe {ivf.nprobe} of {ivf.index.nlist} lists, recall@10 vs exact {ivf.recall_at_10:.3f}")
    elif report.faiss_recall_at_10 is not None:
        print(f"faiss IVF in use: recall@10 against exact search {report.faiss_recall_at_10:.3f}")
    print(f"{index.path}: {report}; {len(index)} images searchable")
    for path, reason in report.errors:
        print(f"pictext: could not index {printable(path)}: {reason}", file=sys.stderr)
    for path, reason in report.failing:
        print(f"pictext: still not indexed (unchanged since it failed) {printable(path)}: {reason}", file=sys.stderr)
    return 1 if report.errors or report.failing else 0


def cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path as P

    from pictext.search import Weighted, parse_terms

    terms = parse_terms(args.query) if args.query else []
    for image in args.image:
        if not P(image).is_file():
            raise MissingFileError(f"--image {image}: no such file")
        terms.append(Weighted(1.0, P(image)))
    if not terms:
        raise UsageError('the query is empty; give text (pictext search "a dog") or an image (--image FILE)')
    index = open_index(args)
    try:
        hits = index.search(terms, args.k)
    finally:
        index.close()
    captions = [getattr(h, "caption", None) for h in hits]  # a sharded index's results carry their captions
    if args.json:
        rows = [{"path": h.path, "score": h.score, "id": h.id} | ({"caption": c} if c is not None else {})
                for h, c in zip(hits, captions)]  # fmt: skip
        print(json.dumps({"results": rows}, indent=2, ensure_ascii=False))
    else:
        for h, c in zip(hits, captions):
            print(f"{h.score:.4f}  {h.path}" + (f"  {c}" if c else ""))
    return 0


def cmd_dupes(args: argparse.Namespace) -> int:
    index = _index(args)
    try:
        groups = index.dupes(args.threshold)
    finally:
        index.close()
    if args.json:
        print(json.dumps([[{"path": h.path, "score": h.score} for h in g] for g in groups], indent=2))
    else:
        for g in groups:
            print("\n".join(f"{h.score:.4f}  {h.path}" for h in g) + "\n")
        print(f"{len(groups)} groups of near-duplicates (cosine >= {args.threshold})")
    return 0


def index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", help="index folder (default: $PICTEXT_HOME/index)")
    p.add_argument("--model", help="model to embed with (default: the one the index was built with)")
    precision_arg(p)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("index", help="embed the images under folders, incrementally, for search; or `index build "
                       "EMB/ --index BIG/`: an index larger than memory from pictext embed's shards")  # fmt: skip
    p.add_argument("paths", nargs="*", help="folders or image files (none: re-scan every folder indexed before)")
    p.add_argument("--memory", help="index build: the memory budget that picks the index (default 8GB)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, help="decoding processes (default: one a core, at most 4)")
    p.add_argument("--exact-decode", action="store_true",
                   help="decode JPEGs at full size (slower; the default decodes at reduced scale)")  # fmt: skip
    p.add_argument("--exclude", action="append", default=[], help="folder names to skip (glob), repeatable")
    p.add_argument("--faiss", action="store_true", help="build the faiss index now, whatever the size")
    p.add_argument("--mixed-precision", action="store_true",
                   help="add vectors made in another precision than the index's")  # fmt: skip
    p.add_argument("--rebuild", action="store_true",
                   help="repair a damaged index first: keep the intact vectors, embed the rest again")  # fmt: skip
    index_args(p)
    p.set_defaults(run=cmd_index)

    p = sub.add_parser("embed", help="embed a collection into shards (.npy + .parquet), here or on a Ray cluster")
    p.add_argument("source", help="a folder, a file listing images, or WebDataset shards ('data/{00000..00099}.tar')")
    p.add_argument("--out", required=True, help="the shards' folder (a rerun finishes what is not written)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on this Ray cluster ('auto', HOST:PORT or ray://HOST:PORT)")
    p.add_argument("--model", help="model to embed with (default: default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=10_000, help="files a shard, for folders and lists")
    p.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each Ray model actor holds")
    p.add_argument("--actors", type=int, help="Ray model actors (default: one a GPU, or one a CPU of the cluster)")
    p.add_argument("--workers", type=int, help="decoding processes without --ray (default: one a core, at most 4)")
    p.add_argument("--exact-decode", action="store_true", help="decode JPEGs at full size (as pictext index's)")
    precision_arg(p)
    p.set_defaults(run=cmd_embed)

    p = sub.add_parser("search", help='search the index: "a dog", "beach" + "sunset" - people, 2:"red car"')
    p.add_argument("query", nargs="*", help="text terms joined by + and -, with optional WEIGHT: prefixes")
    p.add_argument("--image", action="append", default=[], help="an image to search by, repeatable")
    p.add_argument("-k", type=int, default=20, help="number of results")
    p.add_argument("--json", action="store_true", help="print JSON")
    index_args(p)
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("dupes", help="list groups of near-duplicate images in the index")
    p.add_argument("--threshold", type=float, default=0.95, help="cosine similarity to count as a duplicate")
    p.add_argument("--json", action="store_true", help="print JSON")
    index_args(p)
    p.set_defaults(run=cmd_dupes)
