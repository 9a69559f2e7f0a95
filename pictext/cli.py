"""The `pictext` command: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pictext.checkpoint import CheckpointError
from pictext.commands import images_in as _images_in
from pictext.commands import train_paths as _train_paths
from pictext.commands.generation import add_generation_parsers
from pictext.files import atomic_write
from pictext.hub import ModelNotFoundError
from pictext.images.decode import ImageError
from pictext.text.tokenizer import TextTooLongError, VocabularyNotFoundError

USER_ERRORS = (  # DatasetError, QueryError and SearchIndexError are ValueErrors
    ImageError,
    CheckpointError,
    ModelNotFoundError,
    VocabularyNotFoundError,
    TextTooLongError,
    ValueError,
    FileNotFoundError,
)


def _say_precision(model):  # noqa: ANN001, ANN202 - a CLIP, imported late
    """Print, once per command, the precision the model runs in."""
    from pictext.training import cpu_has_fast_bf16

    why = " (native on this CPU)" if model.precision == "bf16" and cpu_has_fast_bf16() else ""
    print(f"pictext: inference in {model.precision}{why}", file=sys.stderr)
    return model


def _templates(name: str) -> tuple[str, ...]:
    from pictext.clip.zero_shot import DEFAULT_TEMPLATES, imagenet_templates

    return {"default": DEFAULT_TEMPLATES, "imagenet": imagenet_templates(), "none": ("{}",)}[name]


def cmd_classify(args: argparse.Namespace) -> int:
    from pictext.api import embed_images, inference, load, unit_rows
    from pictext.clip.zero_shot import class_embeddings, zero_shot_probs

    model = _say_precision(load(args.model, activation=args.activation, precision=args.precision))
    labels = [label.strip() for label in args.labels.split(",")] if args.labels.strip() else []
    with inference(model):
        classes = torch.from_numpy(unit_rows(class_embeddings(model, labels, _templates(args.templates))))
    paths = _images_in(args.images)
    indices, features, errors = embed_images(model, paths)
    probs = (
        zero_shot_probs(model, torch.from_numpy(features), classes).numpy() if indices else np.zeros((0, len(labels)))
    )
    results = []
    for row, i in enumerate(indices):
        order = np.argsort(-probs[row])
        results.append(
            {"image": str(paths[i]), "labels": [{"label": labels[j], "prob": float(probs[row, j])} for j in order]}
        )
    if args.json:
        print(json.dumps({"results": results, "errors": [str(e) for e in errors]}, indent=2))
    else:
        for r in results:
            print(r["image"])
            for item in r["labels"][: args.top]:
                print(f"  {item['prob']:7.2%}  {item['label']}")
    for e in errors:
        print(f"pictext: skipped {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_encode(args: argparse.Namespace) -> int:
    from pictext.api import embed_images, load

    paths = _images_in(args.inputs)
    model = _say_precision(load(args.model, activation=args.activation, precision=args.precision))
    indices, features, errors = embed_images(model, paths, batch_size=args.batch_size)
    if not indices:
        raise ImageError(", ".join(str(e.source) for e in errors), "no input is a readable image; nothing written")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "embeddings.npy", lambda tmp: np.save(open(tmp, "wb"), features))
    manifest = {
        "model": str(args.model or "default"),
        "dim": int(features.shape[1]),
        "count": len(indices),
        "paths": [str(paths[i]) for i in indices],
        "errors": [{"path": str(e.source), "reason": e.reason} for e in errors],
    }
    atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    print(f"wrote {len(indices)} embeddings of dimension {features.shape[1]} to {out}/embeddings.npy")
    for e in errors:
        print(f"pictext: skipped {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_train(args: argparse.Namespace) -> int:
    from pictext.commands.generation import _train_dalle, _train_unclip, _train_vqgan

    if args.family.startswith("unclip-"):
        return _train_unclip(args)
    if args.clip is not None:
        raise ValueError("--clip is an option of pictext train unclip-prior, unclip-decoder and unclip-upsampler")
    if args.family == "vqgan":
        return _train_vqgan(args)
    if args.family == "dalle":
        return _train_dalle(args)
    if args.image_tokenizer is not None:
        raise ValueError("--image-tokenizer is an option of pictext train dalle")
    from pictext.clip.recipe import RECIPES, recipe_data
    from pictext.clip.recipe import build as train_on
    from pictext.data.pairs import load_pairs

    recipe = RECIPES[args.recipe or "shapes"]
    given = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "precision": args.precision,
        "loss": args.loss,
        "micro_batch": args.micro_batch,
        "checkpoint_every": args.checkpoint_every,
        "lock": None if args.lock is None else tuple(x for x in args.lock if x != "none"),
        "grad_checkpointing": args.grad_checkpointing or None,
        "augment": args.augment,
    }
    cfg = dataclasses.replace(recipe.train, **{k: v for k, v in given.items() if v is not None})
    recipe = dataclasses.replace(recipe, train=cfg)
    if args.data is None or args.data == "shapes":
        recipe = recipe if args.data is None else dataclasses.replace(recipe, data="shapes")
        data = recipe_data(recipe)
        name = (args.recipe or "shapes") if args.data is None else "shapes"
    else:
        data = load_pairs(args.data, cfg.seed, args.image_column, args.caption_column)
        name = args.data if args.data == "digits" else Path(args.data).stem
    custom = args.data is not None or any(v is not None for v in given.values())
    out, run_dir = _train_paths(args, f"{name}{'-custom' if custom else ''}")
    train_on(recipe, data, out=out, run_dir=run_dir)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pictext.api import load
    from pictext.evaluate import evaluate_data

    model = load(args.model, activation=args.activation, precision="fp32")  # figures that hold on any machine
    results = evaluate_data(model, args.data, image_column=args.image_column, caption_column=args.caption_column)
    if args.json:
        print(json.dumps({"model": args.model or "default", "data": args.data, "results": results}, indent=2))
    else:
        for name, value in results.items():
            print(f"{name:28s} {value:7.1%}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from pictext import hub
    from pictext.data.emoji import build_emoji, fetch_tarball, folder_name

    downloads = hub.home() / "downloads"
    tarball = Path(args.tarball) if args.tarball else fetch_tarball(downloads, args.vendor)
    if not tarball.is_file():
        raise FileNotFoundError(f"--tarball {tarball}: no such file")
    words = fetch_tarball(downloads, "emojilib") if args.keywords else None
    base = fetch_tarball(downloads, "google") if args.vendor == "openmoji" else None
    out = Path(args.out) if args.out else hub.home() / "data" / folder_name(args.vendor, args.keywords)
    counts = build_emoji(out, tarball, args.per_shard if args.format == "shards" else None, args.vendor, words, base)
    print(f"wrote {counts['train']} training and {counts['held_out']} held-out emoji to {out}/")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pictext import hub

    if args.action == "build":
        return _build_model(args.name, args.out, args.half)
    models = hub.list_models()
    print(f"models (local ones in {hub.models_dir()}, shipped ones in the package):")
    for path in models:
        where = "shipped" if path.parent == hub.SHIPPED else "local"
        print(f"  {path.stem:24s} {path.stat().st_size / 1e6:8.1f} MB  {where}")
    if not models:
        print(
            "  none; the package's own are missing too: reinstall pictext, or "
            f"`pictext models build {hub.DEFAULT_MODEL}`"
        )
    return 0


def _build_model(name: str | None, out: str | None, half: bool = False) -> int:
    """Run a model's recipe from nothing (resuming a stopped run) and save it where name lookup finds it."""
    from pictext import hub

    if name == "unclip":
        from pictext.api import load
        from pictext.unclip.io import save_unclip
        from pictext.unclip.recipe import UnclipRecipe, recipe_data
        from pictext.unclip.recipe import build as train_unclip

        target = Path(out) if out else hub.models_dir() / "unclip.safetensors"
        recipe = UnclipRecipe()
        clip = load(recipe.clip, precision="fp32")
        prior, decoder = train_unclip(recipe, recipe_data(recipe), clip, run_dir=target.with_suffix(".run"))
        save_unclip(prior, decoder, recipe.clip, clip, target, half=True)  # no upsampler: see UnclipRecipe
    elif name == "dalle":
        from pictext.dalle.recipe import DALLERecipe, recipe_data, recipe_forms
        from pictext.dalle.recipe import build as train_pipeline

        target = Path(out) if out else hub.models_dir() / "dalle.safetensors"
        recipe = DALLERecipe()
        train_pipeline(recipe, recipe_data(recipe), out=target, run_dir=target.with_suffix(".run"),
                       extra=recipe_forms(recipe))  # fmt: skip
    elif name == "vqgan":
        from pictext.vqgan.recipe import VQGANRecipe
        from pictext.vqgan.recipe import build as train_vqgan_on
        from pictext.vqgan.recipe import recipe_data as vqgan_recipe_data

        recipe = VQGANRecipe()
        target = Path(out) if out else hub.models_dir() / "vqgan.safetensors"
        train_vqgan_on(recipe, vqgan_recipe_data(recipe), out=target, run_dir=target.with_suffix(".run"))
    elif name in hub.RECIPE_MODELS:
        from pictext.clip.io import save_clip
        from pictext.clip.recipe import RECIPES
        from pictext.clip.recipe import build as train_shapes

        target = Path(out) if out else hub.models_dir() / f"{name}.safetensors"
        model = train_shapes(RECIPES[name], out=target, run_dir=target.with_suffix(".run"))
        if half:  # how the package ships it: the same weights rounded to float16
            save_clip(model, target, half=True)
    else:
        raise ValueError(
            f"pictext models build takes vqgan, dalle, unclip, {', '.join(hub.RECIPE_MODELS)}; got {name!r}"
        )
    print(f"saved {target}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pictext.clip.convert import export_hf, export_open_clip
    from pictext.clip.io import load_clip, save_clip

    model = load_clip(args.source, activation=args.activation)
    {"native": save_clip, "hf": export_hf, "open_clip": export_open_clip}[args.to](model, args.output)
    print(f"wrote {args.output} ({args.to})")
    return 0


def _index(args: argparse.Namespace, create: bool = False):  # noqa: ANN202 - pictext.search.Index, imported late
    from pictext.search import Index

    return Index(args.index, model=args.model, create=create, precision=args.precision)


def cmd_index(args: argparse.Namespace) -> int:
    import shutil

    from pictext.search.index import DEFAULT_EXCLUDE, default_index_dir, repair

    for given in args.paths:  # before anything is created
        if not Path(given).expanduser().exists():
            raise FileNotFoundError(f"{given}: no such file or folder to index")
    folder = Path(args.index).expanduser() if args.index else default_index_dir()
    new = not folder.exists()
    try:
        if args.rebuild and (folder / "catalog.sqlite").exists():
            print(f"{folder}: {repair(folder)}")
        index = _index(args, create=True)
        _say_precision(index.model)
        report = index.add(
            args.paths,
            mixed_precision=args.mixed_precision,
            batch_size=args.batch_size,
            workers=args.workers,
            exclude=(*DEFAULT_EXCLUDE, *args.exclude),
            fast_decode=not args.exact_decode,
        )
    except BaseException:
        if new and folder.is_dir() and not (folder / "vectors.f16").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a run that failed leaves no empty index behind
        raise
    try:  # closed at the end: the catalog's connection (and its WAL) must not outlive the command
        return _report_index(args, index, report)
    finally:
        index.close()


def _report_index(args: argparse.Namespace, index, report) -> int:  # noqa: ANN001 - Index, AddReport
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
            raise FileNotFoundError(f"--image {image}: no such file")
        terms.append(Weighted(1.0, P(image)))
    if not terms:
        raise ValueError('the query is empty; give text (pictext search "a dog") or an image (--image FILE)')
    index = _index(args)
    try:
        hits = index.search(terms, args.k)
    finally:
        index.close()
    if args.json:
        print(json.dumps({"results": [{"path": h.path, "score": h.score, "id": h.id} for h in hits]}, indent=2))
    else:
        for h in hits:
            print(f"{h.score:.4f}  {h.path}")
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pictext.server.app import LOCAL_HOSTS, create_app

    token = _serve_token(args)
    wildcard = args.host in ("0.0.0.0", "::", "")
    if args.host not in LOCAL_HOSTS and token is None:
        raise ValueError(
            f"--host {args.host} exposes the server beyond this machine; give a token in $PICTEXT_TOKEN "
            "or --token-file FILE (or --token SECRET, which other local users can see in ps)"
        )
    allowed = None if wildcard else (*LOCAL_HOSTS, args.host.lower(), *(h.lower() for h in args.allow_host))
    index = _index(args)
    app = create_app(index, token=token, allowed_hosts=allowed, generator=_server_generator(index, args.vqgan))
    # create_app loaded the model now, not at the first request
    print(f"serving {index.path} ({len(index)} images) at http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _server_generator(index, vqgan: str | None):  # noqa: ANN001, ANN202 - Index and Generator, imported late
    """The Generate tab's models: the index's CLIP and the VQGAN named (default: the default VQGAN, if there is
    one; without it the tab says generation is unavailable)."""
    from pictext import hub
    from pictext.server.generate import Generator
    from pictext.vqgan.io import load_vqgan

    try:
        model = load_vqgan(hub.resolve(vqgan or "vqgan"))
    except (ModelNotFoundError, CheckpointError) as e:
        if vqgan is not None:
            raise
        print(f"pictext: the Generate tab is off ({e})", file=sys.stderr)
        return None
    return Generator(clip=index.model, vqgan=model, dalle=_server_model("dalle"), unclip=_server_model("unclip"))


def _server_model(name: str):  # noqa: ANN202 - a DALLEPipeline, an UnclipPipeline or None, imported late
    """The default DALL-E or unCLIP for the Generate tab, if there is one (they ship in the package)."""
    from pictext import hub
    from pictext.dalle.io import load_dalle
    from pictext.unclip.io import load_unclip

    try:
        return {"dalle": load_dalle, "unclip": load_unclip}[name](hub.resolve(name))
    except (ModelNotFoundError, CheckpointError) as e:
        print(f"pictext: the Generate tab offers no {name} ({e})", file=sys.stderr)
        return None


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, $PICTEXT_TOKEN or --token (in that order), or None."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as e:
            raise FileNotFoundError(f"--token-file {args.token_file}: {e.strerror or e}") from e
    return os.environ.get("PICTEXT_TOKEN") or args.token


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")
    return int(text)


def cmd_demo(args: argparse.Namespace) -> int:
    from pictext.demo import run_demo

    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pictext", description="CLIP models, zero-shot classification, embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)

    def precision_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
        help = "inference precision; auto: bf16 where the CPU or GPU has it natively (default: %(default)s)"
        p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=default, help=help)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="checkpoint file, Hugging Face folder, or local model name (default: shapes)")
        p.add_argument("--activation", choices=["quick_gelu", "gelu"], help="for OpenCLIP state dicts, which omit it")

    def data_args(p: argparse.ArgumentParser, default: str | None = "shapes") -> None:
        p.add_argument(
            "--data",
            default=default,
            help="shapes, digits, a folder (x.jpg + x.txt), a .csv/.tsv/.jsonl table, or WebDataset shards "
            "(x.tar, 'x-{000000..000009}.tar', or a folder of .tar)" + ("" if default else "; default: the recipe's"),
        )
        p.add_argument("--image-column", default="image", help="for tables: the column of image paths")
        p.add_argument("--caption-column", default="caption", help="for tables: the column of captions")

    p = sub.add_parser("classify", help="zero-shot classify images among labels")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "cat,dog,person"')
    p.add_argument("--templates", choices=["default", "imagenet", "none"], default="default")
    p.add_argument("--top", type=int, default=5, help="labels to print per image")
    p.add_argument("--json", action="store_true", help="print JSON")
    model_args(p)
    precision_arg(p)
    p.set_defaults(run=cmd_classify)

    p = sub.add_parser("encode", help="write normalized image embeddings (.npy) and a manifest")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=64)
    model_args(p)
    precision_arg(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("train", help="train a model")
    p.add_argument("family", choices=["clip", "vqgan", "dalle", "unclip-prior", "unclip-decoder", "unclip-upsampler"])
    p.add_argument("--clip", help="unclip-*: the CLIP whose space the prior and decoder live in (default: default)")
    p.add_argument(
        "--image-tokenizer",
        help="dalle: vqgan:MODEL or dvae:MODEL, a file or local name; a dvae "
        "may be a folder with OpenAI's encoder.pkl and decoder.pkl (default: the recipe trains a VQGAN)",
    )
    p.add_argument("--recipe", choices=["default", "shapes"], help="CLIP's model size, data and schedule (shapes)")
    data_args(p, default=None)
    p.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--loss", choices=["clip", "siglip"], help="InfoNCE or SigLIP's sigmoid loss")
    p.add_argument("--checkpoint-every", type=int, help="steps between resumable states")
    p.add_argument("--micro-batch", type=int, help="GradCache: the exact --batch-size gradient, this many at a time")
    p.add_argument("--lock", choices=["text", "image", "none"], action="append", help="freeze a tower (LiT: text)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations: less memory")
    p.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="crops, margins, pale backgrounds, blur, noise; no "
        "flips or hue changes, which would falsify captions (default: the recipe's)"
    )  # fmt: skip
    p.add_argument("--out", help="where to save (default: $PICTEXT_HOME/models/RECIPE.safetensors, or NAME-custom)")
    p.add_argument("--run-dir", help="folder for resumable training state (default: beside --out)")
    p.set_defaults(run=cmd_train)

    add_generation_parsers(sub)

    p = sub.add_parser("eval", help="zero-shot top-1/5, recall@1/5/10 both ways, linear probe")
    data_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    model_args(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("data", help="build a dataset folder you can inspect: pictext data build emoji")
    p.add_argument("action", choices=["build"])
    p.add_argument("name", choices=["emoji"])
    p.add_argument("--out", help="output folder (default: $PICTEXT_HOME/data/emoji)")
    p.add_argument(
        "--vendor", choices=["google", "twitter", "openmoji", "facebook"], default="google",
        help="whose drawings (facebook's are not openly licensed: for testing only)",
    )  # fmt: skip
    p.add_argument("--keywords", action="store_true", help="add emojilib's keywords to the captions (npm: emojilib)")
    p.add_argument("--tarball", help="the vendor's .tgz from `npm pack` (emoji-datasource-VENDOR, openmoji), not npm")
    p.add_argument("--format", choices=["folder", "shards"], default="folder", help="pair folders or WebDataset .tar")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per shard with --format shards")
    p.set_defaults(run=cmd_data)

    p = sub.add_parser("models", help="list the models here, or build one from its recipe")
    p.add_argument("action", nargs="?", choices=["list", "build"], default="list")
    p.add_argument("name", nargs="?", help="with build: vqgan, dalle, unclip, default or shapes")
    p.add_argument("--out", help="with build: where to save (default: $PICTEXT_HOME/models/NAME.safetensors)")
    p.add_argument("--half", action="store_true", help="with build of a CLIP: store float16 weights, as shipped")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("convert", help="import a foreign checkpoint, or export to Hugging Face / OpenCLIP layout")
    p.add_argument("source", help="OpenAI .pt, OpenCLIP file, Hugging Face folder, or native .safetensors")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--to", choices=["native", "hf", "open_clip"], default="native")
    p.add_argument("--activation", choices=["quick_gelu", "gelu"])
    p.set_defaults(run=cmd_convert)

    def index_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", help="index folder (default: $PICTEXT_HOME/index)")
        p.add_argument("--model", help="model to embed with (default: the one the index was built with)")
        precision_arg(p)

    p = sub.add_parser("index", help="embed the images under folders, incrementally, for search")
    p.add_argument("paths", nargs="*", help="folders or image files (none: re-scan every folder indexed before)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, help="decoding processes (default: one a core, at most 4)")
    p.add_argument(
        "--exact-decode",
        action="store_true",
        help="decode JPEGs at full size (slower; the default decodes at reduced scale)",
    )
    p.add_argument("--exclude", action="append", default=[], help="folder names to skip (glob), repeatable")
    p.add_argument("--faiss", action="store_true", help="build the faiss index now, whatever the size")
    p.add_argument(
        "--mixed-precision", action="store_true", help="add vectors made in another precision than the index's"
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="repair a damaged index first: keep the vectors that are intact, embed the rest again",
    )
    index_args(p)
    p.set_defaults(run=cmd_index)

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

    p = sub.add_parser("serve", help="a local web page and JSON API over the index")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but localhost needs --token")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--token-file", help="a file holding the token (16+ characters) every request must carry")
    p.add_argument("--token", help="the token itself; $PICTEXT_TOKEN or --token-file keep it out of ps")
    p.add_argument(
        "--allow-host", action="append", default=[], help="another host name the server answers to (repeatable)"
    )
    p.add_argument("--vqgan", help="the VQGAN of the Generate tab (default: the default VQGAN, if there is one)")
    index_args(p)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("demo", help="train or load the default model, then classify and retrieve held-out images")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as e:
        print(f"pictext: error: {e}", file=sys.stderr)
        return 2
