"""The commands of the generation half: `pictext generate` (VQGAN+CLIP, DALL-E), `pictext reconstruct`, and the
VQGAN and DALL-E branches of `pictext train`. Like cli.py: parses and calls the library, no logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import torch

from pictext.checkpoint import CheckpointError
from pictext.commands import images_in as _images_in
from pictext.commands import train_paths as _train_paths
from pictext.files import atomic_write
from pictext.images.decode import ImageError


def _train_overrides(args: argparse.Namespace, train, refused: dict[str, object]):  # noqa: ANN001, ANN202
    """`train` (a recipe's training config) with the common options the user gave; options of other families
    (`refused`, flag -> value, besides CLIP's) are an error naming them."""
    refused = {"--loss": args.loss, "--micro-batch": args.micro_batch, "--lock": args.lock,
               "--grad-checkpointing": args.grad_checkpointing or None, "--recipe": args.recipe,
               "--augment": args.augment} | refused  # fmt: skip
    given_flags = [flag for flag, value in refused.items() if value is not None]
    if given_flags:
        raise ValueError(f"{', '.join(given_flags)}: CLIP training options or another family's; "
                         f"pictext train {args.family} does not take them")  # fmt: skip
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "precision": args.precision, "checkpoint_every": args.checkpoint_every}  # fmt: skip
    return dataclasses.replace(train, **{k: v for k, v in given.items() if v is not None})


def _train_vqgan(args: argparse.Namespace) -> int:
    from pictext.data.pairs import load_pairs
    from pictext.data.shapes import ShapesWorld
    from pictext.vqgan.recipe import VQGANRecipe
    from pictext.vqgan.recipe import build as train_vqgan_on
    from pictext.vqgan.recipe import recipe_data as vqgan_recipe_data

    recipe = VQGANRecipe()
    train = _train_overrides(args, recipe.train, {"--image-tokenizer": args.image_tokenizer})
    recipe = dataclasses.replace(recipe, train=train)
    if args.data is None:
        data, name = vqgan_recipe_data(recipe), "vqgan"
    elif args.data == "shapes":
        data, name = ShapesWorld(size=64, max_shapes=2, length=100_000, seed=train.seed), "vqgan-shapes"
    else:
        data = load_pairs(args.data, train.seed, args.image_column, args.caption_column)
        name = f"vqgan-{Path(args.data).stem}"
    custom = args.data is None and train != VQGANRecipe().train
    out, run_dir = _train_paths(args, f"{name}{'-custom' if custom else ''}")
    train_vqgan_on(recipe, data, out=out, run_dir=run_dir)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def _train_dalle(args: argparse.Namespace) -> int:
    from pictext.dalle.io import load_image_tokenizer
    from pictext.dalle.recipe import DALLERecipe, recipe_data, recipe_forms
    from pictext.dalle.recipe import build as train_pipeline
    from pictext.data.pairs import load_pairs

    recipe = DALLERecipe()
    train = _train_overrides(args, recipe.train, {})
    recipe = dataclasses.replace(recipe, train=train)
    vqgan = None
    if args.image_tokenizer is not None:
        try:
            vqgan = load_image_tokenizer(args.image_tokenizer)
        except ValueError as e:
            raise ValueError(f"--image-tokenizer: {e}") from e
    extra = recipe_forms(recipe) if args.data in (None, "shapes") else None  # the recipe's own data only
    if args.data is None:
        data, name = recipe_data(recipe), "dalle"
    elif args.data == "shapes":
        data, name = recipe_data(dataclasses.replace(recipe, emoji_repeats=0)), "dalle-shapes"
    else:
        data = load_pairs(args.data, train.seed, args.image_column, args.caption_column)
        name = f"dalle-{Path(args.data).stem}"
    custom = args.data is None and (vqgan is not None or train != DALLERecipe().train)
    out, run_dir = _train_paths(args, f"{name}{'-custom' if custom else ''}")
    train_pipeline(recipe, data, vqgan=vqgan, out=out, run_dir=run_dir, extra=extra)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"saved {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from PIL import Image

    from pictext import hub
    from pictext.images.decode import decode_image
    from pictext.images.tensors import to_pixels
    from pictext.vqgan.io import load_vqgan
    from pictext.vqgan.loss import psnr

    model = load_vqgan(hub.resolve(args.vqgan), args.config)
    size, f = args.size or model.config.resolution, model.config.factor
    if size % f:
        size = max(f, round(size / f) * f)
        print(f"pictext: --size is not a multiple of the VQGAN's factor {f}; using {size}", file=sys.stderr)
    paths = _images_in(args.images)
    out = Path(args.output)
    errors = 0
    for path in paths:
        try:
            image = decode_image(path)
        except ImageError as e:
            print(f"pictext: skipped {e}", file=sys.stderr)
            errors += 1
            continue
        x = to_pixels([image], size)
        with torch.no_grad():
            result = model(x)
        y = result.reconstruction.clamp(-1, 1)
        pair = torch.cat([x, y], dim=3)[0]  # original | reconstruction
        array = ((pair.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        target = out / f"{Path(path).stem}-reconstruction.png"
        atomic_write(target, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG"))
        codes = len(torch.unique(result.quantized.indices))
        print(f"{target}  PSNR {psnr(x, y).item():.2f} dB, {codes} distinct codes of {model.config.n_embed}")
    return 1 if errors else 0


# vqgan and size: chosen per prompt and VQGAN (default_vqgan_for, the VQGAN's training side)
# The rest are GenerateConfig's, written out so the CLI starts without importing the generators (tested equal)
VQGAN_CLIP_DEFAULTS = dict(vqgan=None, drawer="vqgan", steps=200, size=None, cutouts=48, lr=0.1, init="random",
                           image_prompt=[], smoothness=0.0, saturation=0.0, symmetry=0.0, frame_every=10)  # fmt: skip
DALLE_OPTIONS = ("dalle", "samples", "keep", "guidance", "temperature", "top_k", "top_p", "prime", "no_shape_prompt")


UNCLIP_OPTIONS = ("unclip", "samples", "guidance", "prior_guidance", "steps", "eta", "upsample")
OPTIONS = {"vqgan-clip": tuple(VQGAN_CLIP_DEFAULTS), "dalle": DALLE_OPTIONS, "unclip": UNCLIP_OPTIONS}


def cmd_generate(args: argparse.Namespace) -> int:
    every = {k for options in OPTIONS.values() for k in options}
    unused = sorted(every - set(OPTIONS[args.method]))
    given = [f"--{k.replace('_', '-')}" for k in unused if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: not options of --method {args.method}")
    if args.method == "dalle":
        return _generate_dalle(args)
    if args.method == "unclip":
        return _generate_unclip(args)
    for key, value in VQGAN_CLIP_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return _generate_vqgan_clip(args)


def _generate_dalle(args: argparse.Namespace) -> int:
    from pictext.generate import default_rerankers_for, generate, load_dalle_model
    from pictext.generate.dalle import DALLESettings, guides_for
    from pictext.generate.outputs import contact_sheet, slug, write_outputs
    from pictext.generate.vqgan_clip import GenerationError
    from pictext.images.decode import decode_image

    if not args.prompt.strip():
        raise GenerationError("the prompt is empty; DALL-E draws a caption, e.g. 'a red circle'")
    given = {"samples": args.samples, "keep": args.keep, "guidance_scale": args.guidance,
             "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}  # fmt: skip
    settings = {k: v for k, v in given.items() if v is not None} | {"seed": args.seed}
    if args.no_shape_prompt:
        settings["shape_prompt"] = False
    config = DALLESettings(**settings)  # bad settings and prompt weights are named before any model loads
    caption, guides = guides_for(args.prompt, config)
    settings = dataclasses.asdict(config)
    pipeline = load_dalle_model(args.dalle)
    for text in [caption, *(g for g, _ in guides)]:
        if pipeline.text(text)[1]:
            print(f"pictext: {text!r} is longer than the model's {pipeline.model.config.text_len} text tokens; "
                  "its end was cut", file=sys.stderr)  # fmt: skip
    clips = args.clip or default_rerankers_for(caption)
    prime = decode_image(args.prime) if args.prime else None
    guided = "".join(f" | {g}:{w:g}" for g, w in guides)
    print(f"pictext: drawing {settings['samples']} samples of {caption!r}{guided}, keeping {settings['keep']} by "
          f"CLIP score ({' + '.join(clips)})", file=sys.stderr)  # fmt: skip
    result = generate(args.prompt, method="dalle", dalle=pipeline, clip=clips, prime=prime, **settings)
    record = {"prompt": args.prompt, "method": "dalle", "dalle": args.dalle or "dalle", "clip": clips,
              "prime": args.prime, "caption": caption, "guides": guides, **settings}  # fmt: skip
    base = f"{slug(args.prompt)}-{args.seed}"
    for rank, (image, score) in enumerate(zip(result.samples, result.scores)):
        name = base if rank == 0 else f"{base}-{rank + 1}"
        written = write_outputs(args.out, name, image, record | {"rank": rank + 1, "clip_score": score})
        print(f"{written['png']}  CLIP score {score:.3f}")
    sheet = write_outputs(args.out, f"{base}-sheet", contact_sheet(result.samples, result.scores),
                          record | {"clip_scores": result.scores})  # fmt: skip
    print(f"  contact sheet: {sheet['png']}")
    return 0


def _generate_unclip(args: argparse.Namespace) -> int:
    from pictext.generate import generate, load_unclip_model
    from pictext.generate.outputs import contact_sheet, slug, write_outputs
    from pictext.generate.vqgan_clip import GenerationError

    if not args.prompt.strip():
        raise GenerationError("the prompt is empty; unCLIP draws a caption, e.g. 'a red circle'")
    if args.clip:
        raise GenerationError("--method unclip draws in the space of the CLIP its file names; it takes no --clip")
    given = {"samples": args.samples, "guidance_scale": args.guidance, "prior_guidance": args.prior_guidance,
             "steps": args.steps, "eta": args.eta, "upsample": args.upsample}  # fmt: skip
    settings = {k: v for k, v in given.items() if v is not None} | {"seed": args.seed}
    from pictext.generate.unclip import UnclipSettings

    settings = dataclasses.asdict(UnclipSettings(**settings))  # bad settings are named before any model loads
    pipeline = load_unclip_model(args.unclip)
    result = generate(args.prompt, method="unclip", unclip=pipeline, **settings)
    record = {"prompt": args.prompt, "method": "unclip", "unclip": args.unclip or "unclip", **settings}
    base = f"{slug(args.prompt)}-{args.seed}"
    for i, (image, score) in enumerate(zip(result.samples, result.scores)):
        written = write_outputs(args.out, base if i == 0 else f"{base}-{i + 1}", image, record | {"clip_score": score})
        print(f"{written['png']}  CLIP score {score:.3f}")
    sheet = write_outputs(args.out, f"{base}-sheet", contact_sheet(result.samples, result.scores), record)
    print(f"  contact sheet: {sheet['png']}")
    return 0


def cmd_vary(args: argparse.Namespace) -> int:
    from pictext.generate import load_unclip_model
    from pictext.generate.outputs import contact_sheet, slug, write_outputs
    from pictext.images.decode import decode_image
    from pictext.unclip.train import image_embeddings

    _check_unclip_args(args)
    source = decode_image(args.image)
    pipeline = load_unclip_model(args.unclip)
    images = pipeline.vary(source, args.n, args.guidance, args.steps, args.seed, args.eta, args.upsample)
    name = f"{slug(Path(args.image).stem)}-variations-{args.seed}"
    record = {"method": "unclip-variations", "image": str(args.image), "n": args.n, "guidance_scale": args.guidance,
              "steps": args.steps, "seed": args.seed, "eta": args.eta, "upsample": args.upsample}  # fmt: skip
    embeddings = image_embeddings(pipeline.clip, [source, *images])
    scores = (embeddings[1:] @ embeddings[0]).tolist()  # each variation's CLIP similarity to the source
    written = write_outputs(args.out, name, contact_sheet(images, scores), record | {"similarity": scores},
                            frames=images)  # fmt: skip
    print(f"{written['png']}  ({args.n} variations, CLIP similarity to the source "
          f"{min(scores):.3f}-{max(scores):.3f}; each one in {written['frames']})")  # fmt: skip
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from pictext.generate import load_unclip_model
    from pictext.generate.outputs import contact_sheet, slug, write_outputs
    from pictext.images.decode import decode_image

    _check_unclip_args(args)
    if args.n < 2:
        raise ValueError(f"-n must be at least 2 (the two ends), got {args.n}")
    a, b = decode_image(args.a), decode_image(args.b)
    pipeline = load_unclip_model(args.unclip)
    images = pipeline.interpolate(a, b, args.n, args.guidance, args.steps, args.seed, args.upsample)
    name = f"{slug(Path(args.a).stem)}-to-{slug(Path(args.b).stem)}-{args.seed}"
    record = {"method": "unclip-interpolation", "a": str(args.a), "b": str(args.b), "n": args.n,
              "guidance_scale": args.guidance, "steps": args.steps, "seed": args.seed,
              "upsample": args.upsample}  # fmt: skip
    weights = [i / (args.n - 1) for i in range(args.n)]
    written = write_outputs(args.out, name, contact_sheet(images, weights), record, frames=images)
    print(f"{written['png']}  (slerp weights 0..1; frames in {written['frames']}, GIF {written['gif']})")
    return 0


def _check_unclip_args(args: argparse.Namespace) -> None:
    from pictext.unclip.pipeline import DECODER_GUIDANCE

    if args.guidance is None:  # the pipeline's default, so the record below names the value used
        args.guidance = DECODER_GUIDANCE
    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance < 0:
        raise ValueError(f"--guidance must be >= 0 (1 is no guidance), got {args.guidance}")
    if not 0 <= getattr(args, "eta", 0.0) <= 1:
        raise ValueError(f"--eta must be between 0 (deterministic DDIM) and 1 (DDPM-like), got {args.eta}")


def _train_unclip(args: argparse.Namespace) -> int:
    from pictext import hub
    from pictext.api import load
    from pictext.data.pairs import load_pairs
    from pictext.unclip.io import read_parts, save_unclip
    from pictext.unclip.recipe import UnclipRecipe, recipe_data
    from pictext.unclip.recipe import build as train_unclip
    from pictext.unclip.recipe import build_upsampler as train_recipe_upsampler

    stage = args.family.removeprefix("unclip-")
    out, run_dir = _train_paths(args, "unclip")
    # the parts this stage does not train come from --out; an upsampler alone joins the default unCLIP
    source = out if out.is_file() else hub.resolve("unclip") if stage == "upsampler" else None
    kept, meta = read_parts(source) if source is not None else ({"prior": None, "decoder": None, "upsampler": None}, {})
    clip_name = meta.get("clip", {}).get("name")
    if args.clip and clip_name and args.clip != clip_name:
        raise ValueError(f"--clip {args.clip}: {source} holds parts trained in the space of {clip_name!r}; "
                         "give another --out for another CLIP")  # fmt: skip
    if source is not None and source != out:
        print(f"the prior and the decoder come from {source}")
    recipe = UnclipRecipe(clip=args.clip or clip_name or UnclipRecipe.clip)
    field = f"{stage}_train"
    train = _train_overrides(args, getattr(recipe, field), {"--image-tokenizer": args.image_tokenizer})
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
        kept["upsampler"] = train_recipe_upsampler(recipe, data, run_dir, low)
    else:
        kept[stage] = train_unclip(recipe, data, clip, run_dir, stages=(stage,))[0 if stage == "prior" else 1]
    if int(os.environ.get("RANK", 0)) == 0:
        save_unclip(kept["prior"], kept["decoder"], recipe.clip, clip, out, upsampler=kept["upsampler"])
        missing = next((name for name in ("prior", "decoder") if kept[name] is None), None)
        hint = f"; train the {missing} too: pictext train unclip-{missing} --out {out}" if missing else ""
        print(f"saved {out}{hint}")
    return 0


def _generate_vqgan_clip(args: argparse.Namespace) -> int:
    from pictext import hub
    from pictext.checkpoint import is_native, read_metadata
    from pictext.generate import default_clip_for, default_vqgan_for, generate
    from pictext.generate.outputs import slug, write_outputs
    from pictext.generate.vqgan_clip import GenerationError, parse_prompts, round_size
    from pictext.images.decode import decode_image
    from pictext.training import progress

    parse_prompts(args.prompt)  # bad prompts are named before any model loads
    if args.steps <= 0:
        raise GenerationError(f"--steps must be at least 1, got {args.steps}")
    clips = args.clip or [default_clip_for(args.prompt)]
    for spec in clips:
        path = Path(spec)
        if path.is_file() and is_native(path) and read_metadata(path).get("pictext.kind") != "clip":
            raise GenerationError(f"--clip {spec} is a {read_metadata(path).get('pictext.kind')} model, not a CLIP")
    vqgan = None
    if args.drawer == "vqgan":
        from pictext.vqgan.io import load_vqgan

        args.vqgan = args.vqgan or default_vqgan_for(args.prompt)
        try:
            vqgan = load_vqgan(hub.resolve(args.vqgan))
        except CheckpointError as e:
            raise GenerationError(f"--vqgan {args.vqgan}: {e}") from e
    width, height = _size(args.size or str(vqgan.config.resolution if vqgan is not None else 64))
    if vqgan is not None:
        f = vqgan.config.factor
        rounded = (round_size(width, f), round_size(height, f))
        if rounded != (width, height):
            print(f"pictext: --size {width}x{height} is not a multiple of the VQGAN's factor {f}; "
                  f"using {rounded[0]}x{rounded[1]}", file=sys.stderr)  # fmt: skip
            width, height = rounded
    init_image = None
    init = args.init
    if init not in ("random", "noise"):
        init_image, init = decode_image(init), "image"
    image_prompts = [decode_image(p) for p in args.image_prompt]
    settings = dict(steps=args.steps, size=(width, height), seed=args.seed, cutouts=args.cutouts, lr=args.lr,
                    init=init, drawer=args.drawer, smoothness=args.smoothness, saturation=args.saturation,
                    symmetry=args.symmetry, frame_every=args.frame_every)  # fmt: skip
    bar = progress(args.steps, "generate")

    def show(step, frame):  # noqa: ANN001, ANN202
        bar.set_postfix(loss=f"{step.loss:.3f}", clip=f"{step.clip_score:.3f}")
        bar.update(1)

    result = generate(args.prompt, method=args.method, clip=clips, vqgan=vqgan, image_prompts=image_prompts,
                      init_image=init_image, callback=show, **settings)  # fmt: skip
    bar.close()
    record = {"prompt": args.prompt, "method": args.method, "clip": [str(c) for c in clips],
              "vqgan": None if vqgan is None else str(args.vqgan), "init": args.init,
              "image_prompts": args.image_prompt, **settings, "size": [width, height],
              "clip_score_first": result.steps[0].clip_score, "clip_score": result.clip_score}  # fmt: skip
    name = f"{slug(args.prompt)}-{args.seed}"
    written = write_outputs(args.out, name, result.image, record, result.frames)
    print(f"{written['png']}  CLIP score {result.steps[0].clip_score:.3f} -> {result.clip_score:.3f}")
    for kind in ("json", "gif", "frames"):
        if kind in written:
            print(f"  {kind}: {written[kind]}")
    return 0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    if not w.isdigit() or (h and not h.isdigit()) or int(w) <= 0 or (h and int(h) <= 0):
        raise ValueError(f"--size must be N or WxH in pixels, e.g. 64 or 96x64; got {text!r}")
    return int(w), int(h or w)


def add_generation_parsers(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    p = sub.add_parser("generate", help="draw a prompt: VQGAN+CLIP ('a red apple:1 | green:-0.5') or DALL-E")
    p.add_argument("prompt", help="text; for vqgan-clip several with weights: 'a red apple:1 | green:-0.5'")
    p.add_argument("--method", choices=["vqgan-clip", "dalle", "unclip"], default="vqgan-clip")
    p.add_argument("--clip", action="append", help="guiding CLIP, or with dalle a reranking one; repeatable: losses "
                   "or cosines summed (default: the shapes model for shapes prompts, with dalle the shapes and the "
                   "default model; else the default model)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="generated", help="output folder")
    g = p.add_argument_group("vqgan-clip")
    g.add_argument(
        "--vqgan",
        help="native VQGAN file, taming .ckpt, DALL-E file (its VQGAN), or local model name "
        "(default: dalle's 32 px VQGAN for a shapes-world prompt such as 'a red circle', else vqgan)",
    )
    g.add_argument("--drawer", choices=["vqgan", "pixel"], help="default: vqgan")
    g.add_argument("--steps", type=int, help="default: 200 (unclip: the decoder's DDIM steps, default 50)")
    g.add_argument(
        "--size",
        help="N or WxH pixels, rounded to the VQGAN's factor (default: the VQGAN's training side; pixel drawer: 64)",
    )
    g.add_argument("--cutouts", type=int, help="default: 48")
    g.add_argument("--lr", type=float, help="default: 0.1")
    g.add_argument("--init", help="random (codes), noise (pixels), or an image file (default: random)")
    g.add_argument("--image-prompt", action="append", help="an image to aim at, repeatable")
    g.add_argument("--smoothness", type=float, help="default: 0")
    g.add_argument("--saturation", type=float, help="default: 0")
    g.add_argument("--symmetry", type=float, help="default: 0")
    g.add_argument("--frame-every", type=int, help="steps between saved frames, 0: none (default: 10)")
    g = p.add_argument_group("dalle")
    g.add_argument("--dalle", help="DALL-E file or local model name (default: dalle)")
    g.add_argument("--samples", type=int, help="pictures drawn (default: 16)")
    g.add_argument("--keep", type=int, help="pictures kept, best CLIP score first (default: 1)")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale, 1: none (default: 3; unclip: 1.5)")
    g.add_argument("--temperature", type=float, help="default: 1")
    g.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    g.add_argument("--top-p", type=float, help="sample among the most likely tokens summing to p")
    g.add_argument("--prime", help="an image whose top half is kept; DALL-E draws the rest")
    g.add_argument(
        "--no-shape-prompt",
        action="store_true",
        default=None,
        help="do not also guide a shapes-world caption by its shape alone ('a blue cross | a cross:0.5')",
    )
    g = p.add_argument_group("unclip (also --samples, default 4; --guidance, default 1.5; --steps, default 50)")
    g.add_argument("--unclip", help="unCLIP file or local model name (default: unclip)")
    g.add_argument("--prior-guidance", type=float, help="the prior's classifier-free guidance (default: 1)")
    g.add_argument("--eta", type=float, help="DDIM's fresh noise per step, 0 (deterministic) to 1 (default)")
    g.add_argument("--no-upsample", dest="upsample", action="store_const", const=False,
                   help="keep the decoder's size even when the file has an upsampler")  # fmt: skip
    p.set_defaults(run=cmd_generate)

    for name, help in (
        ("vary", "variations of an image: its CLIP embedding decoded by unCLIP from new noise"),
        ("interpolate", "pictures between two images: unCLIP along the slerp of their embeddings"),
    ):
        p = sub.add_parser(name, help=help)
        if name == "vary":
            p.add_argument("image", help="the image to vary")
            p.add_argument("-n", type=int, default=4, help="variations (default: 4)")
            p.add_argument("--eta", type=float, default=1.0, help="DDIM's fresh noise per step, 0-1 (default: 1)")
            p.set_defaults(run=cmd_vary)
        else:
            p.add_argument("a", help="the first image")
            p.add_argument("b", help="the last image")
            p.add_argument("-n", type=int, default=8, help="pictures, ends included (default: 8)")
            p.set_defaults(run=cmd_interpolate)
        p.add_argument("--unclip", help="unCLIP file or local model name (default: unclip)")
        p.add_argument("--guidance", type=float, help="the decoder's guidance (default: 1.5; 1: none)")
        p.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-upsample", dest="upsample", action="store_false",
                       help="keep the decoder's size even when the file has an upsampler")  # fmt: skip
        p.add_argument("--out", default="generated", help="output folder")

    p = sub.add_parser("reconstruct", help="encode and decode images with a VQGAN: what its codes keep")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--vqgan", default="vqgan", help="native VQGAN file, taming .ckpt, or local model name")
    p.add_argument("--config", help="the YAML of a taming .ckpt (default: the .yaml beside it)")
    p.add_argument("--size", type=int, help="side to resize to (default: the VQGAN's training resolution)")
    p.add_argument("-o", "--output", default=".", help="folder for NAME-reconstruction.png (original | result)")
    p.set_defaults(run=cmd_reconstruct)
