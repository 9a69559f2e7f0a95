"""`pictext train FAMILY`: CLIP, the VQGAN, DALL-E and unCLIP's stages, each from its recipe with the options
given; under torchrun, rank 0 prints and saves."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from pictext.commands.common import Subparsers, data_args, train_paths
from pictext.errors import UsageError


def cmd_train(args: argparse.Namespace) -> int:
    if args.family.startswith("unclip-"):
        return _train_unclip(args)
    if args.clip is not None:
        raise UsageError("--clip is an option of pictext train unclip-prior, unclip-decoder and unclip-upsampler")
    if args.family == "vqgan":
        return _train_vqgan(args)
    if args.family == "dalle":
        return _train_dalle(args)
    _refuse_foreign(args)
    from pictext.clip.recipe import RECIPES, build, recipe_data
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
    out, run_dir = train_paths(args, f"{name}{'-custom' if custom else ''}")
    build(recipe, data, out=out, run_dir=run_dir)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def _refuse_foreign(args: argparse.Namespace) -> None:
    """UsageError naming the options given that belong to another family than `args.family` (CLIP's, DALL-E's)."""
    clip = {"--loss": args.loss, "--micro-batch": args.micro_batch, "--lock": args.lock, "--recipe": args.recipe,
            "--grad-checkpointing": args.grad_checkpointing or None, "--augment": args.augment}  # fmt: skip
    dalle = {"--image-tokenizer": args.image_tokenizer, "--unknown-words": args.unknown_words}
    refused = (clip if args.family != "clip" else {}) | (dalle if args.family != "dalle" else {})
    given_flags = [flag for flag, value in refused.items() if value is not None]
    if given_flags:
        raise UsageError(f"{', '.join(given_flags)}: CLIP training options or another family's; "
                         f"pictext train {args.family} does not take them")  # fmt: skip


def _train_overrides(args: argparse.Namespace, train):
    """`train` (a recipe's training config) with the common options the user gave (another family's refused)."""
    _refuse_foreign(args)
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "precision": args.precision, "checkpoint_every": args.checkpoint_every}  # fmt: skip
    return dataclasses.replace(train, **{k: v for k, v in given.items() if v is not None})


def _train_vqgan(args: argparse.Namespace) -> int:
    from pictext.data.pairs import load_pairs
    from pictext.data.shapes import ShapesWorld
    from pictext.vqgan.recipe import VQGANRecipe, build, recipe_data

    recipe = VQGANRecipe()
    train = _train_overrides(args, recipe.train)
    recipe = dataclasses.replace(recipe, train=train)
    if args.data is None:
        data, name = recipe_data(recipe), "vqgan"
    elif args.data == "shapes":
        data, name = ShapesWorld(size=64, max_shapes=2, length=100_000, seed=train.seed), "vqgan-shapes"
    else:
        data = load_pairs(args.data, train.seed, args.image_column, args.caption_column)
        name = f"vqgan-{Path(args.data).stem}"
    custom = args.data is None and train != VQGANRecipe().train
    out, run_dir = train_paths(args, f"{name}{'-custom' if custom else ''}")
    build(recipe, data, out=out, run_dir=run_dir)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def _train_dalle(args: argparse.Namespace) -> int:
    from pictext.dalle.io import load_image_tokenizer
    from pictext.dalle.recipe import DALLERecipe, build, recipe_data, recipe_forms
    from pictext.data.pairs import load_pairs

    recipe = DALLERecipe()
    train = _train_overrides(args, recipe.train)
    recipe = dataclasses.replace(recipe, train=train)
    if args.unknown_words is not None:
        if not 0 <= args.unknown_words <= 1:
            raise UsageError(f"--unknown-words is a share of the captions, from 0 to 1; got {args.unknown_words}")
        recipe = dataclasses.replace(recipe, unknown_words=args.unknown_words)
    vqgan = None
    if args.image_tokenizer is not None:
        try:
            vqgan = load_image_tokenizer(args.image_tokenizer)
        except ValueError as e:
            raise UsageError(f"--image-tokenizer: {e}") from e
    extra = recipe_forms(recipe) if args.data in (None, "shapes") else None  # the recipe's own data only
    if args.data is None:
        data, name = recipe_data(recipe), "dalle"
    elif args.data == "shapes":
        data, name = recipe_data(dataclasses.replace(recipe, emoji_repeats=0)), "dalle-shapes"
    else:
        data = load_pairs(args.data, train.seed, args.image_column, args.caption_column)
        name = f"dalle-{Path(args.data).stem}"
    custom = args.data is None and (vqgan is not None or recipe != DALLERecipe())
    out, run_dir = train_paths(args, f"{name}{'-custom' if custom else ''}")
    build(recipe, data, vqgan=vqgan, out=out, run_dir=run_dir, extra=extra)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def _train_unclip(args: argparse.Namespace) -> int:
    from pictext import hub
    from pictext.clip.embed import load
    from pictext.data.pairs import load_pairs
    from pictext.unclip.io import read_parts, save_unclip
    from pictext.unclip.recipe import UnclipRecipe, build, build_upsampler, recipe_data

    stage = args.family.removeprefix("unclip-")
    out, run_dir = train_paths(args, "unclip")
    # the parts this stage does not train come from --out; an upsampler alone joins the default unCLIP
    source = out if out.is_file() else hub.resolve("unclip") if stage == "upsampler" else None
    kept, meta = read_parts(source) if source is not None else ({"prior": None, "decoder": None, "upsampler": None}, {})
    clip_name = meta.get("clip", {}).get("name")
    if args.clip and clip_name and args.clip != clip_name:
        raise UsageError(f"--clip {args.clip}: {source} holds parts trained in the space of {clip_name!r}; "
                         "give another --out for another CLIP")  # fmt: skip
    if source is not None and source != out:
        print(f"the prior and the decoder come from {source}")
    recipe = UnclipRecipe(clip=args.clip or clip_name or UnclipRecipe.clip)
    field = f"{stage}_train"
    train = _train_overrides(args, getattr(recipe, field))
    recipe = dataclasses.replace(recipe, **{field: train})
    size = recipe.upsampler_resolution if stage == "upsampler" else None
    if args.data is None:  # the recipe's: the shapes world and Google's emoji
        data = recipe_data(recipe, size)
    elif args.data == "shapes":
        data = recipe_data(dataclasses.replace(recipe, emoji_repeats=0), size)
    else:
        data = load_pairs(args.data, train.seed, args.image_column, args.caption_column)
    clip = load(recipe.clip, precision="fp32")
    if stage == "upsampler":
        low = kept["decoder"].config.resolution if kept["decoder"] is not None else None
        kept["upsampler"] = build_upsampler(recipe, data, run_dir, low)
    else:
        kept[stage] = build(recipe, data, clip, run_dir, stages=(stage,))[0 if stage == "prior" else 1]
    if int(os.environ.get("RANK", 0)) == 0:
        save_unclip(kept["prior"], kept["decoder"], recipe.clip, clip, out, upsampler=kept["upsampler"])
        missing = next((name for name in ("prior", "decoder") if kept[name] is None), None)
        hint = f"; train the {missing} too: pictext train unclip-{missing} --out {out}" if missing else ""
        print(f"saved {out}{hint}")
    return 0


FAMILIES = ["clip", "vqgan", "dalle", "unclip-prior", "unclip-decoder", "unclip-upsampler"]


def register(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train a model")
    p.add_argument("family", choices=FAMILIES)
    p.add_argument("--clip", help="unclip-*: the CLIP whose space the prior and decoder live in (default: default)")
    p.add_argument("--image-tokenizer", help="dalle: vqgan:MODEL or dvae:MODEL, a file or local name; a dvae may be a "
                   "folder with OpenAI's encoder.pkl and decoder.pkl (default: the recipe trains a VQGAN)")  # fmt: skip
    p.add_argument("--unknown-words", type=float, metavar="SHARE", help="dalle: the share of captions read with one or "
                   "two made-up words put in (default: the recipe's, 0)")  # fmt: skip
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
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, help="crops, margins, pale backgrounds, blur, "
                   "noise; no flips or hue changes, which would falsify captions (default: the recipe's)")  # fmt: skip
    p.add_argument("--out", help="where to save (default: $PICTEXT_HOME/models/RECIPE.safetensors, or NAME-custom)")
    p.add_argument("--run-dir", help="folder for resumable training state (default: beside --out)")
    p.set_defaults(run=cmd_train)
