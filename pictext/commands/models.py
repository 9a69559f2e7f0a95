"""The model and data commands: `models` (list, build from a recipe, fetch a published one) and `data build emoji`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pictext.commands.common import Subparsers
from pictext.errors import MissingFileError, UsageError


def cmd_models(args: argparse.Namespace) -> int:
    from pictext import hub

    if args.action == "build":
        return _build_model(args.name, args.out, args.half)
    if args.action == "fetch":
        return _fetch(args.name)
    if args.published:
        return _list_published()
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


def _fetch(name: str | None) -> int:
    from pictext import published

    if not name:
        raise UsageError("pictext models fetch NAME: which one? `pictext models list --published` lists them")
    item = published.entry(name)
    if item is None:
        raise UsageError(f"{name!r} is not a published model; `pictext models list --published` lists them")
    already = item.fetched()
    path = published.fetch(name)
    size = sum(p.stat().st_size for p in (path.iterdir() if path.is_dir() else [path]) if p.is_file())
    print(f"{name}: {'already here' if already else 'fetched'}, {size / 1e6:,.1f} MB at {path}")
    return 0


def _list_published() -> int:
    from pictext import published

    print("published models (`pictext models fetch NAME` downloads one; sizes approximate):")
    for name, item in sorted(published.registry().items()):
        here = "here" if item.fetched() else "not fetched"
        print(f"  {name:32s} {item.approx_mb:6,} MB  {item.licence:4s}  {here:11s}  {item.about}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from pictext import hub
    from pictext.data.emoji import build_emoji, fetch_tarball, folder_name

    downloads = hub.home() / "downloads"
    tarball = Path(args.tarball) if args.tarball else fetch_tarball(downloads, args.vendor)
    if not tarball.is_file():
        raise MissingFileError(f"--tarball {tarball}: no such file")
    words = fetch_tarball(downloads, "emojilib") if args.keywords else None
    base = fetch_tarball(downloads, "google") if args.vendor == "openmoji" else None
    out = Path(args.out) if args.out else hub.home() / "data" / folder_name(args.vendor, args.keywords)
    counts = build_emoji(out, tarball, args.per_shard if args.format == "shards" else None, args.vendor, words, base)
    print(f"wrote {counts['train']} training and {counts['held_out']} held-out emoji to {out}/")
    return 0


def _build_model(name: str | None, out: str | None, half: bool = False) -> int:
    """Run a model's recipe from nothing (resuming a stopped run) and save it where name lookup finds it."""
    from pictext import hub

    if name not in ("vqgan", "dalle", "unclip", "unclip-ru", *hub.RECIPE_MODELS):
        raise UsageError(
            f"pictext models build takes vqgan, dalle, unclip, unclip-ru, {', '.join(hub.RECIPE_MODELS)}; got {name!r}"
        )
    target = Path(out) if out else hub.models_dir() / f"{name}.safetensors"
    run_dir = target.with_suffix(".run")
    if name in ("unclip", "unclip-ru"):
        from pictext.clip.embed import load
        from pictext.unclip import recipe
        from pictext.unclip.io import save_unclip

        r = recipe.RECIPES[name]
        clip = load(r.clip, precision="fp32")
        prior, decoder = recipe.build(r, recipe.recipe_data(r), clip, run_dir=run_dir)
        save_unclip(prior, decoder, r.clip, clip, target, half=True)  # no upsampler: see UnclipRecipe
    elif name == "dalle":
        from pictext.dalle import recipe

        recipe.build(recipe.DALLERecipe(), out=target, run_dir=run_dir)
    elif name == "vqgan":
        from pictext.vqgan import recipe

        recipe.build(recipe.VQGANRecipe(), out=target, run_dir=run_dir)
    else:
        from pictext.clip import recipe
        from pictext.clip.io import save_clip

        model = recipe.build(recipe.RECIPES[name], out=target, run_dir=run_dir)
        if half:  # how the package ships it: the same weights rounded to float16
            save_clip(model, target, half=True)
    print(f"saved {target}")
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser("models", help="list the models here, build one from its recipe, or fetch a published one")
    p.add_argument("action", nargs="?", choices=["list", "build", "fetch"], default="list")
    p.add_argument("name", nargs="?", help="with build: vqgan, dalle, unclip, unclip-ru, default or shapes; with "
                   "fetch: a published model (openai/ViT-B-32, ...)")  # fmt: skip
    p.add_argument("--published", action="store_true", help="with list: the published models pictext can fetch")
    p.add_argument("--out", help="with build: where to save (default: $PICTEXT_HOME/models/NAME.safetensors)")
    p.add_argument("--half", action="store_true", help="with build of a CLIP: store float16 weights, as shipped")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("data", help="build a dataset folder you can inspect: pictext data build emoji")
    p.add_argument("action", choices=["build"])
    p.add_argument("name", choices=["emoji"])
    p.add_argument("--out", help="output folder (default: $PICTEXT_HOME/data/emoji)")
    p.add_argument("--vendor", choices=["google", "twitter", "openmoji", "facebook"], default="google",
                   help="whose drawings (facebook's are not openly licensed: for testing only)")  # fmt: skip
    p.add_argument("--keywords", action="store_true", help="add emojilib's keywords to the captions (npm: emojilib)")
    p.add_argument("--tarball", help="the vendor's .tgz from `npm pack` (emoji-datasource-VENDOR, openmoji), not npm")
    p.add_argument("--format", choices=["folder", "shards"], default="folder", help="pair folders or WebDataset .tar")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per shard with --format shards")
    p.set_defaults(run=cmd_data)
